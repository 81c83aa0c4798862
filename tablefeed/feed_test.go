package tablefeed_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	centrifugego "github.com/centrifugal/centrifuge-go"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/tablefeed"
)

// clock is a settable clock safe for concurrent readers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// wallet is an in-process wallet idempotent per key with unlimited funds:
// the feed is under test here, not money.
type wallet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (w *wallet) move(op table.WalletOp) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen[op.Key] = true
	return nil
}
func (w *wallet) Debit(ctx context.Context, op table.WalletOp) error  { return w.move(op) }
func (w *wallet) Credit(ctx context.Context, op table.WalletOp) error { return w.move(op) }

// shuffler deals seeded shuffles.
type shuffler struct {
	mu    sync.Mutex
	seed  uint64
	calls uint64
}

func (s *shuffler) Shuffle(ctx context.Context, req table.ShoeRequest) (table.ShuffledShoe, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	rng := rand.New(rand.NewPCG(s.seed, s.calls))
	cards := table.OrderedShoe(req.Decks)
	rng.Shuffle(len(cards), func(i, j int) { cards[i], cards[j] = cards[j], cards[i] })
	return table.ShuffledShoe{Ref: fmt.Sprintf("draw/%s/%d", req.Table, req.Shoe), Cards: cards}, nil
}

var cardToken = regexp.MustCompile(`"([2-9TJQKA][SHDC])"`)

// secrets is a Publisher in front of the feed that records, for every
// published sequence, which cards were face up at that moment (from the
// table's stored internal state, counted with multiplicity): a message at
// that sequence may name no other card.
type secrets struct {
	store table.Store
	next  table.Publisher
	mu    sync.Mutex
	at    map[string]map[int64]map[table.Card]int // table -> seq -> face-up cards
	err   error
	holes int
	drop  atomic.Int32 // batches still to withhold from the feed, as a lost publish would
}

func (s *secrets) Publish(id string, events []table.Event) {
	s.record(id, events)
	if s.drop.Load() > 0 {
		s.drop.Add(-1)
		return
	}
	s.next.Publish(id, events)
}

func (s *secrets) record(id string, events []table.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stored, err := s.store.Load(context.Background(), id)
	if err != nil {
		s.err = err
		return
	}
	var st struct {
		Shoe *table.Shoe `json:"shoe"`
		Game *struct {
			Dealer   []table.Card `json:"dealer"`
			Revealed bool         `json:"revealed"`
		} `json:"game"`
	}
	if err := json.Unmarshal(stored.State, &st); err != nil {
		s.err = err
		return
	}
	faceUp := map[table.Card]int{}
	if st.Shoe != nil {
		for _, c := range st.Shoe.Cards[:st.Shoe.Pos] {
			faceUp[c]++
		}
	}
	before := map[table.Card]int{}
	for c, n := range faceUp {
		before[c] = n
	}
	revealed := true
	if st.Game != nil {
		for _, c := range st.Game.Dealer[1:] {
			before[c]--
		}
		revealed = st.Game.Revealed
		if !revealed {
			s.holes++
		}
	}
	if s.at[id] == nil {
		s.at[id] = map[int64]map[table.Card]int{}
	}
	allowed := before
	for _, e := range events {
		if e.Kind == table.EventReveal {
			allowed = faceUp
		}
		s.at[id][e.Seq] = allowed
	}
	if !revealed {
		s.at[id][events[len(events)-1].Seq] = before
	}
}

// check reports a card in msg (a raw message at seq) that was not face up.
func (s *secrets) check(id string, seq int64, raw []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	allowed := s.at[id][seq]
	seen := map[table.Card]int{}
	for _, m := range cardToken.FindAllSubmatch(raw, -1) {
		c, err := table.ParseCard(string(m[1]))
		if err != nil {
			return err
		}
		seen[c]++
	}
	for c, n := range seen {
		if n > allowed[c] {
			return fmt.Errorf("%s seq %d names %v %d times but %d are face up: %s", id, seq, c, n, allowed[c], raw)
		}
	}
	return nil
}

// follower is a centrifuge-go WebSocket client following one table. Every
// (re)connect is a new client resuming after the follower's last sequence;
// callbacks of a replaced client are ignored.
type follower struct {
	url, token, id string

	mu      sync.Mutex
	gen     int
	client  *centrifugego.Client
	view    *table.View
	log     []table.Event
	raw     []rawMsg
	resumes int
	err     error
}

type rawMsg struct {
	seq  int64
	data []byte
}

func (f *follower) fail(err error) {
	if f.err == nil {
		f.err = fmt.Errorf("follower of %s: %w", f.id, err)
	}
}

func (f *follower) subscribed(data []byte) {
	var m tablefeed.Message
	if err := json.Unmarshal(data, &m); err != nil {
		f.fail(err)
		return
	}
	f.raw = append(f.raw, rawMsg{m.Seq, data})
	switch {
	case m.Type == tablefeed.TypeSnapshot && f.view == nil:
		f.view = m.View
	case m.Type == tablefeed.TypeResume && f.view != nil && m.Seq == f.view.Seq:
		f.resumes++
	default:
		f.fail(fmt.Errorf("unexpected %s at %d (have view %v)", m.Type, m.Seq, f.view != nil))
	}
}

func (f *follower) publication(data []byte) {
	var m tablefeed.Message
	if err := json.Unmarshal(data, &m); err != nil || m.Event == nil {
		f.fail(fmt.Errorf("bad publication %s: %v", data, err))
		return
	}
	f.raw = append(f.raw, rawMsg{m.Seq, data})
	if f.view == nil {
		f.fail(fmt.Errorf("event %d before the snapshot", m.Seq))
		return
	}
	if err := f.view.Apply(*m.Event); err != nil {
		f.fail(err) // a gap, a repeat or an event that does not fit
		return
	}
	f.log = append(f.log, *m.Event)
}

func (f *follower) connect() error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = f.try(); err == nil {
			return nil
		}
	}
	return err
}

func (f *follower) try() error {
	f.mu.Lock()
	old := f.client
	f.gen++
	gen := f.gen
	data := []byte(`{}`)
	if f.view != nil {
		data = []byte(fmt.Sprintf(`{"since":%d}`, f.view.Seq))
	}
	c := centrifugego.NewJsonClient(f.url, centrifugego.Config{Token: f.token, HandshakeTimeout: 10 * time.Second, ReadTimeout: 20 * time.Second})
	f.client = c
	f.mu.Unlock()
	if old != nil {
		old.Close()
	}
	sub, err := c.NewSubscription(tablefeed.Channel(f.id), centrifugego.SubscriptionConfig{Data: data})
	if err != nil {
		return err
	}
	done := make(chan struct{})
	var once sync.Once
	sub.OnSubscribed(func(e centrifugego.SubscribedEvent) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.gen == gen {
			f.subscribed(e.Data)
		}
		once.Do(func() { close(done) })
	})
	sub.OnPublication(func(e centrifugego.PublicationEvent) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.gen == gen {
			f.publication(e.Data)
		}
	})
	if err := c.Connect(); err != nil {
		return err
	}
	if err := sub.Subscribe(); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%s: not subscribed", f.id)
	}
}

type rig struct {
	store *inmem.TableStore
	clock *clock
	svc   *table.Service
	feed  *tablefeed.Feed
	sec   *secrets
	keys  *auth.DevKeys
	url   string
}

func newRig(t *testing.T, cfg tablefeed.Config) *rig {
	t.Helper()
	keys, err := auth.LoadOrCreateDevKeys(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ver, err := auth.NewVerifier(auth.DevPlayerConfig(keys), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ver.Close)
	c := &clock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	store := inmem.NewTableStore(c, inmem.TableStoreConfig{})
	cfg.Verifier = ver
	feed, err := tablefeed.New(table.NewReader(store, 0), cfg)
	if err != nil {
		t.Fatal(err)
	}
	sec := &secrets{store: store, next: feed, at: map[string]map[int64]map[table.Card]int{}}
	svc, err := table.NewService(table.Config{Node: "n1"}, table.Deps{Store: store, Wallet: &wallet{seen: map[string]bool{}}, Shuffler: &shuffler{seed: 5}, Clock: c, Publisher: sec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	ts := httptest.NewServer(feed.WebsocketHandler())
	t.Cleanup(func() {
		ts.Close()
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &rig{store: store, clock: c, svc: svc, feed: feed, sec: sec, keys: keys, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/"}
}

func (r *rig) token(t *testing.T, player string) string {
	t.Helper()
	tok, err := r.keys.PlayerToken(player, "NJ", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wait lets d pass the way production does: the clock moves a second at a
// time and every table is ticked after each.
func (r *rig) wait(t *testing.T, d time.Duration) {
	t.Helper()
	for ; d > 0; d -= time.Second {
		r.clock.Advance(time.Second)
		if err := r.svc.TickAll(context.Background()); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
}

// playRound bets at every seat, deals, and plays each turn by basic
// strategy (or lets it time out) until the next round opens.
func playRound(t *testing.T, r *rig, id string, rng *rand.Rand) {
	t.Helper()
	ctx := context.Background()
	tc := table.DefaultTableConfig()
	v, err := r.svc.Snapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	round := v.Round
	for _, s := range v.Seats {
		if _, err := r.svc.Act(ctx, id, table.Request{Player: s.Player, Seat: s.Seat, Round: round, Action: table.PlaceBet, Amount: 200}); err != nil {
			t.Fatalf("bet: %v", err)
		}
	}
	r.wait(t, tc.BettingWindow)
	paid := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("round does not end")
		}
		v, err = r.svc.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Round != round {
			return
		}
		if v.Turn == nil && v.Phase == table.TableSettled && time.Now().Before(paid) {
			// The table's payer pays the round after the answer that
			// settled it, then opens the next.
			i--
			time.Sleep(time.Millisecond)
			continue
		}
		if v.Turn == nil {
			t.Fatalf("round %d stuck: %+v", round, v)
		}
		if rng.IntN(6) == 0 {
			r.wait(t, tc.ActionTimeout)
			continue
		}
		a, amt := table.NoInsurance, buzzer.Amount(0)
		var player string
		for _, s := range v.Seats {
			if s.Seat != v.Turn.Seat {
				continue
			}
			player = s.Player
			if v.Turn.Phase == table.TableInsurance {
				if rng.IntN(2) == 0 {
					a, amt = table.Insure, s.Bet/2
				}
				break
			}
			var legal table.Actions
			for _, x := range v.Turn.Actions {
				legal |= 1 << x
			}
			a = table.BasicStrategy(tc.Rules, legal, s.Hands[v.Turn.Hand].Cards, v.Dealer[0])
		}
		if _, err := r.svc.Act(ctx, id, table.Request{Player: player, Seat: v.Turn.Seat, Round: round, Seq: v.Seq, Action: a, Amount: amt}); err != nil {
			t.Fatalf("act %v: %v", a, err)
		}
	}
}

func allEvents(t *testing.T, r *rig, id string) []table.Event {
	t.Helper()
	var out []table.Event
	for {
		evs, err := r.svc.Events(context.Background(), id, int64(len(out)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSubscribersOverWebSocket: three single-deck tables, each followed by
// eight players over real WebSocket connections who drop at random moments
// (and are sometimes ended by the server) and resume from their last
// sequence, while the tables play rounds. Every follower's events must be a
// contiguous run of its table's one sequence (the follower refuses a gap or
// a repeat), identical to the stored log; every follower must end with the
// table's final snapshot; and no message any follower received may name a
// card that was not face up at that message's sequence.
func TestSubscribersOverWebSocket(t *testing.T) {
	const tables, perTable, rounds = 3, 8, 20
	r := newRig(t, tablefeed.Config{History: 8})
	ctx := context.Background()
	tc := table.DefaultTableConfig()
	tc.Rules.Decks = 1
	var ids []string
	for i := 0; i < tables; i++ {
		id := fmt.Sprintf("bj%d", i)
		ids = append(ids, id)
		if err := r.svc.Open(ctx, id, tc); err != nil {
			t.Fatal(err)
		}
		for seat := 1; seat <= 3; seat++ {
			if _, err := r.svc.Sit(ctx, id, fmt.Sprintf("%s-p%d", id, seat), seat); err != nil {
				t.Fatal(err)
			}
		}
	}
	var fs []*follower
	for i := 0; i < tables*perTable; i++ {
		id := ids[i%tables]
		fs = append(fs, &follower{url: r.url, token: r.token(t, fmt.Sprintf("watcher-%d", i)), id: id})
	}
	connectAll := func(fs []*follower) {
		var wg sync.WaitGroup
		for _, f := range fs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f.connect(); err != nil {
					f.mu.Lock()
					f.fail(err)
					f.mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	// Half follow from the start; half join mid-game.
	connectAll(fs[:len(fs)/2])
	defer func() {
		for _, f := range fs {
			f.mu.Lock()
			c := f.client
			f.mu.Unlock()
			if c != nil {
				c.Close()
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	churn := func(i int, f *follower) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(uint64(i), 3))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(5+rng.IntN(60)) * time.Millisecond):
				if rng.IntN(3) != 0 {
					continue
				}
			}
			if err := f.connect(); err != nil {
				f.mu.Lock()
				f.fail(err)
				f.mu.Unlock()
				return
			}
		}
	}
	for i, f := range fs[:len(fs)/2] {
		wg.Add(1)
		go churn(i, f)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for round := 0; round < rounds; round++ {
		if round == rounds/2 {
			connectAll(fs[len(fs)/2:])
			for i, f := range fs[len(fs)/2:] {
				wg.Add(1)
				go churn(len(fs)/2+i, f)
			}
		}
		for _, id := range ids {
			playRound(t, r, id, rng)
		}
		time.Sleep(2 * time.Millisecond) // let reconnects interleave with rounds
	}
	close(stop)
	wg.Wait()

	finals := map[string][]table.Event{}
	snaps := map[string]string{}
	for _, id := range ids {
		finals[id] = allEvents(t, r, id)
		v, err := r.svc.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		snaps[id] = mustJSON(t, v)
	}
	for _, f := range fs {
		deadline := time.Now().Add(30 * time.Second)
		for {
			f.mu.Lock()
			done := f.err != nil || (f.view != nil && mustJSON(t, f.view) == snaps[f.id])
			seq := int64(-1)
			if f.view != nil {
				seq = f.view.Seq
			}
			f.mu.Unlock()
			if done {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("follower of %s did not reach the final state: at %d of %d", f.id, seq, len(finals[f.id]))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Close every client so that no callback runs while the logs are read.
	for _, f := range fs {
		f.mu.Lock()
		c := f.client
		f.gen++
		f.mu.Unlock()
		c.Close()
	}
	resumes := 0
	for _, f := range fs {
		if f.err != nil {
			t.Fatal(f.err)
		}
		final := finals[f.id]
		for _, e := range f.log {
			if mustJSON(t, e) != mustJSON(t, final[e.Seq-1]) {
				t.Fatalf("follower of %s saw a different event %d", f.id, e.Seq)
			}
		}
		for _, m := range f.raw {
			if err := r.sec.check(f.id, m.seq, m.data); err != nil {
				t.Fatal(err)
			}
		}
		resumes += f.resumes
	}
	if r.sec.err != nil {
		t.Fatal(r.sec.err)
	}
	st := r.feed.Stats()
	t.Logf("%d followers, %d resumes, %d hidden-hole batches; %+v", len(fs), resumes, r.sec.holes, st)
	if resumes < len(fs) || r.sec.holes < tables*rounds {
		t.Fatalf("%d resumes, %d hidden-hole batches: the test did not exercise resumption or hidden cards", resumes, r.sec.holes)
	}
}

// TestConnectNeedsPlayerToken: no token, a forged token and a token of
// another jurisdiction are refused; a valid one subscribes.
func TestConnectNeedsPlayerToken(t *testing.T) {
	r := newRig(t, tablefeed.Config{Jurisdiction: "NJ"})
	ctx := context.Background()
	if err := r.svc.Open(ctx, "bj", table.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	other, err := r.keys.PlayerToken("p", "PA", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good := r.token(t, "p")
	for name, tok := range map[string]string{"none": "", "forged": good[:len(good)-4] + "AAAA", "other jurisdiction": other} {
		f := &follower{url: r.url, token: tok, id: "bj"}
		c := centrifugego.NewJsonClient(f.url, centrifugego.Config{Token: tok})
		refused := make(chan struct{})
		var once sync.Once
		c.OnDisconnected(func(centrifugego.DisconnectedEvent) { once.Do(func() { close(refused) }) })
		c.OnConnected(func(centrifugego.ConnectedEvent) { t.Errorf("%s: connected", name) })
		if err := c.Connect(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-refused:
		case <-time.After(20 * time.Second):
			t.Errorf("%s: not refused", name)
		}
		c.Close()
	}
	f := &follower{url: r.url, token: good, id: "bj"}
	if err := f.connect(); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	c := f.client
	f.mu.Unlock()
	c.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil || f.view == nil || f.view.Table != "bj" {
		t.Fatalf("valid token: %v %+v", f.err, f.view)
	}
}

// TestGapEndsSubscriptionToResume: when published events skip a sequence
// (a batch lost between the table and the feed, as after a table moved
// nodes), the feed never forwards the gap: it ends the subscription with
// code 2500, the client resubscribes on the same connection (with its
// original, stale subscribe data), is resumed after the last event it was
// sent, gets the missing events from the table's log, and ends with the
// table's state.
func TestGapEndsSubscriptionToResume(t *testing.T) {
	r := newRig(t, tablefeed.Config{})
	ctx := context.Background()
	if err := r.svc.Open(ctx, "bj", table.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	for seat := 1; seat <= 2; seat++ {
		if _, err := r.svc.Sit(ctx, "bj", fmt.Sprintf("p%d", seat), seat); err != nil {
			t.Fatal(err)
		}
	}
	f := &follower{url: r.url, token: r.token(t, "watcher"), id: "bj"}
	if err := f.connect(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		f.mu.Lock()
		c := f.client
		f.mu.Unlock()
		c.Close()
	}()
	rng := rand.New(rand.NewPCG(4, 4))
	playRound(t, r, "bj", rng)
	r.sec.drop.Store(1)
	playRound(t, r, "bj", rng)
	playRound(t, r, "bj", rng)
	v, err := r.svc.Snapshot(ctx, "bj")
	if err != nil {
		t.Fatal(err)
	}
	want := mustJSON(t, v)
	deadline := time.Now().Add(20 * time.Second)
	for {
		f.mu.Lock()
		got, ferr, resumes := mustJSON(t, f.view), f.err, f.resumes
		f.mu.Unlock()
		if ferr != nil {
			t.Fatal(ferr)
		}
		if got == want {
			if resumes != 1 || r.feed.Stats().Resyncs != 1 {
				t.Fatalf("%d resumes, %+v", resumes, r.feed.Stats())
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("follower at\n%s\nwant\n%s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
