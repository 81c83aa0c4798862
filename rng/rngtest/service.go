package rngtest

import (
	"context"
	"crypto/rand"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Harness gives RunServiceTests one fresh log on a real engine and the
// means to restart on it and to attack it the way someone with write access
// to the database could.
type Harness struct {
	// Store is a handle on an empty log.
	Store rng.Store
	// Reopen returns a new handle on the same log, as a restarted process
	// would get (a new connection pool or file handle).
	Reopen func(t *testing.T) rng.Store
	// SetRecordData overwrites the stored data of record index.
	SetRecordData func(t *testing.T, index int64, data []byte)
	// SetHash overwrites stored hash index.
	SetHash func(t *testing.T, index int64, h tlog.Hash)
	// FailAppends makes the engine itself refuse (fail=true) or accept
	// appends, e.g. with a trigger that raises an error.
	FailAppends func(t *testing.T, fail bool)
}

const testOrigin = "rng.enginetest.buzzer.example/v1"

// RunServiceTests runs the RNG service end to end on an engine: concurrent
// draws that verify, a restart that continues the log, an injected append
// failure that reveals nothing, and tampering that Audit and VerifyDraw name.
func RunServiceTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("DrawsVerifyAcrossRestart", func(t *testing.T) { testRestart(t, newHarness(t)) })
	t.Run("AppendFailureRevealsNothing", func(t *testing.T) { testAppendFailure(t, newHarness(t)) })
	t.Run("TamperedRecordIsNamed", func(t *testing.T) { testTamperRecord(t, newHarness(t)) })
	t.Run("TamperedHashIsNamed", func(t *testing.T) { testTamperHash(t, newHarness(t)) })
}

func newSigner(t testing.TB) *rng.KeySigner {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func startService(t *testing.T, s rng.Store, key rng.Signer) *rng.Service {
	t.Helper()
	svc, err := rng.NewService(context.Background(), s, key, rng.Config{
		Origin: testOrigin, Jurisdiction: "US-NJ",
		CheckpointInterval: time.Hour, CheckpointEvery: 16,
	})
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

var drawReq = rng.DrawRequest{Purpose: "enginetest", Ref: "r", Requester: "tester", Kind: rng.KindInt, N: 1000, Count: 4}

func verifyDraw(t *testing.T, svc *rng.Service, v note.Verifier, d rng.Draw) rng.Checkpoint {
	t.Helper()
	p, err := svc.Proof(context.Background(), d.ID)
	if err != nil {
		t.Fatalf("Proof(%s): %v", d.ID, err)
	}
	rec, cp, err := rng.VerifyDraw(p, v)
	if err != nil {
		t.Fatalf("VerifyDraw(%s): %v", d.ID, err)
	}
	if p.Index != d.Index || !reflect.DeepEqual(rec, d.Record) {
		t.Fatalf("proved record at %d differs from the draw at %d", p.Index, d.Index)
	}
	return cp
}

func drawN(t *testing.T, svc *rng.Service, n int) []rng.Draw {
	t.Helper()
	out := make([]rng.Draw, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := svc.Draw(context.Background(), drawReq)
			if err != nil {
				t.Errorf("Draw: %v", err)
				return
			}
			out[i] = d
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return out
}

func testRestart(t *testing.T, h Harness) {
	ctx := context.Background()
	key := newSigner(t)
	v, _ := rng.NewVerifier(key.VerifierKey())
	svc1 := startService(t, h.Store, key)
	first := drawN(t, svc1, 40)
	seen := map[int64]bool{}
	for _, d := range first {
		if d.Index < 0 || d.Index >= 40 || seen[d.Index] {
			t.Fatalf("bad or repeated index %d", d.Index)
		}
		seen[d.Index] = true
	}
	trusted := verifyDraw(t, svc1, v, first[0])
	svc1.Close()

	svc2 := startService(t, h.Reopen(t), key)
	second := drawN(t, svc2, 10)
	for _, d := range second {
		if d.Index < 40 || d.Index >= 50 {
			t.Fatalf("draw after restart got index %d, want 40..49", d.Index)
		}
	}
	latest := verifyDraw(t, svc2, v, second[0])
	for _, d := range first {
		verifyDraw(t, svc2, v, d)
	}
	p, err := svc2.Consistency(ctx, trusted.Size, latest.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := rng.VerifyConsistency(trusted, latest, p.Hashes); err != nil {
		t.Fatalf("log across restart: %v", err)
	}
	rep, err := rng.Audit(ctx, h.Store, v)
	if err != nil || rep.Records != 50 {
		t.Fatalf("Audit = %+v, %v", rep, err)
	}
}

func testAppendFailure(t *testing.T, h Harness) {
	ctx := context.Background()
	key := newSigner(t)
	v, _ := rng.NewVerifier(key.VerifierKey())
	svc := startService(t, h.Store, key)
	drawN(t, svc, 3)
	h.FailAppends(t, true)
	d, err := svc.Draw(ctx, drawReq)
	if buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("Draw while the engine refuses appends: %v, want unavailable", err)
	}
	if d.Values != nil || d.Bytes != nil || d.ID != "" {
		t.Fatalf("a failed draw revealed %+v", d)
	}
	if n, err := h.Store.TreeSize(ctx); err != nil || n != 3 {
		t.Fatalf("tree size after a failed append = %d, %v; want 3", n, err)
	}
	h.FailAppends(t, false)
	after := drawN(t, svc, 2)
	for _, d := range after {
		if d.Index < 3 || d.Index > 4 {
			t.Fatalf("draw after the failure got index %d", d.Index)
		}
		verifyDraw(t, svc, v, d)
	}
	if _, err := rng.Audit(ctx, h.Store, v); err != nil {
		t.Fatal(err)
	}
}

func wantTamperAt(t *testing.T, err error, index int64) {
	t.Helper()
	var te *rng.TamperError
	if !errors.As(err, &te) || te.Index != index {
		t.Fatalf("error %v does not name record %d", err, index)
	}
}

func testTamperRecord(t *testing.T, h Harness) {
	ctx := context.Background()
	key := newSigner(t)
	v, _ := rng.NewVerifier(key.VerifierKey())
	svc := startService(t, h.Store, key)
	var ds []rng.Draw
	for i := 0; i < 12; i++ {
		d, err := svc.Draw(ctx, drawReq)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	verifyDraw(t, svc, v, ds[11]) // a checkpoint covers all 12
	rec := ds[5].Record
	rec.Values = []int64{999, 999, 999, 999}
	forged, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	h.SetRecordData(t, 5, forged)
	_, err = rng.Audit(ctx, h.Store, v)
	wantTamperAt(t, err, 5)
	p, err := svc.Proof(ctx, ds[5].ID)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = rng.VerifyDraw(p, v)
	wantTamperAt(t, err, 5)
}

func testTamperHash(t *testing.T, h Harness) {
	ctx := context.Background()
	key := newSigner(t)
	v, _ := rng.NewVerifier(key.VerifierKey())
	svc := startService(t, h.Store, key)
	drawN(t, svc, 12)
	var bad tlog.Hash
	bad[31] = 1
	h.SetHash(t, tlog.StoredHashIndex(0, 8), bad)
	_, err := rng.Audit(ctx, h.Store, v)
	wantTamperAt(t, err, 8)
}
