package audit_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
)

const testOrigin = "audit.test/rng"

func memRNG(t *testing.T) (*rng.Service, *rngtest.MemStore) {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	mem := rngtest.NewMemStore()
	svc, err := rng.NewService(context.Background(), mem, signer, rng.Config{Origin: testOrigin, Jurisdiction: "US-NJ", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	return svc, mem
}

// replayLog captures every draw of mem as the audited stores do and
// replays the records.
func replayLog(t *testing.T, mem rng.Store) audit.State {
	t.Helper()
	stored, err := mem.Records(context.Background(), 0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := audit.RNGDrawRecords("US-NJ", testOrigin, stored)
	if err != nil {
		t.Fatal(err)
	}
	st := audit.NewState()
	for _, r := range recs {
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := audit.DecodeCanonical(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(back); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

// TestRNGReplayRebuildsTheLogsRoot: the root replay folds from archived leaf
// hashes is the RNG log's own tree hash at every size (complete and
// incomplete trees alike), and the store reader names the log by its
// checkpoint's origin.
func TestRNGReplayRebuildsTheLogsRoot(t *testing.T) {
	ctx := context.Background()
	svc, mem := memRNG(t)
	for n := 1; n <= 37; n++ {
		if _, err := svc.Draw(ctx, rng.DrawRequest{Purpose: "p", Ref: "r", Requester: "q", Kind: rng.KindShuffle, N: 8}); err != nil {
			t.Fatal(err)
		}
		if n%4 != 1 && n != 32 && n != 37 {
			continue
		}
		if _, err := svc.Checkpoint(ctx); err != nil {
			t.Fatal(err)
		}
		st := replayLog(t, mem)
		if d := audit.Diff(st, readState(t, audit.RNGLogState{Store: mem})); len(d) != 0 {
			t.Fatalf("size %d: %v", n, d)
		}
		root, err := tlog.TreeHash(int64(n), tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return mem.ReadHashes(ctx, idx) }))
		if err != nil {
			t.Fatal(err)
		}
		if st.RNGLogs[testOrigin] != uint64(n) || st.RNGRoots[testOrigin] != hexOf(root) {
			t.Fatalf("size %d: replayed %v %v, log root %x", n, st.RNGLogs, st.RNGRoots, root[:])
		}
	}
	// A log changed after capture (its last leaf) no longer matches.
	st := replayLog(t, mem)
	mem.TamperHash(tlog.StoredHashIndex(0, 36), tlog.Hash{1}) // the last leaf: its own subtree of the 37
	d := audit.Diff(st, readState(t, audit.RNGLogState{Store: mem}))
	if len(d) != 1 || d[0].Kind != "rng_root" {
		t.Fatalf("tampered leaf: differences %v, want one rng_root", d)
	}
}

func hexOf(h tlog.Hash) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 64)
	for _, c := range h {
		b = append(b, digits[c>>4], digits[c&15])
	}
	return string(b)
}

func readState(t *testing.T, r audit.StateReader) audit.State {
	t.Helper()
	st, err := r.ReadState(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestRNGCapturePayload: what an rng.draw record carries (never the values)
// and the capture's position rule.
func TestRNGCapturePayload(t *testing.T) {
	ctx := context.Background()
	svc, mem := memRNG(t)
	d, err := svc.Draw(ctx, rng.DrawRequest{Purpose: "blackjack.shoe", Ref: "t1/r9", Requester: "tables", Kind: rng.KindShuffle, N: 52})
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := mem.Records(ctx, 0, 1)
	recs, err := audit.RNGDrawRecords("US-NJ", testOrigin, stored)
	if err != nil {
		t.Fatal(err)
	}
	b, err := audit.Encode(recs[0])
	if err != nil {
		t.Fatal(err)
	}
	leaf := tlog.RecordHash(stored[0].Data)
	want := `{"component":"rng","id":"rng-` + d.ID + `","jurisdiction":"US-NJ","key":"audit.test/rng","payload":{"count":1,"draw_id":"` + d.ID +
		`","index":0,"kind":"shuffle","leaf_hash":"` + hexOf(leaf) + `","log":"audit.test/rng","n":52,"purpose":"blackjack.shoe","ref":"t1/r9","requester":"tables"},"seq":1,"time":"` +
		d.Time.UTC().Format("2006-01-02T15:04:05.999999999Z07:00") + `","type":"rng.draw"}`
	if string(b) != want {
		t.Fatalf("record\n%s\nwant\n%s", b, want)
	}
	for _, c := range []struct {
		last uint64
		old  int64
		from int64
		ok   bool
	}{{0, 0, 0, true}, {5, 5, 5, true}, {2, 5, 2, true}, {6, 5, 0, false}} {
		from, err := audit.RNGCaptureFrom(c.last, c.old)
		if (err == nil) != c.ok || err == nil && from != c.from {
			t.Fatalf("RNGCaptureFrom(%d, %d) = %d, %v", c.last, c.old, from, err)
		}
		if err != nil && buzzer.ErrorReason(err) != "audit_capture_out_of_order" {
			t.Fatalf("reason %q", buzzer.ErrorReason(err))
		}
	}
}

// TestMergeReaders: each reader's maps are compared, the unset ones are
// not.
func TestMergeReaders(t *testing.T) {
	_, mem := memRNG(t)
	wallet := stateFunc(func(context.Context) (audit.State, error) {
		return audit.State{Balances: map[string]buzzer.Amount{"a": 5}}, nil
	})
	st := readState(t, audit.MergeReaders(wallet, audit.RNGLogState{Store: mem}))
	if st.Balances["a"] != 5 || st.RNGLogs == nil || st.Bets != nil || st.Tables != nil {
		t.Fatalf("merged %+v", st)
	}
	replayed := audit.NewState()
	replayed.Balances["a"] = 5
	replayed.Bets["b"] = audit.BetState{Status: "open"}
	if d := audit.Diff(replayed, st); len(d) != 0 {
		t.Fatalf("differences %v", d)
	}
}
