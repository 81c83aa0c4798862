package audit

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// sameAsGeneralPath fails t unless decodeCanonical's answer for b is one
// the general path agrees with: where the fast path takes b, b is already
// canonical and decodeAny reads the same record from it.
func sameAsGeneralPath(t *testing.T, b []byte) (fast bool) {
	t.Helper()
	r, ok := decodeCanonical(b)
	if !ok {
		return false
	}
	canon, err := canonicalObject(b)
	if err != nil || !bytes.Equal(canon, b) {
		t.Fatalf("fast path took a record that is not canonical (%v):\n%s\n%s", err, b, canon)
	}
	want, err := decodeAny(b)
	if err != nil {
		t.Fatalf("fast path took a record the general path refuses (%v):\n%s", err, b)
	}
	want.canon, r.canon = nil, nil
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("fast and general paths differ for\n%s\nfast    %+v\ngeneral %+v", b, r, want)
	}
	return true
}

// TestDecodeFastPath holds decodeCanonical to the general path on every
// record Buzzer writes (which it must take, or the archiver pays for the
// general path on each one) and on near misses it must leave alone.
func TestDecodeFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	pieces := []string{"", "a", `"`, `\`, "<>&", "\n\t\r\b\f", "\x00\x1f\x7f", "é", "€", "\u2028", "😀", "x y", "/"}
	// Keys with escapes are left to the general path.
	plain := []string{"", "a", "é", "€", "😀", "x y", "/", "<>&", "\u2028", "\x7f"}
	str := func() string {
		var b []byte
		for range 1 + rng.IntN(4) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		return string(b)
	}
	for i := range 2000 {
		r := goldenRecord(t)
		r.Key = "k" + str()
		if hasControl(r.Key) {
			r.Key = "player-é-€-" + strconv.Itoa(i)
		}
		r.Seq = 1 + rng.Uint64N(1e15)
		r.Time = time.Unix(rng.Int64N(4e9), rng.Int64N(1e9))
		if err := r.SetPayload(map[string]any{"s": str(), "n": rng.Int64N(1e17) - 5e16, "a": []any{str(), true, nil, map[string]any{plain[rng.IntN(len(plain))]: 1}}}); err != nil {
			t.Fatal(err)
		}
		enc, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if !sameAsGeneralPath(t, enc) {
			t.Fatalf("record %d: the fast path refused a canonical encoding:\n%s", i, enc)
		}
	}
	good, _ := Encode(goldenRecord(t))
	for name, in := range map[string]string{
		"whitespace":          string(good[:1]) + " " + string(good[1:]),
		"trailing newline":    string(good) + "\n",
		"keys out of order":   `{"id":"x","component":"rng","jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"payload keys order":  `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"b":1,"a":2},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"duplicate in object": `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"a":1,"a":1},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"escaped slash":       `{"component":"rng","id":"x","jurisdiction":"GB","key":"k\/","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"upper-case escape":   `{"component":"rng","id":"x","jurisdiction":"GB","key":"k\u001F","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"long escape of tab":  `{"component":"rng","id":"x","jurisdiction":"GB","key":"k\u0009","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"escaped letter":      `{"component":"rng","id":"x","jurisdiction":"GB","key":"k\u0041","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"minus zero":          `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"n":-0},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"leading zero":        `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"n":01},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"fraction":            `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"n":1.5},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"exponent":            `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"n":1e3},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"unknown field":       `{"component":"rng","extra":1,"id":"x","jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"field case":          `{"ID":"x","component":"rng","jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"payload not object":  `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":[],"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"seq as string":       `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{},"seq":"1","time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"seq zero":            `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{},"seq":0,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"null id":             `{"component":"rng","id":null,"jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"bad time":            `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"yesterday","type":"rng.draw"}`,
		"raw control":         "{\"component\":\"rng\",\"id\":\"x\",\"jurisdiction\":\"GB\",\"key\":\"k\x01\",\"payload\":{},\"seq\":1,\"time\":\"2026-01-01T00:00:00Z\",\"type\":\"rng.draw\"}",
		"bad UTF-8":           "{\"component\":\"rng\",\"id\":\"x\",\"jurisdiction\":\"GB\",\"key\":\"k\xff\",\"payload\":{},\"seq\":1,\"time\":\"2026-01-01T00:00:00Z\",\"type\":\"rng.draw\"}",
		"19-digit number":     `{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{"n":1000000000000000000},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`,
		"cut short":           string(good[:len(good)-1]),
	} {
		if sameAsGeneralPath(t, []byte(in)) {
			t.Errorf("%s: the fast path took it", name)
		}
	}
	if !sameAsGeneralPath(t, []byte(`{"component":"rng","id":"x\"\\","jurisdiction":"GB","key":"k","payload":{"a":[{"b":null},"\u001f\n"],"b":-12},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`)) {
		t.Error("the fast path refused a canonical record with escapes")
	}
}

// FuzzDecodeFastPath holds the fast path to the general one on any input.
func FuzzDecodeFastPath(f *testing.F) {
	good, _ := Encode(goldenRecord(f))
	f.Add(good)
	f.Add([]byte(`{"component":"rng","id":"x","jurisdiction":"GB","key":"k\u001f","payload":{"a":[1,-2,true,null,"\u0001"]},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`))
	f.Fuzz(func(t *testing.T, b []byte) { sameAsGeneralPath(t, b) })
}

func BenchmarkDecode(b *testing.B) {
	enc, _ := Encode(goldenRecord(b))
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if _, err := Decode(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("general", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeAny(enc); err != nil {
				b.Fatal(err)
			}
		}
	})
}
