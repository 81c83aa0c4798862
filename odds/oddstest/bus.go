// Package oddstest holds the conformance suite every odds.Bus implementation
// runs (JetStream and Kafka alike), so both backbones are held to one
// contract: order per event, deduplicated publish, resume from a position.
// It is imported only by tests and must never be used by production code.
package oddstest

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// NewBus returns a fresh, empty bus for one subtest; it is closed by the
// factory's own t.Cleanup.
type NewBus func(t *testing.T) odds.Bus

// RunBus runs the conformance suite against the implementation newBus makes.
func RunBus(t *testing.T, newBus NewBus) {
	t.Run("OrderPerEventAndFidelity", func(t *testing.T) { testOrder(t, newBus(t)) })
	t.Run("DuplicatesDropped", func(t *testing.T) { testDuplicates(t, newBus(t)) })
	t.Run("ResumeFromPosition", func(t *testing.T) { testResume(t, newBus(t)) })
	t.Run("LiveTail", func(t *testing.T) { testLiveTail(t, newBus(t)) })
	t.Run("FromLatest", func(t *testing.T) { testLatest(t, newBus(t)) })
	t.Run("Tail", func(t *testing.T) { testTail(t, newBus(t)) })
	t.Run("EpochsAreDistinct", func(t *testing.T) { testEpochs(t, newBus(t)) })
	t.Run("CanceledPublish", func(t *testing.T) { testCanceled(t, newBus(t)) })
}

// Delta returns a deterministic market delta of event ev at seq; source
// times carry nanoseconds so a lossy encoding shows.
func Delta(ev string, seq uint64, rng *rand.Rand) odds.Delta {
	line := odds.Line(50 + 100*rng.IntN(5))
	id := odds.MarketID(ev, odds.Totals, line)
	src := time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC).Add(time.Duration(seq)*time.Second + time.Duration(rng.IntN(1e9)))
	return odds.Delta{
		EventID: ev, Seq: seq, Kind: odds.DeltaMarket,
		Market: &odds.Market{ID: id, Type: odds.Totals, Line: line, Status: odds.Open, Provider: "uof", Version: seq,
			Selections: []odds.Selection{
				{ID: odds.Over, Price: buzzer.Price(15000 + rng.IntN(20000))},
				{ID: odds.Under, Price: buzzer.Price(15000 + rng.IntN(20000))},
			}},
		SourceTime: src, At: src.Add(3 * time.Millisecond),
	}
}

func encode(t *testing.T, d odds.Delta) string {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// collector subscribes and gathers messages until want distinct deltas arrived.
type collector struct {
	mu   sync.Mutex
	msgs []odds.BusMessage
	done chan struct{}
	want int
	err  chan error
}

func collect(t *testing.T, bus odds.Bus, from string, want int) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{done: make(chan struct{}), want: want, err: make(chan error, 1)}
	go func() {
		c.err <- bus.Subscribe(ctx, from, func(m odds.BusMessage) error {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.msgs = append(c.msgs, m)
			if len(c.msgs) == c.want {
				close(c.done)
			}
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-c.err; err != nil {
			t.Errorf("Subscribe returned %v after cancel, want nil", err)
		}
	})
	return c
}

func (c *collector) wait(t *testing.T) []odds.BusMessage {
	t.Helper()
	select {
	case <-c.done:
	case err := <-c.err:
		t.Fatalf("subscription ended early: %v", err)
	case <-time.After(30 * time.Second):
		c.mu.Lock()
		n := len(c.msgs)
		c.mu.Unlock()
		t.Fatalf("got %d of %d deltas", n, c.want)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]odds.BusMessage(nil), c.msgs...)
}

// settle waits briefly and fails if more than want messages arrived (a
// duplicate delivered after the expected ones).
func (c *collector) settle(t *testing.T) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.msgs) != c.want {
		t.Fatalf("received %d deltas, want exactly %d", len(c.msgs), c.want)
	}
}

// The epoch the suite publishes under unless a test says otherwise.
const epoch = "e1"

// checkOrder verifies every event's deltas arrive as 1, 2, 3, ... exactly
// matching what was published (keyed by MsgID).
func checkOrder(t *testing.T, msgs []odds.BusMessage, published map[string]string, first map[string]uint64) {
	t.Helper()
	next := map[string]uint64{}
	for k, v := range first {
		next[k] = v
	}
	for _, m := range msgs {
		d := m.Delta
		want := next[d.EventID]
		if want == 0 {
			want = 1
		}
		if d.Seq != want {
			t.Fatalf("event %s: got seq %d, want %d", d.EventID, d.Seq, want)
		}
		next[d.EventID] = want + 1
		id := odds.MsgID(m.Epoch, d)
		if got := encode(t, d); got != published[id] {
			t.Fatalf("delta %s changed in transit:\n got %s\nwant %s", id, got, published[id])
		}
		if m.Position == "" {
			t.Fatalf("delta %s delivered without a position", id)
		}
	}
}

// publishInterleaved publishes n deltas for each event (seq from..from+n-1),
// interleaving events in random batches.
func publishInterleaved(t *testing.T, bus odds.Bus, rng *rand.Rand, events []string, from, n uint64, published map[string]string) {
	t.Helper()
	next := map[string]uint64{}
	for _, ev := range events {
		next[ev] = from
	}
	var pending []odds.Delta
	for remaining := len(events) * int(n); remaining > 0; {
		ev := events[rng.IntN(len(events))]
		if next[ev] >= from+n {
			continue
		}
		d := Delta(ev, next[ev], rng)
		next[ev]++
		remaining--
		published[odds.MsgID(epoch, d)] = encode(t, d)
		pending = append(pending, d)
		if rng.IntN(4) == 0 || remaining == 0 {
			if err := bus.Publish(context.Background(), epoch, pending...); err != nil {
				t.Fatal(err)
			}
			pending = pending[:0]
		}
	}
}

func testOrder(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(1, 2))
	events := []string{"ev-1", "ev-2", "ev-3", "ev-4", "ev-5", "ev-6", "ev-7", "ev-8"}
	published := map[string]string{}
	publishInterleaved(t, bus, rng, events, 1, 40, published)
	c := collect(t, bus, odds.FromStart, len(published))
	checkOrder(t, c.wait(t), published, nil)
	c.settle(t)
}

func testDuplicates(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(3, 4))
	published := map[string]string{}
	var ds []odds.Delta
	for seq := uint64(1); seq <= 6; seq++ {
		d := Delta("ev-d", seq, rng)
		ds = append(ds, d)
		published[odds.MsgID(epoch, d)] = encode(t, d)
	}
	ctx := context.Background()
	for _, batch := range [][]odds.Delta{ds[:5], ds[2:4], {ds[3], ds[4]}, ds[4:]} {
		if err := bus.Publish(ctx, epoch, batch...); err != nil {
			t.Fatal(err)
		}
	}
	c := collect(t, bus, odds.FromStart, 6)
	checkOrder(t, c.wait(t), published, nil)
	c.settle(t)
}

var errStop = errors.New("stop here")

func testResume(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(5, 6))
	events := []string{"ev-a", "ev-b", "ev-c"}
	published := map[string]string{}
	publishInterleaved(t, bus, rng, events, 1, 10, published)

	// Read the first 12 deltas, then stop.
	var first []odds.BusMessage
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := bus.Subscribe(ctx, odds.FromStart, func(m odds.BusMessage) error {
		first = append(first, m)
		if len(first) == 12 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("Subscribe returned %v, want the handler's error", err)
	}
	checkOrder(t, first, published, nil)
	seen := map[string]uint64{}
	for _, m := range first {
		seen[m.Delta.EventID] = m.Delta.Seq + 1
	}

	publishInterleaved(t, bus, rng, events, 11, 5, published)
	c := collect(t, bus, first[len(first)-1].Position, len(published)-len(first))
	checkOrder(t, c.wait(t), published, seen)
	c.settle(t)
}

// testTail: a subscription from Tail gets exactly what was appended after
// Tail was read, on an empty stream and on a non-empty one.
func testTail(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(15, 16))
	ctx := context.Background()
	published := map[string]string{}
	first := map[string]uint64{}
	seq := map[string]uint64{}
	for round := 0; round < 2; round++ {
		tail, err := bus.Tail(ctx)
		if err != nil {
			t.Fatal(err)
		}
		clear(published)
		for ev, s := range seq {
			first[ev] = s + 1
		}
		var ds []odds.Delta
		for i := 0; i < 12; i++ {
			ev := []string{"ev-t1", "ev-t2", "ev-t3"}[i%3]
			seq[ev]++
			d := Delta(ev, seq[ev], rng)
			published[odds.MsgID(epoch, d)] = encode(t, d)
			ds = append(ds, d)
		}
		if err := bus.Publish(ctx, epoch, ds...); err != nil {
			t.Fatal(err)
		}
		c := collect(t, bus, tail, len(ds))
		checkOrder(t, c.wait(t), published, first)
		c.settle(t)
	}
}

// testLatest: a FromLatest subscription gets nothing published before it
// started, then everything after its first delivery, in order.
func testLatest(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(13, 14))
	ctx := context.Background()
	for seq := uint64(1); seq <= 5; seq++ {
		if err := bus.Publish(ctx, epoch, Delta("ev-l", seq, rng)); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan odds.BusMessage, 1024)
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- bus.Subscribe(sctx, odds.FromLatest, func(m odds.BusMessage) error { got <- m; return nil })
	}()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Subscribe returned %v after cancel", err)
		}
	}()
	// Publish until the subscription, which attaches at some point, delivers.
	seq := uint64(6)
	var first odds.BusMessage
	deadline := time.After(30 * time.Second)
wait:
	for ; ; seq++ {
		if err := bus.Publish(ctx, epoch, Delta("ev-l", seq, rng)); err != nil {
			t.Fatal(err)
		}
		select {
		case first = <-got:
			break wait
		case <-deadline:
			t.Fatal("FromLatest subscription delivered nothing")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if first.Delta.Seq < 6 {
		t.Fatalf("FromLatest delivered seq %d, published before it started", first.Delta.Seq)
	}
	for want := first.Delta.Seq + 1; want <= seq+3; want++ {
		if want > seq {
			if err := bus.Publish(ctx, epoch, Delta("ev-l", want, rng)); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case m := <-got:
			if m.Delta.Seq != want {
				t.Fatalf("FromLatest delivered seq %d, want %d", m.Delta.Seq, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("FromLatest: seq %d never arrived", want)
		}
	}
}

func testLiveTail(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(7, 8))
	c := collect(t, bus, odds.FromStart, 20)
	published := map[string]string{}
	for seq := uint64(1); seq <= 20; seq++ {
		d := Delta("ev-live", seq, rng)
		published[odds.MsgID(epoch, d)] = encode(t, d)
		if err := bus.Publish(context.Background(), epoch, d); err != nil {
			t.Fatal(err)
		}
	}
	checkOrder(t, c.wait(t), published, nil)
}

func testCanceled(t *testing.T, bus odds.Bus) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := bus.Publish(ctx, epoch, Delta("ev-x", 1, rand.New(rand.NewPCG(9, 9))))
	if err == nil {
		t.Fatal("Publish with a canceled context succeeded")
	}
	if c := buzzer.ErrorCode(err); c != buzzer.ETIMEOUT && c != buzzer.EUNAVAILABLE {
		t.Fatalf("Publish with a canceled context: code %q (%v), want timeout or unavailable", c, err)
	}
}

// testEpochs: a restarted engine numbers deltas from 1 again under a new
// epoch; those are new deltas, not duplicates, and arrive after the old ones.
func testEpochs(t *testing.T, bus odds.Bus) {
	rng := rand.New(rand.NewPCG(11, 12))
	published := map[string]string{}
	var order []string
	for _, ep := range []string{"old", "new"} {
		for seq := uint64(1); seq <= 4; seq++ {
			d := Delta("ev-e", seq, rng)
			published[odds.MsgID(ep, d)] = encode(t, d)
			order = append(order, odds.MsgID(ep, d))
			if err := bus.Publish(context.Background(), ep, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	c := collect(t, bus, odds.FromStart, len(order))
	msgs := c.wait(t)
	for i, m := range msgs {
		id := odds.MsgID(m.Epoch, m.Delta)
		if id != order[i] {
			t.Fatalf("delivery %d is %s, want %s", i, id, order[i])
		}
		if got := encode(t, m.Delta); got != published[id] {
			t.Fatalf("delta %s changed in transit", id)
		}
	}
	c.settle(t)
}
