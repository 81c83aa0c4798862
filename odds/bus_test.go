package odds_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

func mkt(ev string, line odds.Line, st odds.MarketStatus, p buzzer.Price) *odds.Market {
	return &odds.Market{ID: odds.MarketID(ev, odds.Totals, line), Type: odds.Totals, Line: line, Status: st,
		Selections: []odds.Selection{{ID: odds.Over, Price: p}, {ID: odds.Under, Price: p + 100}}}
}

func TestSnapshotApplyAndFold(t *testing.T) {
	s := odds.Snapshot{Event: odds.EventInfo{Fixture: odds.Fixture{EventID: "ev-1"}}}
	info := odds.EventInfo{Fixture: odds.Fixture{EventID: "ev-1"}, InPlay: true, Provider: "p1"}
	steps := []odds.Delta{
		{EventID: "ev-1", Seq: 1, Kind: odds.DeltaEvent, Event: &info},
		{EventID: "ev-1", Seq: 2, Kind: odds.DeltaMarket, Market: mkt("ev-1", 350, odds.Open, 19000)},
		{EventID: "ev-1", Seq: 3, Kind: odds.DeltaMarket, Market: mkt("ev-1", 150, odds.Open, 15000)},
		{EventID: "ev-1", Seq: 4, Kind: odds.DeltaMarket, Market: mkt("ev-1", 350, odds.Suspended, 19000)},
		{EventID: "ev-1", Seq: 5, Kind: odds.DeltaMarketRemoved, MarketID: odds.MarketID("ev-1", odds.Totals, 150)},
	}
	for _, d := range steps {
		if ok, err := s.Apply(d); !ok || err != nil {
			t.Fatalf("Apply(%d) = %v, %v", d.Seq, ok, err)
		}
	}
	if s.Seq != 5 || len(s.Markets) != 1 || s.Markets[0].Status != odds.Suspended || !s.Event.InPlay {
		t.Fatalf("state after 5 deltas: %+v", s)
	}
	// A repeat is ignored; a gap is refused and changes nothing.
	if ok, err := s.Apply(steps[2]); ok || err != nil {
		t.Fatalf("repeat: %v %v", ok, err)
	}
	gap := odds.Delta{EventID: "ev-1", Seq: 7, Kind: odds.DeltaMarket, Market: mkt("ev-1", 250, odds.Open, 17000)}
	if ok, err := s.Apply(gap); ok || buzzer.ErrorReason(err) != odds.ErrSequenceGap {
		t.Fatalf("gap: %v %v", ok, err)
	}
	if s.Seq != 5 || len(s.Markets) != 1 {
		t.Fatalf("a refused gap changed the state: %+v", s)
	}
	if _, err := s.Apply(odds.Delta{EventID: "ev-2", Seq: 6}); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("other event: %v", err)
	}
	// Folding the latest delta per market equals applying every delta.
	full := odds.Snapshot{Event: odds.EventInfo{Fixture: odds.Fixture{EventID: "ev-1"}}}
	for _, d := range steps {
		if err := full.Fold(d); err != nil {
			t.Fatal(err)
		}
	}
	conflated := odds.Snapshot{Event: odds.EventInfo{Fixture: odds.Fixture{EventID: "ev-1"}}}
	for _, d := range []odds.Delta{steps[0], steps[3], steps[4]} { // latest per conflation key
		if err := conflated.Fold(d); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := mustJSON(t, full), mustJSON(t, conflated); a != b {
		t.Fatalf("conflated fold differs:\n%s\n%s", a, b)
	}
	keys := map[string]bool{}
	for _, d := range steps {
		keys[odds.ConflationKey(d)] = true
	}
	if len(keys) != 3 { // event, market 3.5, market 1.5 (changed then removed)
		t.Fatalf("conflation keys %v", keys)
	}
	if got := odds.MsgID("e1", steps[1]); got != "e1:ev-1:2" {
		t.Fatalf("MsgID = %q", got)
	}
}

// flakyBus records what it is asked to publish and fails while told to.
type flakyBus struct {
	mu       sync.Mutex
	failures int
	got      []odds.Delta
	block    chan struct{}
}

func (b *flakyBus) Publish(ctx context.Context, epoch string, ds ...odds.Delta) error {
	if b.block != nil {
		select {
		case <-b.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures > 0 {
		b.failures--
		return errors.New("broker unavailable")
	}
	b.got = append(b.got, ds...)
	return nil
}

func (b *flakyBus) Subscribe(context.Context, string, func(odds.BusMessage) error) error { return nil }
func (b *flakyBus) Tail(context.Context) (string, error)                                 { return "", nil }

func TestBusPublisherRetriesInOrderAndNeverBlocks(t *testing.T) {
	if _, err := odds.NewBusPublisher(&flakyBus{}, odds.BusPublisherConfig{}); err == nil {
		t.Fatal("a publisher without an epoch was accepted")
	}
	bus := &flakyBus{failures: 2, block: make(chan struct{})}
	p, err := odds.NewBusPublisher(bus, odds.BusPublisherConfig{Epoch: "e", Queue: 8, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	// The bus is stuck: PublishDelta still returns at once, dropping what
	// the queue cannot hold (at most one batch is taken out of it).
	for seq := uint64(1); seq <= 20; seq++ {
		p.PublishDelta(odds.Delta{EventID: "ev", Seq: seq})
	}
	st := p.Stats()
	if st.Dropped == 0 || st.Dropped+uint64(st.Queued) > 20 {
		t.Fatalf("stats with a stuck bus: %+v", st)
	}
	close(bus.block)
	deadline := time.Now().Add(20 * time.Second)
	for p.Stats().Published+p.Stats().Dropped < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("never published: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	bus.mu.Lock()
	defer bus.mu.Unlock()
	for i := 1; i < len(bus.got); i++ {
		if bus.got[i].Seq <= bus.got[i-1].Seq {
			t.Fatalf("published out of order: %d after %d", bus.got[i].Seq, bus.got[i-1].Seq)
		}
	}
	if uint64(len(bus.got)) != p.Stats().Published || p.Stats().Failed != 0 {
		t.Fatalf("bus got %d, stats %+v", len(bus.got), p.Stats())
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
