package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/toggle"
)

func runSet(t *testing.T, ctx context.Context, c *nats.Conn) *toggle.Set {
	t.Helper()
	st, err := nats.NewToggleStore(ctx, c, 1)
	if err != nil {
		t.Fatal(err)
	}
	set := toggle.NewSet(st, buzzer.SystemClock{})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = set.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-set.Loaded():
	case <-time.After(10 * time.Second):
		t.Fatal("the toggles never loaded")
	}
	return set
}

func waitToggle(t *testing.T, set *toggle.Set, n toggle.Name, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for set.Enabled(n) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s never became %v on the other node", n, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTogglesReachEveryNodeAndSurviveRestart: two nodes follow one bucket; a
// flip on one reaches the other, its record says who and why, bad flips
// change nothing, and the state outlives a server restart.
func TestTogglesReachEveryNodeAndSurviveRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := nats.DefaultConfig()
	cfg.StoreDir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	srv, err := nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := nats.Start(ctx, nats.Config{URL: srv.ClientURL(), ConnectTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := runSet(t, ctx, srv), runSet(t, ctx, peer)
	for _, d := range toggle.Known() {
		if a.Enabled(d.Name) != d.Default || b.Enabled(d.Name) != d.Default {
			t.Fatalf("%s does not start at its default %v", d.Name, d.Default)
		}
	}

	st, err := a.Flip(ctx, toggle.BetsAccept, false, "operator:ops-1", "stadium power cut, pausing bets")
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision == 0 || st.ChangedBy != "operator:ops-1" || st.ChangedAt.IsZero() {
		t.Fatalf("flip record %+v", st)
	}
	if a.Enabled(toggle.BetsAccept) {
		t.Fatal("the flipping node still accepts bets")
	}
	waitToggle(t, b, toggle.BetsAccept, false)
	if b.Enabled(toggle.BetsInPlay) != true {
		t.Fatal("an untouched toggle moved")
	}

	for name, flip := range map[string]func() error{
		"unknown name": func() error { _, err := a.Flip(ctx, "bets.acept", false, "operator:x", "typo"); return err },
		"no reason":    func() error { _, err := a.Flip(ctx, toggle.BetsInPlay, false, "operator:x", ""); return err },
		"no operator":  func() error { _, err := a.Flip(ctx, toggle.BetsInPlay, false, "", "why"); return err },
	} {
		if err := flip(); err == nil {
			t.Fatalf("%s: flip accepted", name)
		}
	}
	if !a.Enabled(toggle.BetsInPlay) {
		t.Fatal("a refused flip changed a toggle")
	}

	if _, err := b.Flip(ctx, toggle.BetsAccept, true, "operator:ops-2", "power back"); err != nil {
		t.Fatal(err)
	}
	waitToggle(t, a, toggle.BetsAccept, true)
	ts, err := nats.NewToggleStore(ctx, srv, 1)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := ts.History(ctx, toggle.BetsAccept)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Enabled || !hist[1].Enabled || hist[1].Reason != "power back" {
		t.Fatalf("history %+v", hist)
	}

	// A flip the store cannot take changes nothing anywhere.
	peer.Close()
	if _, err := b.Flip(ctx, toggle.BetsInPlay, false, "operator:x", "store is gone"); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("flip without a store: %v", err)
	}
	if !b.Enabled(toggle.BetsInPlay) {
		t.Fatal("a flip the store refused changed the local view")
	}

	// The flips outlive the server.
	if _, err := a.Flip(ctx, toggle.BetsInPlay, false, "operator:ops-1", "late goal review"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	cfg.Listen = ""
	srv, err = nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := runSet(t, ctx, srv)
	if c.Enabled(toggle.BetsInPlay) || !c.Enabled(toggle.BetsAccept) {
		t.Fatalf("after restart: %+v", c.List())
	}
}
