package betfair_test

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/feed/betfair"
	"github.com/buzzer-bet/buzzer/feedsim"
	"github.com/buzzer-bet/buzzer/odds"
)

// TestReconnectResubscribesWithClk runs the adapter against the simulated
// exchange: a silent stream is marked down and dropped; the adapter
// resubscribes with its clock tokens and is trusted again only after the
// server's RESUB_DELTA.
func TestReconnectResubscribesWithClk(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	table, _ := odds.NewMappingTable()
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"betfair"}})
	if err != nil {
		t.Fatal(err)
	}
	feeds, err := feedsim.Start(ctx, feedsim.FeedsConfig{Sim: feedsim.Config{Seed: 3, Football: 2, AmericanFootball: 1,
		Speed: 60, Tick: 50 * time.Millisecond, OnMatch: func(m feedsim.MatchState) {
			for _, l := range feedsim.Links(m) {
				_ = table.Add(l)
			}
			_ = eng.AddFixture(feedsim.Fixture(m))
		}}})
	if err != nil {
		t.Fatal(err)
	}
	defer feeds.Stop()
	var resub atomic.Bool
	journal := feed.JournalFunc(func(_ context.Context, m feed.RawMessage) {
		if bytes.Contains(m.Payload, []byte(`"ct":"RESUB_DELTA"`)) {
			resub.Store(true)
		}
	})
	a, err := betfair.New(betfair.Config{Addr: feeds.Betfair.Addr(), Mapper: table, Sink: eng, Journal: journal, ImageTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (stats %+v)", what, a.Stats())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait("first image", a.Up)
	q, err := eng.Quote(feedsim.EventID(0), odds.MarketID(feedsim.EventID(0), odds.MatchResult, 0), odds.Home)
	if err != nil || q.Price == 0 {
		t.Fatalf("quote %+v %v", q, err)
	}
	feeds.Betfair.SetFaults(feedsim.Faults{Silent: true})
	wait("down on silence", func() bool { return !a.Up() })
	wait("reconnect", func() bool { return a.Stats().Reconnects > 0 })
	if a.Up() {
		t.Fatal("trusted again before any image")
	}
	feeds.Betfair.SetFaults(feedsim.Faults{})
	wait("resubscribed", a.Up)
	if s := a.Stats(); s.Recoveries < 2 || !resub.Load() {
		t.Fatalf("stats %+v", s)
	}
	cancel()
	<-done
}
