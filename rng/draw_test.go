package rng_test

import (
	"bytes"
	crand "crypto/rand"
	"encoding/binary"
	"io"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

func TestDrawRequestValidate(t *testing.T) {
	ok := rng.DrawRequest{Purpose: "blackjack.shoe", Requester: "table-service", Kind: rng.KindInt, N: 6, Count: 2}
	for name, tc := range map[string]struct {
		mut   func(*rng.DrawRequest)
		valid bool
	}{
		"ok int":            {func(r *rng.DrawRequest) {}, true},
		"ok shuffle":        {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindShuffle, 52, 0 }, true},
		"ok bytes":          {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindBytes, 32, 1 }, true},
		"ok max int n":      {func(r *rng.DrawRequest) { r.N = rng.MaxIntN }, true},
		"no purpose":        {func(r *rng.DrawRequest) { r.Purpose = "" }, false},
		"no requester":      {func(r *rng.DrawRequest) { r.Requester = "" }, false},
		"control in ref":    {func(r *rng.DrawRequest) { r.Ref = "a\nb" }, false},
		"bad utf8 purpose":  {func(r *rng.DrawRequest) { r.Purpose = "\xff" }, false},
		"long ref":          {func(r *rng.DrawRequest) { r.Ref = string(bytes.Repeat([]byte("x"), rng.MaxRefLen+1)) }, false},
		"unknown kind":      {func(r *rng.DrawRequest) { r.Kind = "dice" }, false},
		"int n zero":        {func(r *rng.DrawRequest) { r.N = 0 }, false},
		"int n negative":    {func(r *rng.DrawRequest) { r.N = -3 }, false},
		"int n too big":     {func(r *rng.DrawRequest) { r.N = rng.MaxIntN + 1 }, false},
		"int count zero":    {func(r *rng.DrawRequest) { r.Count = 0 }, false},
		"int count too big": {func(r *rng.DrawRequest) { r.Count = rng.MaxCount + 1 }, false},
		"shuffle too big":   {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindShuffle, rng.MaxShuffleN+1, 0 }, false},
		"shuffle count 2":   {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindShuffle, 52, 2 }, false},
		"bytes too many":    {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindBytes, rng.MaxBytes+1, 0 }, false},
		"bytes zero":        {func(r *rng.DrawRequest) { r.Kind, r.N, r.Count = rng.KindBytes, 0, 0 }, false},
	} {
		r := ok
		tc.mut(&r)
		err := r.Validate()
		if tc.valid && err != nil {
			t.Errorf("%s: unexpected error %v", name, err)
		}
		if !tc.valid && buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: error %v, want EINVALID", name, err)
		}
	}
}

// seeded returns a deterministic uniform byte stream, so the statistical
// tests below give the same answer on every run.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

// chiSquareP returns P(X >= stat) for X ~ chi-square with df degrees of freedom,
// i.e. the upper regularized incomplete gamma Q(df/2, stat/2).
func chiSquareP(stat float64, df int) float64 {
	a, x := float64(df)/2, stat/2
	if x <= 0 {
		return 1
	}
	lg, _ := math.Lgamma(a)
	front := math.Exp(-x + a*math.Log(x) - lg)
	if x < a+1 {
		// Series for the lower function P(a, x).
		sum, term := 1/a, 1/a
		for n := 1.0; n < 10000; n++ {
			term *= x / (a + n)
			sum += term
			if term < sum*1e-16 {
				break
			}
		}
		return 1 - front*sum
	}
	// Continued fraction for Q(a, x), evaluated with the modified Lentz method.
	const tiny = 1e-300
	b := x + 1 - a
	c, d := 1/tiny, 1/b
	h := d
	for i := 1.0; i < 10000; i++ {
		an := -i * (i - a)
		b += 2
		d = an*d + b
		if math.Abs(d) < tiny {
			d = tiny
		}
		c = b + an/c
		if math.Abs(c) < tiny {
			c = tiny
		}
		d = 1 / d
		del := d * c
		h *= del
		if math.Abs(del-1) < 1e-16 {
			break
		}
	}
	return front * h
}

func TestChiSquarePKnownValues(t *testing.T) {
	for _, tc := range []struct {
		stat float64
		df   int
		p    float64
	}{
		{3.841458820694124, 1, 0.05},
		{21.665994333461924, 9, 0.01},
		{6.6348966010212145, 1, 0.01},
		{124.34211340400407, 100, 0.05},
		{0.5, 2, math.Exp(-0.25)}, // df=2: P = exp(-x/2)
	} {
		if got := chiSquareP(tc.stat, tc.df); math.Abs(got-tc.p) > 1e-9 {
			t.Errorf("chiSquareP(%v, %d) = %v, want %v", tc.stat, tc.df, got, tc.p)
		}
	}
}

// pFloor is the significance level: a correct generator fails with
// probability 1e-6 per check, which cannot flake in practice.
const pFloor = 1e-6

// chiSquareUniform returns the chi-square statistic of counts against a
// uniform distribution.
func chiSquareUniform(counts []int) float64 {
	total := 0
	for _, c := range counts {
		total += c
	}
	e := float64(total) / float64(len(counts))
	stat := 0.0
	for _, c := range counts {
		d := float64(c) - e
		stat += d * d / e
	}
	return stat
}

// uniformity draws samples values in [0, n) from gen, folds them into
// buckets of equal width, and returns the chi-square p-value.
func uniformity(t *testing.T, gen func(n uint64) uint64, n uint64, buckets, samples int) float64 {
	t.Helper()
	counts := make([]int, buckets)
	width := n / uint64(buckets)
	if width*uint64(buckets) != n {
		t.Fatalf("n=%d is not a multiple of %d buckets", n, buckets)
	}
	for i := 0; i < samples; i++ {
		v := gen(n)
		if v >= n {
			t.Fatalf("value %d out of range [0, %d)", v, n)
		}
		counts[v/width]++
	}
	return chiSquareP(chiSquareUniform(counts), buckets-1)
}

func samplerGen(t *testing.T, src io.Reader) func(uint64) uint64 {
	s := rng.NewSampler(src)
	return func(n uint64) uint64 {
		v, err := s.Uniform(n)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// moduloGen is the classic mistake: a random word reduced modulo n with no
// rejection. Values below 2^bits mod n come up more often.
func moduloGen(src io.Reader, bits int) func(uint64) uint64 {
	return func(n uint64) uint64 {
		var b [8]byte
		if _, err := io.ReadFull(src, b[:]); err != nil {
			panic(err)
		}
		v := binary.BigEndian.Uint64(b[:])
		if bits < 64 {
			v >>= 64 - bits
		}
		return v % n
	}
}

// A range that does not divide 2^64 badly: 2^64 = 2n + 2^62, so plain modulo
// makes the first 2^62 values 1.5 times as likely as the rest.
const lopsided = 3 << 61

func TestUniformIntsChiSquare(t *testing.T) {
	for name, src := range map[string]io.Reader{"seeded": seeded(1), "crypto/rand": crand.Reader} {
		if p := uniformity(t, samplerGen(t, src), 10, 10, 200_000); p < pFloor {
			t.Errorf("%s: Uniform(10) chi-square p = %g < %g", name, p, pFloor)
		}
		if p := uniformity(t, samplerGen(t, src), lopsided, 12, 120_000); p < pFloor {
			t.Errorf("%s: Uniform(3·2^61) chi-square p = %g < %g", name, p, pFloor)
		}
		if p := uniformity(t, samplerGen(t, src), 52, 52, 260_000); p < pFloor {
			t.Errorf("%s: Uniform(52) chi-square p = %g < %g", name, p, pFloor)
		}
	}
}

// TestChiSquareCatchesModuloBias shows the same check fails a modulo-biased
// generator, so the uniformity tests above can fail.
func TestChiSquareCatchesModuloBias(t *testing.T) {
	if p := uniformity(t, moduloGen(seeded(2), 64), lopsided, 12, 120_000); p >= pFloor {
		t.Errorf("64-bit modulo generator on 3·2^61 passed the uniformity check (p = %g)", p)
	}
	// One random byte modulo 10: 0..5 get 26/256, 6..9 get 25/256.
	if p := uniformity(t, moduloGen(seeded(3), 8), 10, 10, 1_000_000); p >= pFloor {
		t.Errorf("byte-modulo-10 generator passed the uniformity check (p = %g)", p)
	}
	// The sampler fed by the same source passes where modulo fails.
	if p := uniformity(t, samplerGen(t, seeded(2)), lopsided, 12, 120_000); p < pFloor {
		t.Errorf("Uniform(3·2^61) with rejection failed (p = %g)", p)
	}
}

func TestUniformRejectsBadRange(t *testing.T) {
	s := rng.NewSampler(seeded(9))
	for _, n := range []uint64{0, 1 << 63, math.MaxUint64} {
		if _, err := s.Uniform(n); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("Uniform(%d) = %v, want EINVALID", n, err)
		}
	}
	if v, err := s.Uniform(1); err != nil || v != 0 {
		t.Errorf("Uniform(1) = %d, %v", v, err)
	}
}

// naiveShuffle is the well-known wrong shuffle: every position swaps with a
// uniform position over the whole slice, giving n^n equally likely paths
// over n! orders.
func naiveShuffle(t *testing.T, s *rng.Sampler, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = int64(i)
	}
	for i := range out {
		j, err := s.Uniform(uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// permutationP shuffles 4 items m times and tests all 24 orders for uniformity.
func permutationP(t *testing.T, shuffle func() []int64, m int) float64 {
	counts := make([]int, 24)
	for i := 0; i < m; i++ {
		p := shuffle()
		// Lehmer code of the permutation as its index.
		idx, fact := 0, []int{6, 2, 1, 1}
		used := [4]bool{}
		for k, v := range p {
			smaller := 0
			for u := int64(0); u < v; u++ {
				if !used[u] {
					smaller++
				}
			}
			used[v] = true
			idx += smaller * fact[k]
		}
		counts[idx]++
	}
	return chiSquareP(chiSquareUniform(counts), 23)
}

// positionP shuffles n items m times and tests the item × position count
// table: each cell expects m/n; (n-1)^2 degrees of freedom.
func positionP(t *testing.T, shuffle func() []int64, n, m int) float64 {
	counts := make([][]int, n)
	for i := range counts {
		counts[i] = make([]int, n)
	}
	for k := 0; k < m; k++ {
		for pos, item := range shuffle() {
			counts[item][pos]++
		}
	}
	e := float64(m) / float64(n)
	stat := 0.0
	for _, row := range counts {
		for _, c := range row {
			d := float64(c) - e
			stat += d * d / e
		}
	}
	return chiSquareP(stat, (n-1)*(n-1))
}

func TestShuffleUniform(t *testing.T) {
	for name, src := range map[string]io.Reader{"seeded": seeded(4), "crypto/rand": crand.Reader} {
		s := rng.NewSampler(src)
		fy := func(n int) func() []int64 {
			return func() []int64 {
				p, err := s.Shuffle(n)
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
		}
		if p := permutationP(t, fy(4), 120_000); p < pFloor {
			t.Errorf("%s: Fisher–Yates over 4 items: permutation chi-square p = %g", name, p)
		}
		if p := positionP(t, fy(8), 8, 40_000); p < pFloor {
			t.Errorf("%s: Fisher–Yates over 8 items: position chi-square p = %g", name, p)
		}
	}
}

func TestShuffleChecksCatchNaiveShuffle(t *testing.T) {
	s := rng.NewSampler(seeded(5))
	if p := permutationP(t, func() []int64 { return naiveShuffle(t, s, 4) }, 120_000); p >= pFloor {
		t.Errorf("naive shuffle passed the permutation check (p = %g)", p)
	}
	if p := positionP(t, func() []int64 { return naiveShuffle(t, s, 8) }, 8, 40_000); p >= pFloor {
		t.Errorf("naive shuffle passed the position check (p = %g)", p)
	}
}

func TestShuffleIsPermutation(t *testing.T) {
	s := rng.NewSampler(seeded(6))
	for _, n := range []int{1, 2, 52, 416, rng.MaxShuffleN} {
		p, err := s.Shuffle(n)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, n)
		for _, v := range p {
			if v < 0 || v >= int64(n) || seen[v] {
				t.Fatalf("Shuffle(%d) is not a permutation", n)
			}
			seen[v] = true
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestSamplerSourceFailure(t *testing.T) {
	s := rng.NewSampler(failingReader{})
	if _, err := s.Uniform(10); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Errorf("Uniform with a failing source = %v, want EUNAVAILABLE", err)
	}
	if _, err := s.Bytes(4); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Errorf("Bytes with a failing source = %v, want EUNAVAILABLE", err)
	}
}
