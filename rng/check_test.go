package rng_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
)

// TestCheck runs the offline verifier (what `buzzer rng verify` does) against
// a live service: it advances its trusted checkpoint on an honest log and
// fails on a tampered record, a fork, a rollback and a foreign key.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	key := newKey(t, origin)
	v := verifierOf(t, key)
	memA := rngtest.NewMemStore()
	a := startService(t, memA, key, testConfig())
	var ds []rng.Draw
	for i := 0; i < 5; i++ {
		ds = append(ds, mustDraw(t, a, intReq(10, 2)))
	}
	res, err := rng.Check(ctx, a, v, nil, ds[4].ID)
	if err != nil {
		t.Fatalf("first check: %v", err)
	}
	if res.Draw == nil || res.Draw.ID != ds[4].ID || res.Index != 4 || res.Latest.Size != 5 {
		t.Fatalf("first check = %+v", res)
	}
	trusted := res.LatestNote

	for i := 0; i < 3; i++ {
		ds = append(ds, mustDraw(t, a, intReq(10, 2)))
	}
	res, err = rng.Check(ctx, a, v, trusted, ds[6].ID)
	if err != nil {
		t.Fatalf("check after growth: %v", err)
	}
	if res.Latest.Size != 8 || res.Index != 6 {
		t.Fatalf("check after growth = size %d index %d, want 8 and 6", res.Latest.Size, res.Index)
	}
	trusted = res.LatestNote
	if _, err := rng.Check(ctx, a, v, trusted, ""); err != nil {
		t.Fatalf("check with nothing new: %v", err)
	}

	// Someone with database access changes draw 2.
	rec := ds[2].Record
	rec.Values = []int64{9, 9}
	data, _ := rec.MarshalBinary()
	memA.TamperRecord(2, data)
	_, err = rng.Check(ctx, a, v, trusted, ds[2].ID)
	wantTamper(t, err, 2, 8)

	// A fork: records 0..3 kept, the rest replaced, signed with the same key.
	recs, _ := memA.Records(ctx, 0, 4)
	b := startService(t, rewrite(t, recs, nil), key, testConfig())
	var bd rng.Draw
	for i := 0; i < 6; i++ {
		bd = mustDraw(t, b, intReq(10, 2))
	}
	_, err = rng.Check(ctx, b, v, trusted, bd.ID)
	if buzzer.ErrorReason(err) != "log_fork" {
		t.Fatalf("check against a fork: %v, want log_fork", err)
	}
	// A rollback: a log shorter than the trusted checkpoint.
	c := startService(t, rewrite(t, recs, nil), key, testConfig())
	if _, err = rng.Check(ctx, c, v, trusted, ""); buzzer.ErrorReason(err) != "log_fork" {
		t.Fatalf("check against a rolled-back log: %v, want log_fork", err)
	}
	// Another key: nothing verifies.
	if _, err := rng.Check(ctx, a, verifierOf(t, newKey(t, origin)), nil, ""); buzzer.ErrorCode(err) != buzzer.EFORBIDDEN {
		t.Fatalf("check with another key: %v, want forbidden", err)
	}
}

// FuzzVerifyDraw: a proof comes from a server being verified (JSON over
// HTTP); any bytes must give a verdict, never a panic, and anything accepted
// must be a valid record at an index the checkpoint covers.
func FuzzVerifyDraw(f *testing.F) {
	key := newKey(f, origin)
	v := verifierOf(f, key)
	s, err := rng.NewService(context.Background(), rngtest.NewMemStore(), key, testConfig())
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 5; i++ {
		d, err := s.Draw(context.Background(), intReq(52, 3))
		if err != nil {
			f.Fatal(err)
		}
		p, err := s.Proof(context.Background(), d.ID)
		if err != nil {
			f.Fatal(err)
		}
		b, _ := json.Marshal(p)
		f.Add(b)
	}
	f.Add([]byte(`{"log_index":-1,"record":"","checkpoint":"","proof":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p rng.Proof
		if json.Unmarshal(b, &p) != nil {
			return
		}
		rec, cp, err := rng.VerifyDraw(p, v)
		if err != nil {
			return
		}
		if rec.Validate() != nil || p.Index < 0 || p.Index >= cp.Size {
			t.Fatalf("accepted an invalid proof: %+v", p)
		}
	})
}
