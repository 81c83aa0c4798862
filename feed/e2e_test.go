package feed_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/feed/betfair"
	"github.com/buzzer-bet/buzzer/feed/uof"
	"github.com/buzzer-bet/buzzer/feed/usodds"
	"github.com/buzzer-bet/buzzer/feedsim"
	"github.com/buzzer-bet/buzzer/odds"
)

type deltaLog struct {
	mu     sync.Mutex
	deltas map[string][]odds.Delta
	n      int
}

func (l *deltaLog) PublishDelta(d odds.Delta) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deltas[d.EventID] = append(l.deltas[d.EventID], d)
	l.n++
}

func (l *deltaLog) any(f func(odds.Delta) bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ds := range l.deltas {
		for _, d := range ds {
			if f(d) {
				return true
			}
		}
	}
	return false
}

// eventually polls cond until it holds or a generous deadline passes; the
// deadline guards against hangs and is not a performance assertion. It is
// long because a CPU-starved machine (seen at load average 23) lets the
// adapters' processing lag grow until they are marked down; they recover
// once the machine does, which is the behaviour under test.
func eventually(t *testing.T, what string, cond func() bool, diag func() string) {
	t.Helper()
	deadline := time.Now().Add(4 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, diag())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEnd runs the three simulated providers on loopback with the three
// adapters feeding one engine, injects silence, divergence and malformed
// messages, and checks that every event's deltas are numbered 1..n without
// gap, and that replaying them reproduces the engine's snapshot.
func TestEndToEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	table, _ := odds.NewMappingTable()
	log := &deltaLog{deltas: map[string][]odds.Delta{}}
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"uof", "betfair", "usodds"}, Publisher: log})
	if err != nil {
		t.Fatal(err)
	}
	onMatch := func(m feedsim.MatchState) {
		for _, l := range feedsim.Links(m) {
			if err := table.Add(l); err != nil {
				t.Error(err)
			}
		}
		if err := eng.AddFixture(feedsim.Fixture(m)); err != nil {
			t.Error(err)
		}
	}
	feeds, err := feedsim.Start(ctx, feedsim.FeedsConfig{Sim: feedsim.Config{
		Seed: 1, Football: 6, AmericanFootball: 4, Speed: 1200, Tick: 50 * time.Millisecond, Rolling: true, OnMatch: onMatch}})
	if err != nil {
		t.Fatal(err)
	}
	defer feeds.Stop()

	var journaled atomic.Int64
	journal := feed.JournalFunc(func(_ context.Context, m feed.RawMessage) { journaled.Add(1) })
	ua, err := uof.New(uof.Config{URL: feeds.UOF.URL(), Mapper: table, Sink: eng, Journal: journal, RecoveryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ba, err := betfair.New(betfair.Config{Addr: feeds.Betfair.Addr(), Mapper: table, Sink: eng, Journal: journal})
	if err != nil {
		t.Fatal(err)
	}
	sa, err := usodds.New(usodds.Config{URL: feeds.USOdds.URL(), Mapper: table, Sink: eng, Journal: journal, PollInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{ua.Run, ba.Run, sa.Run, eng.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}

	diag := func() string {
		return fmt.Sprintf("engine %+v\nuof %+v\nbetfair %+v\nusodds %+v", eng.Providers(), ua.Stats(), ba.Stats(), sa.Stats())
	}
	eventually := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		start := time.Now()
		eventually(t, what, cond, diag)
		t.Logf("%s after %v", what, time.Since(start).Round(time.Millisecond))
	}
	driven := func(provider string) func() bool {
		return func() bool {
			n := 0
			for _, e := range eng.Events() {
				if !e.Ended && e.Provider == provider {
					n++
				}
			}
			return n >= 5
		}
	}
	eventually(t, "all adapters up", func() bool { return ua.Up() && ba.Up() && sa.Up() })
	eventually(t, "uof driving", driven("uof"))

	// The primary goes silent: the secondary takes over, then hands back.
	feeds.UOF.SetFaults(feedsim.Faults{Silent: true})
	eventually(t, "failover to betfair", driven("betfair"))
	feeds.UOF.SetFaults(feedsim.Faults{})
	eventually(t, "hand-back to uof", driven("uof"))

	// The secondary diverges: the primary's markets are suspended for it.
	// (Short divergences also happen naturally, when one provider has priced
	// a goal and another not yet; only those after the fault count here.)
	since := time.Now()
	feeds.Betfair.SetFaults(feedsim.Faults{Diverge: 2})
	eventually(t, "divergence suspension", func() bool {
		return log.any(func(d odds.Delta) bool { return d.Reason == "price_divergence" && d.At.After(since) })
	})
	feeds.Betfair.SetFaults(feedsim.Faults{})

	// The primary lags past its bound: it is marked down (the secondary
	// drives) and trusted again only after a recovery once the lag is gone.
	feeds.UOF.SetFaults(feedsim.Faults{LagMS: 1500})
	eventually(t, "uof down on lag", func() bool { return !ua.Up() })
	eventually(t, "failover on lag", driven("betfair"))
	feeds.UOF.SetFaults(feedsim.Faults{})
	eventually(t, "hand-back after lag", driven("uof"))

	// Malformed messages are counted and dropped; the adapters carry on.
	before := ua.Stats().ParseErrors + ba.Stats().ParseErrors + sa.Stats().ParseErrors
	for _, p := range []string{feedsim.ProviderUOF, feedsim.ProviderBetfair, feedsim.ProviderUSOdds} {
		feeds.SetFaults(p, feedsim.Faults{MalformedEvery: 7})
	}
	eventually(t, "parse errors counted", func() bool {
		return ua.Stats().ParseErrors+ba.Stats().ParseErrors+sa.Stats().ParseErrors > before+3
	})
	for _, p := range []string{feedsim.ProviderUOF, feedsim.ProviderBetfair, feedsim.ProviderUSOdds} {
		feeds.SetFaults(p, feedsim.Faults{})
	}
	eventually(t, "settlements", func() bool {
		return log.any(func(d odds.Delta) bool { return d.Market != nil && d.Market.Status == odds.Settled })
	})

	cancel()
	wg.Wait()
	if journaled.Load() == 0 {
		t.Fatal("nothing journaled")
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if log.n < 100 {
		t.Fatalf("only %d deltas", log.n)
	}
	for ev, ds := range log.deltas {
		markets := map[string]odds.Market{}
		var info odds.EventInfo
		for i, d := range ds {
			if d.Seq != uint64(i+1) {
				t.Fatalf("event %s: delta %d has seq %d", ev, i, d.Seq)
			}
			switch d.Kind {
			case odds.DeltaEvent:
				info = *d.Event
			case odds.DeltaMarket:
				markets[d.Market.ID] = *d.Market
			case odds.DeltaMarketRemoved:
				delete(markets, d.MarketID)
			}
		}
		snap, err := eng.Snapshot(ev)
		if err != nil {
			t.Fatal(err)
		}
		if snap.Seq != uint64(len(ds)) || snap.Event.Provider != info.Provider || len(snap.Markets) != len(markets) {
			t.Fatalf("event %s: snapshot seq %d provider %q markets %d; replay %d %q %d",
				ev, snap.Seq, snap.Event.Provider, len(snap.Markets), len(ds), info.Provider, len(markets))
		}
		for _, m := range snap.Markets {
			r := markets[m.ID]
			if r.Version != m.Version || r.Status != m.Status || len(r.Selections) != len(m.Selections) {
				t.Fatalf("event %s market %s: snapshot %+v, replay %+v", ev, m.ID, m, r)
			}
			for i := range m.Selections {
				if m.Selections[i] != r.Selections[i] {
					t.Fatalf("event %s market %s: snapshot %+v, replay %+v", ev, m.ID, m, r)
				}
			}
		}
	}
	t.Logf("%d deltas over %d events; uof %+v; betfair %+v; usodds %+v", log.n, len(log.deltas), ua.Stats(), ba.Stats(), sa.Stats())
}

// BenchmarkPipelineDefaults runs the default simulation (50 matches) through
// the three adapters into the engine for b.N seconds of wall time and reports
// the delta rate the engine emits.
func BenchmarkPipelineDefaults(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table, _ := odds.NewMappingTable()
	var n atomic.Int64
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"uof", "betfair", "usodds"},
		Publisher: odds.PublisherFunc(func(odds.Delta) { n.Add(1) })})
	if err != nil {
		b.Fatal(err)
	}
	feeds, err := feedsim.Start(ctx, feedsim.FeedsConfig{Sim: feedsim.Config{Seed: 1, Rolling: true, OnMatch: func(m feedsim.MatchState) {
		for _, l := range feedsim.Links(m) {
			_ = table.Add(l)
		}
		_ = eng.AddFixture(feedsim.Fixture(m))
	}}})
	if err != nil {
		b.Fatal(err)
	}
	defer feeds.Stop()
	ua, _ := uof.New(uof.Config{URL: feeds.UOF.URL(), Mapper: table, Sink: eng})
	ba, _ := betfair.New(betfair.Config{Addr: feeds.Betfair.Addr(), Mapper: table, Sink: eng})
	sa, _ := usodds.New(usodds.Config{URL: feeds.USOdds.URL(), Mapper: table, Sink: eng})
	var wg sync.WaitGroup
	for _, run := range []func(context.Context) error{ua.Run, ba.Run, sa.Run, eng.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(ctx) }()
	}
	for !(ua.Up() && ba.Up() && sa.Up()) {
		time.Sleep(10 * time.Millisecond)
	}
	b.ResetTimer()
	start, n0 := time.Now(), n.Load()
	for i := 0; i < b.N; i++ {
		time.Sleep(time.Second)
	}
	b.ReportMetric(float64(n.Load()-n0)/time.Since(start).Seconds(), "deltas/s")
	cancel()
	wg.Wait()
}
