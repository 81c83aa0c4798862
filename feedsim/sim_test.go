package feedsim

import (
	"reflect"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
)

func testClock() *buzzer.FixedClock {
	return &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}
}

func TestSimDeterministic(t *testing.T) {
	run := func() []MatchState {
		s := New(Config{Seed: 42, Football: 4, AmericanFootball: 3, Clock: testClock(), Rolling: true})
		var all []MatchState
		for i := 0; i < 300; i++ {
			all = append(all, s.Step(30*time.Second)...)
		}
		return all
	}
	a, b := run(), run()
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different matches")
	}
	c := New(Config{Seed: 43, Football: 4, AmericanFootball: 3, Clock: testClock()}).Step(30 * time.Second)
	if reflect.DeepEqual(a[:len(c)], c) {
		t.Fatal("different seeds, same matches")
	}
}

// TestSimRealisticScoring plays many matches to the end: scoring rates are
// in the range of the real sports, markets settle consistently with the
// score, and every step's probabilities are proper.
func TestSimRealisticScoring(t *testing.T) {
	s := New(Config{Seed: 7, Football: 30, AmericanFootball: 30, Clock: testClock()})
	s.mu.Lock() // play every match from kick-off
	for _, m := range s.matches {
		m.Elapsed = 0
	}
	s.mu.Unlock()
	ended := map[int]MatchState{}
	dangers := 0
	for i := 0; i < 400 && len(ended) < 60; i++ {
		for _, m := range s.Step(30 * time.Second) {
			if m.Danger {
				dangers++
			}
			for _, mk := range m.Markets {
				sum := 0.0
				for _, o := range mk.Outcomes {
					if o.Prob <= 0 || o.Prob >= 1 {
						t.Fatalf("probability %v in %+v", o.Prob, mk)
					}
					sum += o.Prob
				}
				if !m.Ended && (sum < 0.95 || sum > 1.1) {
					t.Fatalf("market %s probabilities sum to %v", mk.Kind, sum)
				}
			}
			if m.Ended {
				ended[m.Index] = m
			}
		}
	}
	if len(ended) != 60 || dangers == 0 {
		t.Fatalf("%d matches ended, %d danger steps", len(ended), dangers)
	}
	var goals, points float64
	for _, m := range ended {
		if m.Sport == SportFootball {
			goals += float64(m.HomeScore + m.AwayScore)
		} else {
			points += float64(m.HomeScore + m.AwayScore)
		}
		for _, mk := range m.Markets {
			won := 0
			for _, o := range mk.Outcomes {
				if o.Result == "won" {
					won++
				}
				if o.Result == "" {
					t.Fatalf("unsettled outcome in ended match %d", m.Index)
				}
			}
			if mk.Kind == KMatchResult && won != 1 {
				t.Fatalf("1x2 with %d winners", won)
			}
			if mk.Kind == KMatchResult {
				lead := m.HomeScore - m.AwayScore
				want := map[bool]string{true: OHome, false: OAway}[lead > 0]
				if lead == 0 {
					want = ODraw
				}
				for _, o := range mk.Outcomes {
					if (o.Result == "won") != (o.Key == want) {
						t.Fatalf("1x2 settled against the score %d-%d: %+v", m.HomeScore, m.AwayScore, mk)
					}
				}
			}
		}
	}
	if g := goals / 30; g < 1.5 || g > 4 {
		t.Fatalf("%.2f goals per football match", g)
	}
	if p := points / 30; p < 25 || p > 65 {
		t.Fatalf("%.2f points per American football match", p)
	}
}

func TestPriceFormats(t *testing.T) {
	for _, c := range []struct {
		d    float64
		want string
	}{{1.005, "1.01"}, {1.999, "1.99"}, {2.01, "2"}, {2.03, "2.02"}, {3.33, "3.3"}, {7.77, "7.6"}, {15.2, "15"}, {47, "46"}, {250, "250"}, {999, "990"}} {
		if got := ladderDown(c.d); got != c.want {
			t.Errorf("ladderDown(%v) = %s, want %s", c.d, got, c.want)
		}
	}
	if twoDP(1.909) != "1.90" || twoDP(1.0) != "1.01" || twoDP(12.3456) != "12.34" {
		t.Fatal(twoDP(1.909), twoDP(1.0), twoDP(12.3456))
	}
	if American(2.5) != 150 || American(1.909) != -110 || American(2.0) != 100 {
		t.Fatal(American(2.5), American(1.909), American(2.0))
	}
	// A margin makes the book overround: implied probabilities sum above 1.
	if d := decimal(0.5, 0.05, 0); 1/d+1/d <= 1 {
		t.Fatal("no margin")
	}
}
