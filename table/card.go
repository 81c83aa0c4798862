package table

import (
	"encoding/json"

	"github.com/buzzer-bet/buzzer"
)

// Card is one playing card: rank in the high bits (1 = ace .. 13 = king) and
// suit in the low two bits. The zero Card is invalid.
type Card uint8

// Suits in their one-letter text form, indexed by the suit bits.
const suitLetters = "SHDC"

// Rank letters indexed by rank (index 0 unused).
const rankLetters = "?A23456789TJQK"

// NewCard returns the card of rank 1..13 (ace..king) and suit 0..3
// (spades, hearts, diamonds, clubs).
func NewCard(rank, suit int) Card { return Card(rank<<2 | suit) }

// Rank is 1 (ace) .. 13 (king).
func (c Card) Rank() int { return int(c >> 2) }

// Suit is 0..3 (spades, hearts, diamonds, clubs).
func (c Card) Suit() int { return int(c & 3) }

// Value is the blackjack point value with an ace counted as 1.
func (c Card) Value() int {
	r := c.Rank()
	if r > 10 {
		return 10
	}
	return r
}

// Valid reports whether c is one of the 52 cards.
func (c Card) Valid() bool { r := c.Rank(); return r >= 1 && r <= 13 }

// String is the two-letter form: rank (A,2..9,T,J,Q,K) then suit (S,H,D,C).
func (c Card) String() string {
	if !c.Valid() {
		return "??"
	}
	return string([]byte{rankLetters[c.Rank()], suitLetters[c.Suit()]})
}

// ParseCard parses the two-letter form produced by String.
func ParseCard(s string) (Card, error) {
	if len(s) == 2 {
		r, su := -1, -1
		for i := 1; i < len(rankLetters); i++ {
			if rankLetters[i] == s[0] {
				r = i
			}
		}
		for i := 0; i < len(suitLetters); i++ {
			if suitLetters[i] == s[1] {
				su = i
			}
		}
		if r > 0 && su >= 0 {
			return NewCard(r, su), nil
		}
	}
	return 0, buzzer.Errorf(buzzer.EINVALID, "card %q is not a rank (A,2-9,T,J,Q,K) followed by a suit (S,H,D,C)", s)
}

// MarshalText encodes the card in its two-letter form.
func (c Card) MarshalText() ([]byte, error) {
	if !c.Valid() {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "invalid card %d", uint8(c))
	}
	return []byte(c.String()), nil
}

// UnmarshalText decodes the two-letter form.
func (c *Card) UnmarshalText(b []byte) error {
	v, err := ParseCard(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// OrderedShoe returns decks full decks in a fixed order (not shuffled): the
// multiset every shuffled shoe of that size must be a permutation of.
func OrderedShoe(decks int) []Card {
	cards := make([]Card, 0, decks*52)
	for d := 0; d < decks; d++ {
		for s := 0; s < 4; s++ {
			for r := 1; r <= 13; r++ {
				cards = append(cards, NewCard(r, s))
			}
		}
	}
	return cards
}

// CheckShoe verifies that cards is exactly decks full decks in some order.
func CheckShoe(cards []Card, decks int) error {
	if len(cards) != decks*52 {
		return buzzer.Errorf(buzzer.EINVALID, "shoe has %d cards, want %d", len(cards), decks*52)
	}
	var count [64]int
	for _, c := range cards {
		if !c.Valid() {
			return buzzer.Errorf(buzzer.EINVALID, "shoe holds an invalid card")
		}
		count[c]++
	}
	for r := 1; r <= 13; r++ {
		for s := 0; s < 4; s++ {
			if count[NewCard(r, s)] != decks {
				return buzzer.Errorf(buzzer.EINVALID, "shoe holds %d of %s, want %d", count[NewCard(r, s)], NewCard(r, s), decks)
			}
		}
	}
	return nil
}

// CardSource yields the next card dealt. The rules engine draws only through
// it, so a round is a pure function of the source's sequence and the actions.
type CardSource interface {
	// Next returns the next card, or false when the source is exhausted.
	Next() (Card, bool)
}

// Shoe is a shuffled shoe and the position of the next card. Cards[Pos:] are
// undealt and secret.
type Shoe struct {
	Number int64  `json:"number"` // per-table shoe counter, 1-based
	Ref    string `json:"ref"`    // the RNG service's reference for the shuffle draw
	// Extra lists the references of shoes appended when this one ran low
	// mid-round (a casino would reshuffle the discards).
	Extra []string `json:"extra,omitempty"`
	Cards []Card   `json:"cards"`
	Pos   int      `json:"pos"`
}

// Next deals the next card.
func (s *Shoe) Next() (Card, bool) {
	if s.Pos >= len(s.Cards) {
		return 0, false
	}
	c := s.Cards[s.Pos]
	s.Pos++
	return c, true
}

// Remaining is the number of undealt cards.
func (s *Shoe) Remaining() int { return len(s.Cards) - s.Pos }

// handValue returns the best total of cards and whether it is soft (an ace
// counted as 11).
func handValue(cards []Card) (total int, soft bool) {
	ace := false
	for _, c := range cards {
		v := c.Value()
		total += v
		if v == 1 {
			ace = true
		}
	}
	if ace && total+10 <= 21 {
		return total + 10, true
	}
	return total, false
}

// HandValue returns the best blackjack total of cards and whether it is soft.
func HandValue(cards []Card) (total int, soft bool) { return handValue(cards) }

// shoeJSON is Shoe's stored form: the cards as one string of two-letter
// codes, a fraction of the size of a JSON array.
type shoeJSON struct {
	Number int64    `json:"number"`
	Ref    string   `json:"ref"`
	Extra  []string `json:"extra,omitempty"`
	Cards  string   `json:"cards"`
	Pos    int      `json:"pos"`
}

// MarshalJSON encodes the shoe compactly.
func (s Shoe) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 2*len(s.Cards))
	for _, c := range s.Cards {
		if !c.Valid() {
			return nil, buzzer.Errorf(buzzer.EINTERNAL, "invalid card in shoe")
		}
		b = append(b, rankLetters[c.Rank()], suitLetters[c.Suit()])
	}
	return json.Marshal(shoeJSON{Number: s.Number, Ref: s.Ref, Extra: s.Extra, Cards: string(b), Pos: s.Pos})
}

// UnmarshalJSON decodes MarshalJSON's form.
func (s *Shoe) UnmarshalJSON(data []byte) error {
	var j shoeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	if len(j.Cards)%2 != 0 || j.Pos < 0 || j.Pos > len(j.Cards)/2 {
		return buzzer.Errorf(buzzer.EINVALID, "malformed shoe")
	}
	cards := make([]Card, len(j.Cards)/2)
	for i := range cards {
		c, err := ParseCard(j.Cards[2*i : 2*i+2])
		if err != nil {
			return err
		}
		cards[i] = c
	}
	*s = Shoe{Number: j.Number, Ref: j.Ref, Extra: j.Extra, Cards: cards, Pos: j.Pos}
	return nil
}
