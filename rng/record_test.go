package rng_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func sampleRecords() map[string]rng.Record {
	at := time.Date(2026, 11, 27, 12, 30, 45, 123456789, time.UTC)
	return map[string]rng.Record{
		"int": {ID: "0b6f3b9e-8a53-4c1e-9d2f-5a3c1b7e9f01", Time: at, Purpose: "roulette.spin", Ref: "table-7/round-991",
			Requester: "table-service", Jurisdiction: "US-NJ", Kind: rng.KindInt, N: 37, Count: 3, Values: []int64{0, 36, 17}},
		"shuffle": {ID: "5d0e1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b", Time: at, Purpose: "blackjack.shoe", Requester: "player:42",
			Jurisdiction: "US-PA", Kind: rng.KindShuffle, N: 5, Count: 1, Values: []int64{3, 0, 4, 1, 2}},
		"bytes": {ID: "ffffffff-ffff-4fff-bfff-ffffffffffff", Time: at, Purpose: "seed", Ref: "é", Requester: "ops",
			Jurisdiction: "US-NJ", Kind: rng.KindBytes, N: 4, Count: 1, Bytes: []byte{0, 0xff, 0x10, 0x80}},
		"big int": {ID: "00000000-0000-4000-8000-000000000000", Time: at, Purpose: "p", Requester: "r", Jurisdiction: "J",
			Kind: rng.KindInt, N: rng.MaxIntN, Count: 1, Values: []int64{rng.MaxIntN - 1}},
	}
}

// TestRecordGolden pins the version-1 encoding: changing it would break every
// stored log, so a change must be a new version.
func TestRecordGolden(t *testing.T) {
	for name, r := range sampleRecords() {
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		path := filepath.Join("testdata", "record_v1_"+strings.ReplaceAll(name, " ", "_")+".hex")
		if *update {
			if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != strings.TrimSpace(string(want)) {
			t.Errorf("%s: encoding changed:\n got %s\nwant %s", name, got, want)
		}
		back, err := rng.UnmarshalRecord(b)
		if err != nil {
			t.Fatalf("%s: decode: %v", name, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s: round trip = %+v, want %+v", name, back, r)
		}
	}
}

func TestRecordRejectsBadRecords(t *testing.T) {
	base := sampleRecords()["shuffle"]
	for name, mut := range map[string]func(*rng.Record){
		"non-canonical id":   func(r *rng.Record) { r.ID = strings.ToUpper(r.ID) },
		"not a permutation":  func(r *rng.Record) { r.Values = []int64{0, 0, 1, 2, 3} },
		"short shuffle":      func(r *rng.Record) { r.Values = r.Values[:4] },
		"value out of range": func(r *rng.Record) { r.Values = []int64{0, 1, 2, 3, 5} },
		"no jurisdiction":    func(r *rng.Record) { r.Jurisdiction = "" },
		"count 2 shuffle":    func(r *rng.Record) { r.Count = 2 },
		"bytes on shuffle":   func(r *rng.Record) { r.Bytes = []byte{1} },
	} {
		r := base
		r.Values = append([]int64(nil), base.Values...)
		mut(&r)
		if _, err := r.MarshalBinary(); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: MarshalBinary = %v, want EINVALID", name, err)
		}
	}
}

func TestUnmarshalRecordRejectsMalformed(t *testing.T) {
	good, err := sampleRecords()["int"].MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Non-minimal varint for n (37 spelled as 0xa5 0x00): same value, other bytes.
	i := bytes.Index(good, []byte{1, 37, 3}) // kind, n, count
	if i < 0 {
		t.Fatal("layout changed")
	}
	nonMinimal := append(append(append([]byte(nil), good[:i+1]...), 0xa5, 0x00), good[i+2:]...)
	cases := map[string][]byte{
		"empty":        nil,
		"bad magic":    append([]byte("XZRNG"), good[5:]...),
		"version 2":    append(append([]byte("BZRNG"), 2), good[6:]...),
		"truncated":    good[:len(good)-1],
		"trailing":     append(append([]byte(nil), good...), 0),
		"non-minimal":  nonMinimal,
		"unknown kind": append(append(append([]byte(nil), good[:i]...), 9), good[i+1:]...),
		"huge":         bytes.Repeat([]byte{0x80}, 1<<17),
		"value >= n":   append(append([]byte(nil), good[:len(good)-1]...), 37),
	}
	for name, b := range cases {
		if _, err := rng.UnmarshalRecord(b); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: UnmarshalRecord = %v, want EINVALID", name, err)
		}
	}
}

// FuzzUnmarshalRecord: records come from servers being verified, so the
// parser must never panic, and anything it accepts must re-encode to itself.
func FuzzUnmarshalRecord(f *testing.F) {
	for _, r := range sampleRecords() {
		b, _ := r.MarshalBinary()
		f.Add(b)
	}
	f.Add([]byte("BZRNG\x01"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := rng.UnmarshalRecord(data)
		if err != nil {
			if buzzer.ErrorCode(err) != buzzer.EINVALID {
				t.Fatalf("error code %q, want invalid", buzzer.ErrorCode(err))
			}
			return
		}
		again, err := r.MarshalBinary()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("accepted record does not re-encode to its input: %v", err)
		}
	})
}
