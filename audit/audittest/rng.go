package audittest

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/rng"
)

// The RNG log the RNG pipeline draws into.
const (
	RNGOrigin       = "audittest.buzzer.local/rng/US-NJ"
	RNGJurisdiction = "US-NJ"
)

// RNGPipeline is one engine's RNG log over one store, with and without
// capture, and the audit path behind it (Pipeline's Wallet and State are
// not used).
type RNGPipeline struct {
	Pipeline
	// Audited is the capturing RNG store, built with RNGJurisdiction and
	// RNGOrigin (postgres.NewAuditedRNGStore, sqlite.NewAuditedRNGStore).
	Audited rng.Store
	// Plain is the same log without capture (NewRNGStore): draws through it
	// are the "missing record" case.
	Plain rng.Store
}

// RunRNGPipeline draws through the RNG service on the capturing store with
// the relay and archiver running and requires the archive to verify and its
// replay to rebuild the log's size and Merkle root exactly; then draws that
// bypass the capture must make replay fail (rng_log and rng_root differ),
// and the next captured append, which captures the missed draws first,
// must make it match again.
func RunRNGPipeline(t *testing.T, p RNGPipeline) {
	tr := StartTrail(t, p.Pipeline)
	store := audit.RNGLogState{Store: p.Plain} // the log names itself by its checkpoint's origin

	svc := newRNGService(t, p.Audited)
	const clients, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req := rng.DrawRequest{Purpose: "blackjack.shoe", Ref: fmt.Sprintf("t%d/r%d", c, i), Requester: "tables", Kind: rng.KindShuffle, N: 52}
				if i%2 == 1 {
					req = rng.DrawRequest{Purpose: "slot", Requester: "p1", Kind: rng.KindInt, N: 1000, Count: 3}
				}
				if _, err := svc.Draw(context.Background(), req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	closeRNG(t, svc)
	tr.Drain(t, 60*time.Second)
	st, diffs := tr.Replay(t, store)
	if len(diffs) > 0 {
		t.Fatalf("archive and RNG log differ: %v", diffs)
	}
	if st.RNGLogs[RNGOrigin] != clients*each || st.RNGRoots[RNGOrigin] == "" {
		t.Fatalf("replayed RNG logs %v roots %v, want %d draws with a root", st.RNGLogs, st.RNGRoots, clients*each)
	}

	// Draws that bypass the capture: the archive no longer rebuilds the log.
	plain := newRNGService(t, p.Plain)
	for i := 0; i < 3; i++ {
		if _, err := plain.Draw(context.Background(), rng.DrawRequest{Purpose: "uncaptured", Requester: "test", Kind: rng.KindBytes, N: 16}); err != nil {
			t.Fatal(err)
		}
	}
	closeRNG(t, plain)
	tr.Drain(t, 10*time.Second)
	_, diffs = tr.Replay(t, store)
	kinds := map[string]bool{}
	for _, d := range diffs {
		kinds[d.Kind] = true
	}
	if !kinds["rng_log"] || !kinds["rng_root"] {
		t.Fatalf("three uncaptured draws: replay differences %v, want rng_log and rng_root", diffs)
	}

	// The next captured append captures the missed draws first.
	svc = newRNGService(t, p.Audited)
	if _, err := svc.Draw(context.Background(), rng.DrawRequest{Purpose: "after", Requester: "test", Kind: rng.KindInt, N: 6, Count: 1}); err != nil {
		t.Fatal(err)
	}
	closeRNG(t, svc)
	tr.Drain(t, 30*time.Second)
	st, diffs = tr.Replay(t, store)
	if len(diffs) > 0 || st.RNGLogs[RNGOrigin] != clients*each+4 {
		t.Fatalf("after the missed draws were captured: %d draws replayed, differences %v", st.RNGLogs[RNGOrigin], diffs)
	}
	tr.Stop(t)
	tr.Verify(t)
}

func newRNGService(t *testing.T, st rng.Store) *rng.Service {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, RNGOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	// A new key per service: the store's checkpoints are signed by
	// whichever key was current, which this test does not verify.
	svc, err := rng.NewService(context.Background(), st, signer, rng.Config{Origin: RNGOrigin, Jurisdiction: RNGJurisdiction,
		AppendTimeout: 30 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func closeRNG(t *testing.T, s *rng.Service) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
