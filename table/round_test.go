package table

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer"
)

// stack is a CardSource that deals the given cards in order. Deal order is:
// each seat's first card, dealer up card, each seat's second card, dealer
// hole card, then cards as actions and the dealer need them.
func stack(t testing.TB, cards string) *Shoe {
	t.Helper()
	s := &Shoe{}
	for _, f := range strings.Fields(cards) {
		c, err := ParseCard(f)
		if err != nil {
			t.Fatal(err)
		}
		s.Cards = append(s.Cards, c)
	}
	return s
}

type step struct {
	a     Action
	amt   buzzer.Amount
	legal string // if set, the legal actions before this step, space-separated
	err   string // if set, the step must fail with this code
}

type handWant struct {
	outcome Outcome
	ret     buzzer.Amount
}

func legalString(s Actions) string {
	var names []string
	for _, a := range s.List() {
		names = append(names, a.String())
	}
	return strings.Join(names, " ")
}

func TestRules(t *testing.T) {
	cases := []struct {
		name    string
		rules   func(*Rules)
		bets    []Bet // default one seat betting 10
		cards   string
		steps   []step
		want    []handWant // every hand of every seat, seat order
		ins     buzzer.Amount
		dealerN int // dealer's final card count, if set
	}{
		// Blackjack payout and its rounding.
		{name: "natural pays 3:2", cards: "AS 9H KD 7C",
			want: []handWant{{OutcomeBlackjack, 25}}},
		{name: "natural pays 6:5", rules: func(r *Rules) { r.Blackjack = Pays6To5 }, cards: "AS 9H KD 7C",
			want: []handWant{{OutcomeBlackjack, 22}}},
		{name: "3:2 on an odd stake rounds down", bets: []Bet{{1, 5}}, cards: "AS 9H KD 7C",
			want: []handWant{{OutcomeBlackjack, 12}}},
		{name: "6:5 on 7 rounds down", rules: func(r *Rules) { r.Blackjack = Pays6To5 }, bets: []Bet{{1, 7}}, cards: "AS 9H KD 7C",
			want: []handWant{{OutcomeBlackjack, 15}}},
		{name: "natural vs dealer natural pushes", cards: "AS TH KD AC",
			want: []handWant{{OutcomePush, 10}}},

		// Dealer soft 17.
		{name: "S17 dealer stands on soft 17", cards: "TS 6H 8C AS",
			steps: []step{{a: Stand}}, want: []handWant{{OutcomeWin, 20}}, dealerN: 2},
		{name: "H17 dealer hits soft 17", rules: func(r *Rules) { r.HitSoft17 = true }, cards: "TS 6H 8C AS 3D",
			steps: []step{{a: Stand}}, want: []handWant{{OutcomeLose, 0}}, dealerN: 3},
		{name: "dealer stands on hard 17 under H17", rules: func(r *Rules) { r.HitSoft17 = true }, cards: "TS TH 8C 7S",
			steps: []step{{a: Stand}}, want: []handWant{{OutcomeWin, 20}}, dealerN: 2},
		{name: "dealer draws to 17 and busts", cards: "TS 6H 8C TD 9C",
			steps: []step{{a: Stand}}, want: []handWant{{OutcomeWin, 20}}, dealerN: 3},
		{name: "dealer does not draw when every hand busted", cards: "TS 6H 6C TD 9C",
			steps: []step{{a: Hit}}, want: []handWant{{OutcomeBust, 0}}, dealerN: 2},

		// Doubling rules.
		{name: "double any: hard 9", cards: "5S 6H 4C TD 9C TH",
			steps: []step{{a: DoubleDown, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeWin, 40}}},
		{name: "double any: soft 19", cards: "AS 6H 8C TD 6C 5H",
			steps: []step{{a: DoubleDown, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeLose, 0}}},
		{name: "double 9-11: hard 9 allowed", rules: func(r *Rules) { r.Double = Double9To11 }, cards: "5S 6H 4C TD 9C TH",
			steps: []step{{a: DoubleDown, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeWin, 40}}},
		{name: "double 9-11: soft 19 refused", rules: func(r *Rules) { r.Double = Double9To11 }, cards: "AS 6H 8C TD TH",
			steps: []step{{a: DoubleDown, legal: "hit stand surrender", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeWin, 20}}},
		{name: "double 9-11: hard 8 refused", rules: func(r *Rules) { r.Double = Double9To11 }, cards: "5S 6H 3C TD 9C",
			steps: []step{{a: DoubleDown, legal: "hit stand surrender", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeWin, 20}}},
		{name: "double 10-11: hard 9 refused", rules: func(r *Rules) { r.Double = Double10To11 }, cards: "5S 6H 4C TD 9C",
			steps: []step{{a: DoubleDown, legal: "hit stand surrender", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeWin, 20}}},
		{name: "double 10-11: hard 10 allowed", rules: func(r *Rules) { r.Double = Double10To11 }, cards: "6S 6H 4C TD 9C TH",
			steps: []step{{a: DoubleDown, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeWin, 40}}},
		{name: "no double after a hit", cards: "2S 6H 3C TD 4D 9C",
			steps: []step{{a: Hit}, {a: DoubleDown, legal: "hit stand", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeWin, 20}}},

		// Splits, double after split, resplit limit.
		{name: "split settles each hand", cards: "8S 6H 8C TD 3C TH 2D",
			steps: []step{{a: Split, legal: "hit stand double split surrender"}, {a: Stand}, {a: Stand}},
			want:  []handWant{{OutcomeLose, 0}, {OutcomePush, 10}}},
		{name: "DAS allowed", cards: "8S 6H 8C TD 3C TH TS 9C",
			steps: []step{{a: Split}, {a: DoubleDown, legal: "hit stand double"}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 40}, {OutcomeWin, 20}}, dealerN: 3},
		{name: "DAS refused", rules: func(r *Rules) { r.DoubleAfterSplit = false }, cards: "8S 6H 8C TD 3C TH 9C",
			steps: []step{{a: Split}, {a: DoubleDown, legal: "hit stand", err: buzzer.EINVALID}, {a: Stand}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}}},
		{name: "resplit up to four hands", cards: "8S 6H 8C TD 8D 8H TS TC TH 9C 9D",
			steps: []step{{a: Split}, {a: Split, legal: "hit stand double split"}, {a: Stand, legal: "hit stand double"}, {a: Stand},
				{a: Split, legal: "hit stand double split"}, {a: Stand, legal: "hit stand double"}, {a: Stand}},
			want: []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}, {OutcomeWin, 20}, {OutcomeWin, 20}}},
		{name: "resplit limit two hands", rules: func(r *Rules) { r.MaxHands = 2 }, cards: "8S 6H 8C TD 8D TH 9C",
			steps: []step{{a: Split}, {a: Split, legal: "hit stand double", err: buzzer.EINVALID}, {a: Stand}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}}},
		{name: "no splitting when max hands is 1", rules: func(r *Rules) { r.MaxHands = 1 }, cards: "8S 6H 8C TD 9C",
			steps: []step{{a: Split, legal: "hit stand double surrender", err: buzzer.EINVALID}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 20}}},
		{name: "ten-value cards split together", cards: "KS 6H QC TD 9C 9H 8D",
			steps: []step{{a: Split, legal: "hit stand double split surrender"}, {a: Stand}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}}, dealerN: 3},

		// Split aces.
		{name: "split aces get one card each and 21 is not a natural", cards: "AS 6H AC TD KC 5D 4C",
			steps: []step{{a: Split}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeLose, 0}}},
		{name: "split aces may not resplit by default", cards: "AS 6H AC TD AD 5D 9C",
			steps: []step{{a: Split}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}}, dealerN: 3},
		{name: "resplit aces", rules: func(r *Rules) { r.ResplitAces = true }, cards: "AS 6H AC TD AD 5D 9C 9H 2C",
			steps: []step{{a: Split}, {a: Split, legal: "stand split"}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}, {OutcomeLose, 0}}},
		{name: "split aces may not hit", rules: func(r *Rules) { r.ResplitAces = true }, cards: "AS 6H AC TD AD 5D 9C",
			steps: []step{{a: Split}, {a: Hit, legal: "stand split", err: buzzer.EINVALID}, {a: Stand}},
			want:  []handWant{{OutcomeWin, 20}, {OutcomeWin, 20}}},

		// Surrender.
		{name: "surrender returns half", cards: "TS TH 6C 7D",
			steps: []step{{a: Surrender, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeSurrender, 5}}, dealerN: 2},
		{name: "surrender on an odd stake rounds down", bets: []Bet{{1, 7}}, cards: "TS TH 6C 7D",
			steps: []step{{a: Surrender}}, want: []handWant{{OutcomeSurrender, 3}}},
		{name: "surrender not offered", rules: func(r *Rules) { r.Surrender = false }, cards: "TS TH 6C 7D",
			steps: []step{{a: Surrender, legal: "hit stand double", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeLose, 0}}},
		{name: "no surrender after a hit", cards: "TS TH 2C 7D 3C",
			steps: []step{{a: Hit}, {a: Surrender, legal: "hit stand", err: buzzer.EINVALID}, {a: Stand}}, want: []handWant{{OutcomeLose, 0}}},
		{name: "no surrender after a split", cards: "8S TH 8C 7D 8D 9D",
			steps: []step{{a: Split}, {a: Surrender, legal: "hit stand double split", err: buzzer.EINVALID}, {a: Stand}, {a: Stand}},
			want:  []handWant{{OutcomeLose, 0}, {OutcomePush, 10}}},
		{name: "late surrender void against a no-peek natural", rules: func(r *Rules) { r.Peek = false }, cards: "TS TH 6C AD",
			steps: []step{{a: Surrender}}, want: []handWant{{OutcomeLose, 0}}},

		// Insurance.
		{name: "insurance pays 2:1 on a dealer natural", cards: "TS AH 9C KD",
			steps: []step{{a: Insure, amt: 5, legal: "insure no_insurance"}}, want: []handWant{{OutcomeLose, 0}}, ins: 15},
		{name: "insurance lost, play goes on", cards: "TS AH 9C 7D",
			steps: []step{{a: Insure, amt: 5}, {a: Stand, legal: "hit stand double surrender"}}, want: []handWant{{OutcomeWin, 20}}, ins: 0},
		{name: "insurance over half the bet refused", bets: []Bet{{1, 7}}, cards: "TS AH 9C 7D",
			steps: []step{{a: Insure, amt: 4, err: buzzer.EINVALID}, {a: Insure, amt: 3}, {a: Stand}}, want: []handWant{{OutcomeWin, 14}}},
		{name: "insurance declined", cards: "TS AH 9C KD",
			steps: []step{{a: NoInsurance}}, want: []handWant{{OutcomeLose, 0}}},
		{name: "no insurance offered", rules: func(r *Rules) { r.Insurance = false }, cards: "TS AH 9C KD",
			want: []handWant{{OutcomeLose, 0}}},
		{name: "no insurance on a bet of 1", bets: []Bet{{1, 1}}, cards: "TS AH 9C 7D",
			steps: []step{{a: NoInsurance, legal: "no_insurance"}, {a: Stand}}, want: []handWant{{OutcomeWin, 2}}},

		// Peek.
		{name: "peek settles a dealer natural at once", cards: "TS TH 9C AD",
			want: []handWant{{OutcomeLose, 0}}},
		{name: "no peek: natural found after play takes doubles", rules: func(r *Rules) { r.Peek = false }, cards: "6S TH 5C AD 9C",
			steps: []step{{a: DoubleDown}}, want: []handWant{{OutcomeLose, 0}}, dealerN: 2},
		{name: "no peek: natural takes split hands", rules: func(r *Rules) { r.Peek = false }, cards: "8S TH 8C AD 3C 2H",
			steps: []step{{a: Split}, {a: Stand}, {a: Stand}}, want: []handWant{{OutcomeLose, 0}, {OutcomeLose, 0}}},
		{name: "peek without a natural lets play go on", cards: "TS TH 9C 8D",
			steps: []step{{a: Stand}}, want: []handWant{{OutcomeWin, 20}}},

		// Seat order.
		{name: "seats act in seat order", bets: []Bet{{5, 10}, {2, 20}}, cards: "TS 9C 6H TD 7S 9D 8H TC",
			steps: []step{{a: Stand}, {a: Hit}}, // seat 2 has T,T: stands; seat 5 has 9,7: hits an 8
			want:  []handWant{{OutcomeWin, 40}, {OutcomeBust, 0}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rules := DefaultRules()
			if c.rules != nil {
				c.rules(&rules)
			}
			bets := c.bets
			if bets == nil {
				bets = []Bet{{Seat: 1, Amount: 10}}
			}
			src := stack(t, c.cards)
			r, err := Deal(rules, src, bets)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				if s.legal != "" {
					if got := legalString(r.Legal()); got != s.legal {
						t.Fatalf("step %d: legal %q, want %q", i, got, s.legal)
					}
				}
				err := r.Act(src, s.a, s.amt)
				if s.err != "" {
					if buzzer.ErrorCode(err) != s.err {
						t.Fatalf("step %d (%v): err %v, want code %s", i, s.a, err, s.err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("step %d (%v): %v", i, s.a, err)
				}
			}
			if r.Phase != PhaseSettled {
				t.Fatalf("round not settled after the script: phase %s", r.Phase)
			}
			var got []handWant
			for _, s := range r.Seats {
				for _, h := range s.Hands {
					got = append(got, handWant{h.Outcome, h.Return})
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("hands %v, want %v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("hand %d: %v, want %v", i, got[i], c.want[i])
				}
			}
			if r.Seats[0].InsuranceReturn != c.ins {
				t.Errorf("insurance return %d, want %d", r.Seats[0].InsuranceReturn, c.ins)
			}
			if c.dealerN != 0 && len(r.Dealer) != c.dealerN {
				t.Errorf("dealer drew to %d cards, want %d", len(r.Dealer), c.dealerN)
			}
			if !r.Revealed {
				t.Error("hole card not revealed at settlement")
			}
			if src.Remaining() != 0 {
				t.Errorf("%d scripted cards unused: the script or the dealing order is wrong", src.Remaining())
			}
		})
	}
}

func TestDealValidation(t *testing.T) {
	good := DefaultRules()
	for _, c := range []struct {
		name  string
		rules func(*Rules)
		bets  []Bet
	}{
		{"no bets", nil, nil},
		{"zero bet", nil, []Bet{{1, 0}}},
		{"duplicate seat", nil, []Bet{{1, 10}, {1, 10}}},
		{"zero decks", func(r *Rules) { r.Decks = 0 }, []Bet{{1, 10}}},
		{"nine decks", func(r *Rules) { r.Decks = 9 }, []Bet{{1, 10}}},
		{"2:1 natural", func(r *Rules) { r.Blackjack = Payout{2, 1} }, []Bet{{1, 10}}},
		{"bad double rule", func(r *Rules) { r.Double = "11" }, []Bet{{1, 10}}},
		{"zero max hands", func(r *Rules) { r.MaxHands = 0 }, []Bet{{1, 10}}},
		{"penetration 100", func(r *Rules) { r.Penetration = 100 }, []Bet{{1, 10}}},
	} {
		rules := good
		if c.rules != nil {
			c.rules(&rules)
		}
		_, err := Deal(rules, &Shoe{Cards: OrderedShoe(1)}, c.bets)
		if buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: err %v, want invalid", c.name, err)
		}
	}
}

func TestShoeExhausted(t *testing.T) {
	_, err := Deal(DefaultRules(), stack(t, "TS 9H 5C"), []Bet{{1, 10}})
	if !errors.Is(err, errExhausted) {
		t.Fatalf("err %v, want exhausted", err)
	}
}

func TestCheckShoe(t *testing.T) {
	for d := 1; d <= 8; d++ {
		if err := CheckShoe(OrderedShoe(d), d); err != nil {
			t.Fatal(err)
		}
	}
	s := OrderedShoe(2)
	s[0] = s[1]
	if CheckShoe(s, 2) == nil {
		t.Fatal("a shoe with a duplicated card passed")
	}
	if CheckShoe(OrderedShoe(2)[:103], 2) == nil {
		t.Fatal("a short shoe passed")
	}
}

func TestBasicStrategySpotChecks(t *testing.T) {
	s17, h17 := DefaultRules(), DefaultRules()
	h17.HitSoft17 = true
	all := Actions(0)
	for _, a := range []Action{Hit, Stand, DoubleDown, Split, Surrender} {
		all.add(a)
	}
	noDouble := all &^ (1 << DoubleDown)
	for _, c := range []struct {
		rules Rules
		legal Actions
		cards string
		up    string
		want  Action
	}{
		{s17, all, "6S 5H", "AS", Hit},
		{h17, all, "6S 5H", "AS", DoubleDown},
		{s17, all, "TS 6H", "TD", Surrender},
		{s17, all, "TS 5H", "AD", Hit},
		{h17, all, "TS 5H", "AD", Surrender},
		{s17, all, "AS 7H", "2D", Stand},
		{h17, all, "AS 7H", "2D", DoubleDown},
		{s17, noDouble, "AS 7H", "4D", Stand},
		{s17, noDouble, "AS 6H", "4D", Hit},
		{s17, all, "8S 8H", "TD", Split},
		{s17, all, "9S 9H", "7D", Stand},
		{s17, all, "TS TH", "6D", Stand},
		{s17, all, "5S 5H", "9D", DoubleDown},
		{s17, all, "TS 2H", "3D", Hit},
		{s17, all, "TS 2H", "4D", Stand},
	} {
		var cards []Card
		for _, f := range strings.Fields(c.cards) {
			cc, _ := ParseCard(f)
			cards = append(cards, cc)
		}
		up, _ := ParseCard(c.up)
		if got := BasicStrategy(c.rules, c.legal, cards, up); got != c.want {
			t.Errorf("%s vs %s (H17=%v): %v, want %v", c.cards, c.up, c.rules.HitSoft17, got, c.want)
		}
	}
}

func FuzzParseCard(f *testing.F) {
	for _, s := range []string{"AS", "TD", "KC", "1S", "", "AX", "AS "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCard(s)
		if err != nil {
			return
		}
		if c.String() != s {
			t.Fatalf("ParseCard(%q) = %v", s, c)
		}
	})
}

func FuzzParseAction(f *testing.F) {
	for _, s := range []string{"hit", "stand", "double", "split", "surrender", "insure", "no_insurance", "bet", "", "HIT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAction(s)
		if err != nil {
			return
		}
		if a.String() != s {
			t.Fatalf("ParseAction(%q) = %v", s, a)
		}
	})
}

func FuzzShoeJSON(f *testing.F) {
	for _, s := range []string{`{"number":1,"ref":"r","cards":"ASKD","pos":1}`, `{"cards":"A","pos":0}`, `{"cards":"ASXX","pos":0}`, `{"cards":"","pos":1}`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var sh Shoe
		if err := json.Unmarshal([]byte(s), &sh); err != nil {
			return
		}
		if sh.Pos < 0 || sh.Pos > len(sh.Cards) {
			t.Fatalf("accepted position %d of %d cards", sh.Pos, len(sh.Cards))
		}
		b, err := json.Marshal(sh)
		if err != nil {
			t.Fatal(err)
		}
		var back Shoe
		if err := json.Unmarshal(b, &back); err != nil || !slices.Equal(back.Cards, sh.Cards) || back.Pos != sh.Pos {
			t.Fatalf("round trip of %s: %s, %v", s, b, err)
		}
	})
}
