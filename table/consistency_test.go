package table_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/table"
)

// hub is a Publisher fanning events out to subscribers the way the real
// fan-out must: it never blocks; a subscriber whose bounded queue is full is
// disconnected and has to resume by sequence.
type hub struct {
	mu   sync.Mutex
	subs map[string]map[chan table.Event]bool
}

func (h *hub) Publish(id string, events []table.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		for _, e := range events {
			select {
			case ch <- e:
			default:
				delete(h.subs[id], ch)
				close(ch)
			}
			if !h.subs[id][ch] {
				break
			}
		}
	}
}

func (h *hub) subscribe(id string, size int) chan table.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan table.Event, size)
	if h.subs[id] == nil {
		h.subs[id] = map[chan table.Event]bool{}
	}
	h.subs[id][ch] = true
	return ch
}

func (h *hub) unsubscribe(id string, ch chan table.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[id][ch] {
		delete(h.subs[id], ch)
		close(ch)
	}
}

// subscriber follows one table: a snapshot (or the empty table), then live
// events, resuming from its last sequence through Events after every
// disconnect, forced at random or by overflow.
type subscriber struct {
	id          string
	svc         *table.Service
	hub         *hub
	rng         *rand.Rand
	view        table.View
	log         []table.Event
	disconnects int
	err         error
}

func (s *subscriber) apply(e table.Event) {
	if s.err != nil || e.Seq <= s.view.Seq {
		return
	}
	if err := s.view.Apply(e); err != nil {
		s.err = err
		return
	}
	s.log = append(s.log, e)
}

// catchUp reads the store's log from the last applied sequence on.
func (s *subscriber) catchUp() {
	for s.err == nil {
		evs, err := s.svc.Events(context.Background(), s.id, s.view.Seq, 50)
		if err != nil {
			s.err = err
			return
		}
		if len(evs) == 0 {
			return
		}
		for _, e := range evs {
			s.apply(e)
		}
	}
}

func (s *subscriber) run(stop <-chan struct{}) {
	for s.err == nil {
		// Subscribe first, then read history: nothing falls between them.
		ch := s.hub.subscribe(s.id, 1+s.rng.IntN(8))
		s.catchUp()
		connected := true
		for connected && s.err == nil {
			select {
			case <-stop:
				s.hub.unsubscribe(s.id, ch)
				s.catchUp()
				return
			case e, ok := <-ch:
				if !ok {
					connected = false // dropped by the hub for falling behind
					break
				}
				if e.Seq > s.view.Seq+1 {
					s.catchUp() // fill a gap from the store
				}
				s.apply(e)
				if s.rng.IntN(40) == 0 {
					s.hub.unsubscribe(s.id, ch)
					connected = false
				}
			}
		}
		s.disconnects++
		if s.rng.IntN(2) == 0 {
			time.Sleep(time.Duration(s.rng.IntN(200)) * time.Microsecond) // offline for a while
		}
	}
}

// TestSubscribersSeeOneSequence runs three tables on three nodes sharing a
// store, each followed by eight subscribers that disconnect at random and
// resume by sequence (some start from the empty table, some from a snapshot
// taken mid-game). Every subscriber's log must be a contiguous run of the
// table's one event sequence, and every subscriber's folded view must equal
// the table's final snapshot.
func TestSubscribersSeeOneSequence(t *testing.T) {
	const tables, subsPerTable, rounds = 3, 8, 25
	h := &hub{subs: map[string]map[chan table.Event]bool{}}
	storeClock := newClock() // leases never lapse: nodes are not under test here
	store := inmem.NewTableStore(storeClock, inmem.TableStoreConfig{})
	wallet := newLedger()
	tc := table.DefaultTableConfig()
	type node struct {
		svc   *table.Service
		clock *clock
		id    string
		rng   *rand.Rand
	}
	var nodes []node
	for i := 0; i < tables; i++ {
		c := newClock()
		svc, err := table.NewService(table.Config{Node: fmt.Sprintf("node%d", i)}, table.Deps{Store: store, Wallet: wallet, Shuffler: newShuffler(uint64(i)), Clock: c, Publisher: h})
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("bj%d", i)
		if err := svc.Open(context.Background(), id, tc); err != nil {
			t.Fatal(err)
		}
		for seat := 1; seat <= 3; seat++ {
			p := fmt.Sprintf("%s-p%d", id, seat)
			wallet.fund(p, 10_000_000)
			sit(t, svc, id, p, seat)
		}
		nodes = append(nodes, node{svc: svc, clock: c, id: id, rng: rand.New(rand.NewPCG(uint64(i), 99))})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var subs []*subscriber
	start := func(n node, k int, fromSnapshot bool) {
		s := &subscriber{id: n.id, svc: n.svc, hub: h, rng: rand.New(rand.NewPCG(uint64(k), 7))}
		s.view = table.View{Table: n.id, Round: 1, Phase: table.TableBetting}
		if fromSnapshot {
			v, err := n.svc.Snapshot(context.Background(), n.id)
			if err != nil {
				t.Fatal(err)
			}
			s.view = v
		}
		subs = append(subs, s)
		wg.Add(1)
		go func() { defer wg.Done(); s.run(stop) }()
	}
	for i, n := range nodes {
		for k := 0; k < subsPerTable/2; k++ {
			start(n, i*100+k, false)
		}
	}
	for r := 0; r < rounds; r++ {
		if r == rounds/2 {
			for i, n := range nodes {
				for k := subsPerTable / 2; k < subsPerTable; k++ {
					start(n, i*100+k, true)
				}
			}
		}
		for _, n := range nodes {
			playRound(t, n.svc, n.clock, n.id, tc, n.rng, 5)
		}
	}
	close(stop)
	wg.Wait()

	disconnects := 0
	for _, n := range nodes {
		final := checkLog(t, n.svc, n.id)
		snap, _ := n.svc.Snapshot(context.Background(), n.id)
		want := mustJSON(t, snap)
		for _, s := range subs {
			if s.id != n.id {
				continue
			}
			if s.err != nil {
				t.Fatalf("subscriber on %s: %v", s.id, s.err)
			}
			disconnects += s.disconnects
			if len(s.log) == 0 {
				t.Fatalf("subscriber on %s saw nothing", s.id)
			}
			first := s.log[0].Seq
			for i, e := range s.log {
				if e.Seq != first+int64(i) {
					t.Fatalf("subscriber on %s: gap at %d (seq %d)", s.id, i, e.Seq)
				}
				if mustJSON(t, e) != mustJSON(t, final[e.Seq-1]) {
					t.Fatalf("subscriber on %s saw a different event %d:\n%s\n%s", s.id, e.Seq, mustJSON(t, e), mustJSON(t, final[e.Seq-1]))
				}
			}
			if got := mustJSON(t, s.view); got != want {
				t.Fatalf("subscriber on %s ended at\n%s\nwant\n%s", s.id, got, want)
			}
		}
	}
	if disconnects < tables*subsPerTable {
		t.Fatalf("only %d disconnects; the test did not exercise resumption", disconnects)
	}
}
