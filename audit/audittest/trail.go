package audittest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer/audit"
)

// Trail is a running archiver and relay over one Pipeline, as serve runs
// them, with test-sized flush and poll intervals.
type Trail struct {
	Dir     string
	Key     ed25519.PrivateKey
	Relay   *prometheus.Registry // the relay's metrics
	Archive *prometheus.Registry // the archiver's metrics
	p       Pipeline
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// StartTrail starts the archiver (into a new directory) and the relay of
// p; they are stopped by Stop or at the end of the test.
func StartTrail(t *testing.T, p Pipeline) *Trail {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &Trail{Dir: t.TempDir(), Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)),
		Relay: prometheus.NewRegistry(), Archive: prometheus.NewRegistry(), p: p, cancel: cancel, done: make(chan error, 2)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := audit.Config{Dir: tr.Dir, FlushAge: 20 * time.Millisecond, SegmentRecords: 500, RetryMin: time.Millisecond, RetryMax: time.Second}
	arch, err := audit.NewArchiver(cfg, p.Source, p.Log, tr.Key, tr.Archive, log)
	if err != nil {
		t.Fatal(err)
	}
	relay, err := audit.NewRelay(audit.RelayConfig{Poll: 5 * time.Millisecond, ReleaseEvery: 100 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: time.Second},
		p.Outbox, p.Stream, tr.Relay, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() { tr.done <- arch.Run(ctx) }()
	go func() { tr.done <- relay.Run(ctx) }()
	t.Cleanup(func() { tr.Stop(t) })
	return tr
}

// Stop stops the archiver and the relay and waits for them.
func (tr *Trail) Stop(t *testing.T) {
	t.Helper()
	if tr.stopped {
		return
	}
	tr.stopped = true
	tr.cancel()
	for i := 0; i < 2; i++ {
		if err := <-tr.done; err != nil {
			t.Errorf("archiver or relay: %v", err)
		}
	}
}

// Drain waits until the outbox is empty: every captured change archived,
// fsynced and acknowledged end to end.
func (tr *Trail) Drain(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, err := tr.p.Outbox.Backlog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b.Records == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d captured changes never left the outbox", b.Records)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Replay replays the archive as it stands and compares it with store.
func (tr *Trail) Replay(t *testing.T, store audit.StateReader) (audit.State, []audit.Difference) {
	t.Helper()
	st, err := audit.Replay(tr.p.Records(tr.Dir))
	if err != nil {
		t.Fatalf("replay: %v", err)
	}
	diffs, err := audit.Compare(context.Background(), st, store)
	if err != nil {
		t.Fatal(err)
	}
	return st, diffs
}

// Verify checks the archive end to end with the seal key.
func (tr *Trail) Verify(t *testing.T) {
	t.Helper()
	if err := tr.p.Verify(tr.Dir, tr.Key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatalf("verify: %v", err)
	}
}
