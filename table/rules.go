package table

import (
	"github.com/buzzer-bet/buzzer"
)

// DoubleRule says which first two-card hands may be doubled.
type DoubleRule string

const (
	DoubleAny    DoubleRule = "any"   // any first two cards
	Double9To11  DoubleRule = "9-11"  // hard 9, 10 or 11 only
	Double10To11 DoubleRule = "10-11" // hard 10 or 11 only
)

// Payout is a ratio Num:Den paid on a winning natural (3:2 or 6:5).
type Payout struct {
	Num int64 `json:"num"`
	Den int64 `json:"den"`
}

// Common blackjack payouts.
var (
	Pays3To2 = Payout{3, 2}
	Pays6To5 = Payout{6, 5}
)

// Win returns the winnings on stake at this ratio, floor(stake×Num/Den): a
// fraction of a minor unit is rounded down, in the house's favour, the same
// rule buzzer.Payout uses. So 3:2 on an odd stake of 5 pays 7, not 7.5; tables
// that want exact 3:2 set MinBet and BetUnit to even amounts.
func (p Payout) Win(stake buzzer.Amount) buzzer.Amount {
	return buzzer.Amount(int64(stake) * p.Num / p.Den)
}

// Rules are the house rules of one table. The zero value is not valid; start
// from DefaultRules.
type Rules struct {
	Decks            int        `json:"decks"`              // 1..8
	HitSoft17        bool       `json:"hit_soft_17"`        // dealer hits soft 17 (H17) instead of standing (S17)
	Blackjack        Payout     `json:"blackjack"`          // natural pays 3:2 or 6:5
	Double           DoubleRule `json:"double"`             // which first two cards may be doubled
	DoubleAfterSplit bool       `json:"double_after_split"` // DAS (never on split aces)
	MaxHands         int        `json:"max_hands"`          // resplit limit: hands per seat after splits; 1 = no splitting
	ResplitAces      bool       `json:"resplit_aces"`       // a split ace that draws an ace may be split again
	Surrender        bool       `json:"surrender"`          // late surrender: first two cards, after the dealer's check
	Insurance        bool       `json:"insurance"`          // offered when the dealer shows an ace
	Peek             bool       `json:"peek"`               // dealer checks for blackjack under an ace or ten (hole-card game)
	// Penetration is the share of the shoe, in percent, dealt before the
	// next round starts from a new shoe (the cut card).
	Penetration int `json:"penetration"`
}

// DefaultRules are a common six-deck shoe game: S17, 3:2, double any two,
// double after split, split to four hands, no resplitting aces, late
// surrender, insurance, peek, 75 % penetration.
func DefaultRules() Rules {
	return Rules{
		Decks:            6,
		HitSoft17:        false,
		Blackjack:        Pays3To2,
		Double:           DoubleAny,
		DoubleAfterSplit: true,
		MaxHands:         4,
		ResplitAces:      false,
		Surrender:        true,
		Insurance:        true,
		Peek:             true,
		Penetration:      75,
	}
}

// Validate reports the first invalid rule.
func (r Rules) Validate() error {
	switch {
	case r.Decks < 1 || r.Decks > 8:
		return buzzer.Errorf(buzzer.EINVALID, "decks must be 1..8, got %d", r.Decks)
	case r.Blackjack != Pays3To2 && r.Blackjack != Pays6To5:
		return buzzer.Errorf(buzzer.EINVALID, "blackjack payout must be 3:2 or 6:5")
	case r.Double != DoubleAny && r.Double != Double9To11 && r.Double != Double10To11:
		return buzzer.Errorf(buzzer.EINVALID, "double rule must be any, 9-11 or 10-11")
	case r.MaxHands < 1 || r.MaxHands > 8:
		return buzzer.Errorf(buzzer.EINVALID, "max hands must be 1..8, got %d", r.MaxHands)
	case r.Penetration < 25 || r.Penetration > 90:
		return buzzer.Errorf(buzzer.EINVALID, "penetration must be 25..90 percent, got %d", r.Penetration)
	}
	return nil
}

// canDouble reports whether the doubling rule admits a two-card hand.
func (r Rules) canDouble(cards []Card) bool {
	total, soft := handValue(cards)
	switch r.Double {
	case DoubleAny:
		return true
	case Double9To11:
		return !soft && total >= 9 && total <= 11
	case Double10To11:
		return !soft && total >= 10 && total <= 11
	}
	return false
}
