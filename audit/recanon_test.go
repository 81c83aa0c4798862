package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/table"
)

// randomJSON writes a JSON value (or a near miss) the way a careless
// encoder would: members in any order, sometimes twice, strings with every
// kind of escape, integers of every size, decimals, whitespace, nesting
// past the depth limit, and the odd broken token.
func randomJSON(r *rand.Rand, b *strings.Builder, depth int) {
	strs := []string{`""`, `"a"`, `"player-1"`, `"\""`, `"\\"`, `"\u003c"`, `"\n"`, `"\u000a"`, `"\u001f"`, `"\/"`, `"é"`, `"\u00e9"`, `"😀"`, `"\ud83d\ude00"`, `"x y"`, "\"\x01\"", `"\u2028"`}
	nums := []string{"0", "-0", "1", "-1", "01", "1.5", "1e3", "-", "9223372036854775807", "-9223372036854775808", "18446744073709551615", "18446744073709551616", "123456789012345678", "1234567890123456789"}
	keys := []string{"a", "b", "action", "detail", "seat", "z", "", "\\u0061", "é", "A", "aa"}
	if r.IntN(40) == 0 {
		b.WriteString(" ")
	}
	switch k := r.IntN(10); {
	case depth < 36 && k < 3:
		b.WriteByte('{')
		for i := range r.IntN(5) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"` + keys[r.IntN(len(keys))] + `":`)
			randomJSON(r, b, depth+1)
		}
		if r.IntN(60) == 0 {
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case depth < 36 && k < 5:
		b.WriteByte('[')
		for i := range r.IntN(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			randomJSON(r, b, depth+1)
		}
		b.WriteByte(']')
	case k < 7:
		b.WriteString(strs[r.IntN(len(strs))])
	case k < 9:
		b.WriteString(nums[r.IntN(len(nums))])
	default:
		b.WriteString([]string{"true", "false", "null", "nul", "True"}[r.IntN(5)])
	}
}

// sameAsDecoded fails t unless canonicalObject's fast path agrees with
// encoding/json's general path on in: where recanon takes in, the general
// path takes it too and writes the same bytes. It reports whether the fast
// path took it.
func sameAsDecoded(t *testing.T, in []byte) bool {
	t.Helper()
	want, werr := decodeCanonicalObject(in)
	got, gerr := canonicalObject(in)
	if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("canonicalObject(%s) = %s, %v; the general path gives %s, %v", in, got, gerr, want, werr)
	}
	s := scanner{b: in}
	_, fast := s.recanon(nil, 0)
	return fast && len(in) > 0 && in[0] == '{' && s.i == len(in)
}

// TestRecanonMatchesTheGeneralPath holds canonicalObject's scanner to
// encoding/json's tokens on random objects and near misses, and checks
// that it takes what json.Marshal writes for table events.
func TestRecanonMatchesTheGeneralPath(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 4))
	fast := 0
	const n = 20000
	for range n {
		var b strings.Builder
		b.WriteByte('{')
		for i := range r.IntN(6) {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`"k` + strconv.Itoa(r.IntN(8)) + `":`)
			randomJSON(r, &b, 1)
		}
		b.WriteByte('}')
		if sameAsDecoded(t, []byte(b.String())) {
			fast++
		}
	}
	// Not vacuous: most of the valid ones take the fast path.
	if fast < n/10 {
		t.Fatalf("the fast path took only %d of %d objects", fast, n)
	}
	for _, in := range []string{`{"a":1,"a":2}`, `{"b":1,"a":{"c":1,"c":1}}`, `{"a":1} `, `{"a":[1,]}`, `{"a":1.0}`, `{"a":"\u003c"}`, `{"a":-0}`, `{"\u0061":1,"a":2}`, `{}`, `{"a":{}}`, `{"a":[]}`} {
		sameAsDecoded(t, []byte(in))
	}
	deep := strings.Repeat(`{"a":`, 33) + "1" + strings.Repeat("}", 33)
	if sameAsDecoded(t, []byte(deep)) {
		t.Fatal("the fast path took an object nested past the depth limit")
	}
	// Every table event json.Marshal writes takes the fast path.
	at := time.Date(2026, 11, 27, 18, 0, 0, 123456789, time.UTC)
	for _, ev := range []table.Event{
		{Seq: 1, Table: "bj-1", Round: 7, Kind: table.EventBet, At: at, Seat: 2, Player: "p<1>&", Amount: 500},
		{Seq: 9, Table: "bj-1", Round: 7, Kind: table.EventDealt, At: at, Hands: []table.SeatCards{{Seat: 1, Cards: []table.Card{table.NewCard(1, 2), table.NewCard(13, 0)}}}, Deadline: at.Add(time.Second), Actions: []table.Action{table.Hit, table.Stand}},
	} {
		js, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !sameAsDecoded(t, js) && !bytes.Contains(js, []byte(`\u003c`)) {
			t.Errorf("the fast path refused a table event: %s", js)
		}
	}
}

// FuzzCanonicalObject holds the fast path to the general one on any input.
func FuzzCanonicalObject(f *testing.F) {
	for _, s := range []string{`{"b":[1,{"d":null,"c":"x"}],"a":-5}`, `{"a":"\u001f\n","a":1}`, `{"a":1.5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !bytes.ContainsRune(b, 0xFFFD) {
			sameAsDecoded(t, b)
		}
	})
}
