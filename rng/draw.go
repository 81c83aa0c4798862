package rng

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"
	"unicode/utf8"

	"github.com/buzzer-bet/buzzer"
)

// Kind is what a draw produces.
type Kind string

const (
	// KindInt draws Count integers uniform in [0, N).
	KindInt Kind = "int"
	// KindShuffle draws a uniform permutation of 0..N-1.
	KindShuffle Kind = "shuffle"
	// KindBytes draws N random bytes.
	KindBytes Kind = "bytes"
)

// Bounds on draw parameters. They keep one record small enough to log in one
// batch and keep every value exactly representable as a JSON number.
const (
	MaxIntN            = int64(1) << 53 // largest N for KindInt (exact in IEEE doubles)
	MaxCount           = 1024           // most values per KindInt draw
	MaxShuffleN        = 8192           // most items in one shuffle
	MaxBytes           = 4096           // most bytes in one KindBytes draw
	MaxPurposeLen      = 64
	MaxRefLen          = 128
	MaxRequesterLen    = 128
	MaxJurisdictionLen = 32
)

// DrawRequest asks for one draw. Requester is the authenticated caller (set by
// the transport, never taken from the request body).
type DrawRequest struct {
	Purpose   string // what the draw is for, e.g. "blackjack.shoe"
	Ref       string // caller's reference, e.g. a table round id (optional)
	Requester string // authenticated caller: player id or internal service name
	Kind      Kind
	N         int64 // range (int), items (shuffle) or byte count (bytes)
	Count     int   // number of values for KindInt; must be 0 or 1 otherwise
}

// Draw is a durably logged draw: its record and its position in the log.
type Draw struct {
	Record
	Index int64 `json:"log_index"` // leaf index in the log
}

// Validate reports the first problem with r as an EINVALID error.
func (r DrawRequest) Validate() error {
	if err := checkText("purpose", r.Purpose, MaxPurposeLen, true); err != nil {
		return err
	}
	if err := checkText("ref", r.Ref, MaxRefLen, false); err != nil {
		return err
	}
	if err := checkText("requester", r.Requester, MaxRequesterLen, true); err != nil {
		return err
	}
	switch r.Kind {
	case KindInt:
		if r.N < 1 || r.N > MaxIntN {
			return buzzer.Errorf(buzzer.EINVALID, "n must be between 1 and %d for an int draw", MaxIntN)
		}
		if r.Count < 1 || r.Count > MaxCount {
			return buzzer.Errorf(buzzer.EINVALID, "count must be between 1 and %d", MaxCount)
		}
	case KindShuffle:
		if r.N < 1 || r.N > MaxShuffleN {
			return buzzer.Errorf(buzzer.EINVALID, "n must be between 1 and %d for a shuffle", MaxShuffleN)
		}
		if r.Count > 1 || r.Count < 0 {
			return buzzer.Errorf(buzzer.EINVALID, "count must be 0 or 1 for a shuffle")
		}
	case KindBytes:
		if r.N < 1 || r.N > MaxBytes {
			return buzzer.Errorf(buzzer.EINVALID, "n must be between 1 and %d for a bytes draw", MaxBytes)
		}
		if r.Count > 1 || r.Count < 0 {
			return buzzer.Errorf(buzzer.EINVALID, "count must be 0 or 1 for a bytes draw")
		}
	default:
		return buzzer.Errorf(buzzer.EINVALID, "kind must be one of int, shuffle, bytes")
	}
	return nil
}

// checkText accepts printable UTF-8 without control characters.
func checkText(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return buzzer.Errorf(buzzer.EINVALID, "%s is required", field)
		}
		return nil
	}
	if len(s) > max {
		return buzzer.Errorf(buzzer.EINVALID, "%s must be at most %d bytes", field, max)
	}
	if !utf8.ValidString(s) {
		return buzzer.Errorf(buzzer.EINVALID, "%s must be valid UTF-8", field)
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return buzzer.Errorf(buzzer.EINVALID, "%s must not contain control characters", field)
		}
	}
	return nil
}

// Sampler turns a source of uniform random bytes into unbiased values. It holds
// no state between calls: every value is read from the source when asked for.
type Sampler struct {
	src io.Reader
	buf [8]byte
}

// NewSampler returns a sampler reading from src (crypto/rand.Reader in production).
func NewSampler(src io.Reader) *Sampler { return &Sampler{src: src} }

func (s *Sampler) uint64() (uint64, error) {
	if _, err := io.ReadFull(s.src, s.buf[:]); err != nil {
		return 0, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "random source failed")
	}
	return binary.BigEndian.Uint64(s.buf[:]), nil
}

// Uniform returns a value uniform in [0, n) for 1 <= n < 2^63. It rejects raw
// values in the incomplete top block [2^64 - 2^64 mod n, 2^64) so that every
// residue is equally likely: plain modulo would favour small residues.
func (s *Sampler) Uniform(n uint64) (uint64, error) {
	if n == 0 || n > math.MaxInt64 {
		return 0, buzzer.Errorf(buzzer.EINVALID, "uniform range must be in [1, 2^63)")
	}
	// rem = 2^64 mod n, computed without overflowing.
	rem := (math.MaxUint64%n + 1) % n
	limit := uint64(math.MaxUint64) - rem // accept v <= limit: limit+1 is a multiple of n (or 2^64)
	for {
		v, err := s.uint64()
		if err != nil {
			return 0, err
		}
		if rem == 0 || v <= limit {
			return v % n, nil
		}
	}
}

// Ints returns count values uniform in [0, n).
func (s *Sampler) Ints(n int64, count int) ([]int64, error) {
	out := make([]int64, count)
	for i := range out {
		v, err := s.Uniform(uint64(n))
		if err != nil {
			return nil, err
		}
		out[i] = int64(v)
	}
	return out, nil
}

// Shuffle returns a uniform permutation of 0..n-1 (Fisher–Yates: position i
// swaps with a uniform j in [0, i], so each of the n! orders has probability 1/n!).
func (s *Sampler) Shuffle(n int) ([]int64, error) {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	for i := n - 1; i > 0; i-- {
		j, err := s.Uniform(uint64(i + 1))
		if err != nil {
			return nil, err
		}
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

// Bytes returns n random bytes.
func (s *Sampler) Bytes(n int) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(s.src, b); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "random source failed")
	}
	return b, nil
}

// sample produces the values for a validated request.
func (s *Sampler) sample(r DrawRequest) (ints []int64, raw []byte, err error) {
	switch r.Kind {
	case KindInt:
		ints, err = s.Ints(r.N, r.Count)
	case KindShuffle:
		ints, err = s.Shuffle(int(r.N))
	case KindBytes:
		raw, err = s.Bytes(int(r.N))
	default:
		err = fmt.Errorf("rng: unknown kind %q", r.Kind)
	}
	return ints, raw, err
}

// newRecord builds the record for a validated request drawn at t.
func newRecord(id string, t time.Time, jurisdiction string, r DrawRequest, ints []int64, raw []byte) Record {
	count := r.Count
	if r.Kind != KindInt {
		count = 1
	}
	return Record{
		ID:           id,
		Time:         t.UTC(),
		Purpose:      r.Purpose,
		Ref:          r.Ref,
		Requester:    r.Requester,
		Jurisdiction: jurisdiction,
		Kind:         r.Kind,
		N:            r.N,
		Count:        count,
		Values:       ints,
		Bytes:        raw,
	}
}
