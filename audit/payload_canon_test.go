package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// TestCanonicalPayload holds the direct encoders of the hot payload types
// to the general path: the same bytes as canonicalObject(json.Marshal(v))
// for payloads with awkward strings (escapes, HTML characters, non-ASCII,
// U+2028), empty and missing members, and extreme numbers; and no direct
// encoding at all for a string that is not valid UTF-8.
func TestCanonicalPayload(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 8))
	pieces := []string{"", "a", "player-1", `"`, `\`, "<>&", "\n\t\r\b\f", "\x00\x1f\x7f", "é", "€", "\u2028\u2029", "😀", "US-NJ/house/stakes_held/USD/3", "x y"}
	str := func() string {
		var b []byte
		for range r.IntN(4) {
			b = append(b, pieces[r.IntN(len(pieces))]...)
		}
		return string(b)
	}
	amounts := []buzzer.Amount{0, 1, -1, 100, -9_000_000, 1<<63 - 1, -1 << 63}
	amount := func() buzzer.Amount { return amounts[r.IntN(len(amounts))] }
	prices := []buzzer.Price{10100, 20000, 1_000_000, 12345, 15000}
	check := func(v any) {
		t.Helper()
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		want, err := canonicalObject(js)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := canonicalPayload(v)
		if !ok {
			t.Fatalf("no direct encoding of %s", js)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("direct encoding differs:\n got %s\nwant %s", got, want)
		}
		var rec Record
		if err := rec.SetPayload(v); err != nil || !bytes.Equal(rec.Payload, want) {
			t.Fatalf("SetPayload = %s, %v; want %s", rec.Payload, err, want)
		}
	}
	for range 3000 {
		lt := LedgerTransaction{TxID: str(), Kind: str(), Player: str(), Reference: str(), EffectKey: str()}
		if n := r.IntN(4); n > 0 || r.IntN(2) == 0 {
			lt.Postings = make([]Posting, n)
			for i := range lt.Postings {
				lt.Postings[i] = Posting{Account: str(), Currency: buzzer.Currency(str()), Amount: amount()}
			}
		}
		check(lt)
		check(&lt)
		bp := BetPlaced{BetID: str(), Player: str(), Currency: buzzer.Currency(str()), Stake: amount(), PotentialPayout: amount(), TxID: str()}
		if n := r.IntN(4); n > 0 || r.IntN(2) == 0 {
			bp.Legs = make([]BetLeg, n)
			for i := range bp.Legs {
				bp.Legs[i] = BetLeg{EventID: str(), MarketID: str(), SelectionID: str(), Price: prices[r.IntN(len(prices))]}
			}
		}
		check(bp)
		check(&bp)
	}
	for _, v := range []any{
		LedgerTransaction{TxID: "t\xff"},
		LedgerTransaction{TxID: "t", Postings: []Posting{{Account: "a\xc3"}}},
		BetPlaced{BetID: "b", Legs: []BetLeg{{EventID: "\xed\xa0\x80"}}},
		BetSettled{BetID: "b"},
		(*BetPlaced)(nil),
	} {
		if b, ok := canonicalPayload(v); ok {
			t.Errorf("%#v: direct encoding %s, want the general path", v, b)
		}
	}
}

func BenchmarkSetPayload(b *testing.B) {
	lt := LedgerTransaction{TxID: "0b7e4f0e-3c1f-4d8e-9a55-2f1e3f4a5b6c", Kind: "bet_placed", Player: "bench-1a2b3c4d-17",
		Reference: "9c1d2e3f-4a5b-4c6d-8e7f-0a1b2c3d4e5f", EffectKey: "bench-1a2b3c4d-17/5f0c4a1e-2b3c-4d5e-8f90-1a2b3c4d5e6f",
		Postings: []Posting{{Account: "default/bench-1a2b3c4d-17/cash/USD", Currency: "USD", Amount: -100},
			{Account: "default/house/stakes_held/USD/5", Currency: "USD", Amount: 100}}}
	for b.Loop() {
		var r Record
		if err := r.SetPayload(lt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTableEventRecord(b *testing.B) {
	at := time.Date(2026, 11, 27, 18, 0, 0, 123456789, time.UTC)
	ev := table.Event{Seq: 9, Table: "bj-17", Round: 7, Kind: table.EventDealt, At: at, ShoeRef: "rng/0001/42",
		Hands:    []table.SeatCards{{Seat: 1, Cards: []table.Card{table.NewCard(1, 2), table.NewCard(13, 0)}}, {Seat: 2, Cards: []table.Card{table.NewCard(5, 1), table.NewCard(9, 3)}}},
		Cards:    []table.Card{table.NewCard(10, 1)},
		Deadline: at.Add(time.Second), Actions: []table.Action{table.Hit, table.Stand}}
	for b.Loop() {
		if _, err := NewTableEventRecord("NJ", ev); err != nil {
			b.Fatal(err)
		}
	}
}
