package usodds_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed/internal/golden"
	"github.com/buzzer-bet/buzzer/feed/usodds"
	"github.com/buzzer-bet/buzzer/odds"
)

func mapping(t testing.TB) *odds.MappingTable {
	m, err := odds.NewMappingTable(
		odds.EventLink{Provider: "usodds", ProviderEventID: "a1b2c3d4e5f60718293a4b5c6d7e8f90", EventID: "ev-1", Home: "Arsenal", Away: "Chelsea"},
		odds.EventLink{Provider: "usodds", ProviderEventID: "0000000000000000000000000000beef", EventID: "ev-3", Home: "Spurs", Away: "Villa"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func read(t testing.TB, name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var files = []string{"odds_1.json", "odds_2.json", "scores.json", "bad_price.json", "bad_decimal.json", "bad_lines.json", "truncated.json", "error_object.json"}

type result struct {
	File     string        `json:"file"`
	Error    string        `json:"error,omitempty"`
	Unmapped int           `json:"unmapped,omitempty"`
	Updates  []odds.Update `json:"updates,omitempty"`
}

var pollTime = time.Date(2026, 2, 8, 23, 0, 3, 0, time.UTC)

func TestGolden(t *testing.T) {
	n := &usodds.Normalizer{Provider: "usodds", Mapper: mapping(t)}
	var got []result
	for _, f := range files {
		r := result{File: f}
		data := read(t, f)
		var err error
		if f == "scores.json" {
			var evs []usodds.ScoreEvent
			if evs, err = usodds.ParseScores(data); err == nil {
				r.Updates, r.Unmapped, err = n.Scores(evs, pollTime)
			}
		} else {
			var evs []usodds.Event
			if evs, err = usodds.ParseOdds(data); err == nil {
				r.Updates, r.Unmapped, err = n.Odds("soccer_epl", evs, pollTime)
			}
		}
		if err != nil {
			r.Error = buzzer.ErrorMessage(err)
		}
		got = append(got, r)
	}
	golden.Check(t, "testdata/golden.json", got)
}

func TestAmericanToDecimal(t *testing.T) {
	for _, c := range []struct {
		in   string
		want buzzer.Price
	}{
		{"150", 25000}, {"+150", 25000}, {"-110", 19090}, {"-100", 20000}, {"100", 20000},
		{"-120", 18333}, {"-1000000", 10001}, {"999900", 10000 * buzzer.PriceScale}, {"-300", 13333},
	} {
		got, err := usodds.AmericanToDecimal(c.in)
		if err != nil || got != c.want {
			t.Errorf("%s: %v %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"99", "-99", "0", "1.5", "-1000001", "1000000", "", "abc", "-0"} {
		if _, err := usodds.AmericanToDecimal(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzAmericanToDecimal(f *testing.F) {
	for _, s := range []string{"150", "-110", "-100", "100", "-1000000", "999900", "99", "1.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := usodds.AmericanToDecimal(s)
		if err != nil {
			return
		}
		if p < buzzer.MinPrice || p > buzzer.MaxPrice {
			t.Fatalf("%q -> %v out of range", s, p)
		}
		v, _ := strconv.ParseInt(s, 10, 64)
		// p - 1 is the exact profit per unit rounded down to 1/10000:
		// (p-1)/10000 <= profit < (p-1+1)/10000.
		num, den := v, int64(100) // profit = v/100 for positive odds
		if v < 0 {
			num, den = 100, -v
		}
		frac := int64(p) - buzzer.PriceScale
		if frac*den > num*buzzer.PriceScale || (frac+1)*den <= num*buzzer.PriceScale {
			t.Fatalf("%q -> %v is not the rounded-down decimal", s, p)
		}
	})
}

func FuzzParseOdds(f *testing.F) {
	for _, name := range files {
		f.Add(read(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := usodds.ParseOdds(data)
		if err != nil {
			if buzzer.ErrorCode(err) != buzzer.EINVALID {
				t.Fatalf("error without EINVALID: %v", err)
			}
			return
		}
		n := &usodds.Normalizer{Provider: "usodds", Mapper: mapping(t)}
		ups, _, err := n.Odds("soccer_epl", evs, pollTime)
		if err != nil {
			return
		}
		eng := newEngine(t)
		for _, u := range ups {
			_ = eng.Apply(u)
		}
	})
}

func FuzzParseScores(f *testing.F) {
	f.Add(read(f, "scores.json"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		evs, err := usodds.ParseScores(data)
		if err != nil {
			return
		}
		n := &usodds.Normalizer{Provider: "usodds", Mapper: mapping(t)}
		odds1, _ := usodds.ParseOdds(read(t, "odds_1.json"))
		if _, _, err := n.Odds("soccer_epl", odds1, pollTime); err != nil {
			t.Fatal(err)
		}
		ups, _, err := n.Scores(evs, pollTime)
		if err != nil {
			return
		}
		eng := newEngine(t)
		for _, u := range ups {
			_ = eng.Apply(u)
		}
	})
}

func newEngine(t testing.TB) *odds.Engine {
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"usodds"}, Clock: &buzzer.FixedClock{T: pollTime}})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev-1", "ev-3"} {
		_ = eng.AddFixture(odds.Fixture{EventID: id})
	}
	return eng
}

// TestHandleCountsMalformed: malformed bodies are counted and dropped; a
// good one makes the feed's prices quotable.
func TestHandleCountsMalformed(t *testing.T) {
	clock := &buzzer.FixedClock{T: pollTime}
	eng := newEngine(t)
	_ = eng.Apply(odds.Update{Provider: "usodds", Kind: odds.KindStatus, Status: odds.ProviderUp})
	a, err := usodds.New(usodds.Config{URL: "http://127.0.0.1:1", Mapper: mapping(t), Sink: eng, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"truncated.json", "bad_price.json", "error_object.json", "odds_1.json"} {
		a.HandleOdds(context.Background(), "soccer_epl", read(t, f))
	}
	if s := a.Stats(); s.Messages != 4 || s.ParseErrors != 3 || s.Unmapped != 1 {
		t.Fatalf("stats %+v", s)
	}
	q, err := eng.Quote("ev-1", odds.MarketID("ev-1", odds.MatchResult, 0), odds.Home)
	if err != nil || q.Price != 19090 || q.Status != odds.Open {
		t.Fatalf("quote %+v %v", q, err)
	}
	q, err = eng.Quote("ev-1", odds.MarketID("ev-1", odds.Handicap, -150), odds.Away)
	if err != nil || q.Price != 15405 {
		t.Fatalf("spread quote %+v %v", q, err)
	}
}
