package table

import (
	"sort"
	"strings"

	"github.com/buzzer-bet/buzzer"
)

// Action is a player's decision on their turn.
type Action uint8

// Player actions. NoAction is the zero value and never legal.
const (
	NoAction Action = iota
	Hit
	Stand
	DoubleDown
	Split
	Surrender
	Insure      // take insurance (amount up to half the bet)
	NoInsurance // decline insurance
	PlaceBet    // a seat's opening stake, during the betting window (table service only)
)

var actionNames = [...]string{"", "hit", "stand", "double", "split", "surrender", "insure", "no_insurance", "bet"}

func (a Action) String() string {
	if int(a) < len(actionNames) && a != NoAction {
		return actionNames[a]
	}
	return "none"
}

// ParseAction parses the lower-case name of an action ("hit", "double", ...).
func ParseAction(s string) (Action, error) {
	for i := 1; i < len(actionNames); i++ {
		if actionNames[i] == s {
			return Action(i), nil
		}
	}
	return NoAction, buzzer.Errorf(buzzer.EINVALID, "action must be one of %s", strings.Join(actionNames[1:], ", "))
}

// MarshalText encodes the action's name.
func (a Action) MarshalText() ([]byte, error) {
	if a == NoAction || int(a) >= len(actionNames) {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "invalid action %d", uint8(a))
	}
	return []byte(a.String()), nil
}

// UnmarshalText decodes an action's name.
func (a *Action) UnmarshalText(b []byte) error {
	v, err := ParseAction(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Actions is a set of actions.
type Actions uint16

// Has reports whether a is in the set.
func (s Actions) Has(a Action) bool { return s&(1<<a) != 0 }

func (s *Actions) add(a Action) { *s |= 1 << a }

// List returns the actions in the set in a fixed order.
func (s Actions) List() []Action {
	var out []Action
	for a := Hit; a <= PlaceBet; a++ {
		if s.Has(a) {
			out = append(out, a)
		}
	}
	return out
}

// Phase is where a round stands.
type Phase string

const (
	PhaseInsurance Phase = "insurance" // seats in order decide on insurance
	PhasePlayers   Phase = "players"   // seats in order play their hands
	PhaseSettled   Phase = "settled"   // dealer has played; every hand is settled
)

// Outcome is how a hand was settled.
type Outcome string

const (
	OutcomeBlackjack Outcome = "blackjack" // natural paid at the table's blackjack ratio
	OutcomeWin       Outcome = "win"
	OutcomePush      Outcome = "push"
	OutcomeLose      Outcome = "lose"
	OutcomeBust      Outcome = "bust"
	OutcomeSurrender Outcome = "surrender"
)

// Bet is one seat's opening stake for a round.
type Bet struct {
	Seat   int           `json:"seat"`
	Amount buzzer.Amount `json:"amount"`
}

// Hand is one player hand. Stake includes a double.
type Hand struct {
	Cards       []Card        `json:"cards"`
	Stake       buzzer.Amount `json:"stake"`
	Doubled     bool          `json:"doubled,omitempty"`
	FromSplit   bool          `json:"from_split,omitempty"`
	SplitAces   bool          `json:"split_aces,omitempty"`
	Surrendered bool          `json:"surrendered,omitempty"`
	Done        bool          `json:"done,omitempty"`
	Outcome     Outcome       `json:"outcome,omitempty"`
	// Return is what settlement gives back to the player for this hand,
	// stake included (0 for a loss, Stake for a push).
	Return buzzer.Amount `json:"return"`
}

// SeatHands is one seat's part of a round.
type SeatHands struct {
	Seat            int           `json:"seat"`
	Bet             buzzer.Amount `json:"bet"`
	Hands           []Hand        `json:"hands"`
	Insurance       buzzer.Amount `json:"insurance,omitempty"`
	InsuranceReturn buzzer.Amount `json:"insurance_return,omitempty"`
	// Acts counts the seat's accepted decisions this round; it numbers the
	// wallet idempotency keys of doubles, splits and insurance.
	Acts int `json:"acts"`
}

// Wagered is everything the seat put at risk this round.
func (s *SeatHands) Wagered() buzzer.Amount {
	w := s.Insurance
	for i := range s.Hands {
		w += s.Hands[i].Stake
	}
	return w
}

// Returned is everything settlement gives back to the seat (0 before).
func (s *SeatHands) Returned() buzzer.Amount {
	w := s.InsuranceReturn
	for i := range s.Hands {
		w += s.Hands[i].Return
	}
	return w
}

// Round is one round of blackjack: a pure state machine driven by the
// actions of the seat whose turn it is and by the cards of a CardSource.
// Given the same rules, bets, cards and actions it always reaches the same
// state. It holds hidden information (Dealer[1] before Revealed) and must
// never be sent to players; View is the player-visible projection.
type Round struct {
	Rules   Rules       `json:"rules"`
	Seats   []SeatHands `json:"seats"`
	Dealer  []Card      `json:"dealer"`
	Phase   Phase       `json:"phase"`
	Cur     int         `json:"cur"`      // index into Seats of the seat to act
	CurHand int         `json:"cur_hand"` // index into that seat's Hands
	// Revealed is set once the hole card is turned over.
	Revealed bool `json:"revealed"`
}

var errExhausted = buzzer.Errorf(buzzer.EINTERNAL, "the shoe ran out of cards mid-round")

func draw(src CardSource) (Card, error) {
	c, ok := src.Next()
	if !ok || !c.Valid() {
		return 0, errExhausted
	}
	return c, nil
}

// Deal starts a round: one card to each seat in seat order, the dealer's up
// card, a second card to each seat, the dealer's hole card. bets must name
// distinct seats with positive stakes.
func Deal(rules Rules, src CardSource, bets []Bet) (*Round, error) {
	r := &Round{}
	if err := r.deal(rules, src, bets); err != nil {
		return nil, err
	}
	return r, nil
}

// deal starts a round in r, reusing r's memory (the simulation deals
// millions of rounds into one Round).
func (r *Round) deal(rules Rules, src CardSource, bets []Bet) error {
	if err := rules.Validate(); err != nil {
		return err
	}
	if len(bets) == 0 {
		return buzzer.Errorf(buzzer.EINVALID, "a round needs at least one bet")
	}
	sorted := true
	for i := 1; i < len(bets); i++ {
		sorted = sorted && bets[i-1].Seat <= bets[i].Seat
	}
	if !sorted {
		bets = append([]Bet(nil), bets...)
		sort.Slice(bets, func(i, j int) bool { return bets[i].Seat < bets[j].Seat })
	}
	if cap(r.Seats) < len(bets) {
		r.Seats = make([]SeatHands, len(bets))
	}
	r.Seats = r.Seats[:len(bets)]
	if r.Dealer == nil {
		r.Dealer = make([]Card, 0, 8)
	}
	r.Rules, r.Dealer, r.Phase, r.Cur, r.CurHand, r.Revealed = rules, r.Dealer[:0], "", 0, 0, false
	for i, b := range bets {
		if b.Amount <= 0 {
			return buzzer.Errorf(buzzer.EINVALID, "seat %d: a bet must be positive", b.Seat)
		}
		if i > 0 && bets[i-1].Seat == b.Seat {
			return buzzer.Errorf(buzzer.EINVALID, "seat %d bet twice", b.Seat)
		}
		s := &r.Seats[i]
		hands := s.Hands[:0]
		var cards []Card
		if cap(hands) > 0 {
			cards = hands[:1][0].Cards[:0]
		}
		if cards == nil {
			cards = make([]Card, 0, 4)
		}
		*s = SeatHands{Seat: b.Seat, Bet: b.Amount, Hands: append(hands, Hand{Stake: b.Amount, Cards: cards})}
	}
	for pass := 0; pass < 2; pass++ {
		for i := range r.Seats {
			c, err := draw(src)
			if err != nil {
				return err
			}
			r.Seats[i].Hands[0].Cards = append(r.Seats[i].Hands[0].Cards, c)
		}
		c, err := draw(src)
		if err != nil {
			return err
		}
		r.Dealer = append(r.Dealer, c)
	}
	if rules.Insurance && r.Dealer[0].Value() == 1 {
		r.Phase = PhaseInsurance
		return nil
	}
	return r.afterInsurance(src)
}

// Up is the dealer's face-up card.
func (r *Round) Up() Card { return r.Dealer[0] }

func isNatural(cards []Card) bool {
	if len(cards) != 2 {
		return false
	}
	t, _ := handValue(cards)
	return t == 21
}

func (r *Round) dealerNatural() bool { return isNatural(r.Dealer[:2]) }

// natural reports whether hand h of seat s is a blackjack: the seat's
// original two-card 21, never one made after a split.
func (r *Round) natural(s *SeatHands, h *Hand) bool {
	return !h.FromSplit && len(s.Hands) == 1 && isNatural(h.Cards)
}

func (r *Round) afterInsurance(src CardSource) error {
	up := r.Up().Value()
	if r.Rules.Peek && (up == 1 || up == 10) && r.dealerNatural() {
		return r.finish(src)
	}
	r.Phase, r.Cur, r.CurHand = PhasePlayers, 0, 0
	return r.advance(src)
}

// Turn returns the seat number and hand index to act, or ok=false when no
// player decision is pending (the round is settled).
func (r *Round) Turn() (seat, hand int, ok bool) {
	if r.Phase == PhaseSettled || r.Cur >= len(r.Seats) {
		return 0, 0, false
	}
	return r.Seats[r.Cur].Seat, r.CurHand, true
}

func (r *Round) canSplit(s *SeatHands, h *Hand) bool {
	if len(h.Cards) != 2 || h.Cards[0].Value() != h.Cards[1].Value() || len(s.Hands) >= r.Rules.MaxHands {
		return false
	}
	return !h.SplitAces || r.Rules.ResplitAces
}

// Legal returns the actions the player to act may take.
func (r *Round) Legal() Actions {
	var set Actions
	switch r.Phase {
	case PhaseInsurance:
		if r.Seats[r.Cur].Bet/2 > 0 {
			set.add(Insure)
		}
		set.add(NoInsurance)
	case PhasePlayers:
		s := &r.Seats[r.Cur]
		h := &s.Hands[r.CurHand]
		set.add(Stand)
		if !h.SplitAces {
			set.add(Hit)
			if len(h.Cards) == 2 && (!h.FromSplit || r.Rules.DoubleAfterSplit) && r.Rules.canDouble(h.Cards) {
				set.add(DoubleDown)
			}
		}
		if r.canSplit(s, h) {
			set.add(Split)
		}
		if r.Rules.Surrender && len(s.Hands) == 1 && !h.FromSplit && len(h.Cards) == 2 {
			set.add(Surrender)
		}
	}
	return set
}

// Act applies the decision of the player to act. amount is used only by
// Insure (1 .. half the bet, rounded down); doubles and splits always match
// the hand's stake. The source deals any cards the action needs, and, when
// the last player decision is made, the dealer's cards.
func (r *Round) Act(src CardSource, a Action, amount buzzer.Amount) error {
	if r.Phase == PhaseSettled {
		return buzzer.Errorf(buzzer.ECONFLICT, "the round is settled")
	}
	if !r.Legal().Has(a) {
		return buzzer.Errorf(buzzer.EINVALID, "%s is not allowed now", a)
	}
	s := &r.Seats[r.Cur]
	if r.Phase == PhaseInsurance {
		if a == Insure {
			if amount <= 0 || amount > s.Bet/2 {
				return buzzer.Errorf(buzzer.EINVALID, "insurance must be between 1 and %d", s.Bet/2)
			}
			s.Insurance = amount
		}
		s.Acts++
		r.Cur++
		if r.Cur < len(r.Seats) {
			return nil
		}
		return r.afterInsurance(src)
	}
	s.Acts++
	h := &s.Hands[r.CurHand]
	switch a {
	case Hit:
		c, err := draw(src)
		if err != nil {
			return err
		}
		h.Cards = append(h.Cards, c)
	case Stand:
		h.Done = true
	case DoubleDown:
		c, err := draw(src)
		if err != nil {
			return err
		}
		h.Cards = append(h.Cards, c)
		h.Stake *= 2
		h.Doubled, h.Done = true, true
	case Split:
		aces := h.Cards[0].Value() == 1
		second := Hand{Cards: append(make([]Card, 0, 4), h.Cards[1]), Stake: h.Stake, FromSplit: true, SplitAces: aces}
		h.Cards = h.Cards[:1]
		h.FromSplit, h.SplitAces = true, aces
		// Both hands get their second card now, first hand first.
		c1, err := draw(src)
		if err != nil {
			return err
		}
		c2, err := draw(src)
		if err != nil {
			return err
		}
		h.Cards = append(h.Cards, c1)
		second.Cards = append(second.Cards, c2)
		s.Hands = append(s.Hands, Hand{})
		copy(s.Hands[r.CurHand+2:], s.Hands[r.CurHand+1:])
		s.Hands[r.CurHand+1] = second
	case Surrender:
		h.Surrendered, h.Done = true, true
	}
	return r.advance(src)
}

// advance moves the turn to the next hand that needs a decision, closing
// hands that need none (21, bust, naturals, split aces that cannot resplit);
// when none is left the dealer plays and the round settles.
func (r *Round) advance(src CardSource) error {
	for ; r.Cur < len(r.Seats); r.Cur, r.CurHand = r.Cur+1, 0 {
		s := &r.Seats[r.Cur]
		for ; r.CurHand < len(s.Hands); r.CurHand++ {
			h := &s.Hands[r.CurHand]
			if h.Done {
				continue
			}
			if t, _ := handValue(h.Cards); t >= 21 || (h.SplitAces && !r.canSplit(s, h)) {
				h.Done = true
				continue
			}
			return nil
		}
	}
	return r.finish(src)
}

// finish reveals the hole card, lets the dealer draw if any hand is still
// live, and settles every hand.
func (r *Round) finish(src CardSource) error {
	r.Revealed = true
	r.Phase = PhaseSettled
	r.Cur = len(r.Seats)
	dealerBJ := r.dealerNatural()
	live := false
	for i := range r.Seats {
		s := &r.Seats[i]
		for j := range s.Hands {
			h := &s.Hands[j]
			if t, _ := handValue(h.Cards); !h.Surrendered && t <= 21 && !r.natural(s, h) {
				live = true
			}
		}
	}
	if live && !dealerBJ {
		for {
			t, soft := handValue(r.Dealer)
			if t > 17 || (t == 17 && !(soft && r.Rules.HitSoft17)) {
				break
			}
			c, err := draw(src)
			if err != nil {
				return err
			}
			r.Dealer = append(r.Dealer, c)
		}
	}
	dealer, _ := handValue(r.Dealer)
	for i := range r.Seats {
		s := &r.Seats[i]
		if dealerBJ {
			s.InsuranceReturn = 3 * s.Insurance // insurance pays 2:1
		}
		for j := range s.Hands {
			h := &s.Hands[j]
			t, _ := handValue(h.Cards)
			switch {
			case h.Surrendered && !dealerBJ:
				// Half the stake back, rounded down in the house's favour.
				h.Outcome, h.Return = OutcomeSurrender, h.Stake/2
			case r.natural(s, h) && dealerBJ:
				h.Outcome, h.Return = OutcomePush, h.Stake
			case r.natural(s, h):
				h.Outcome, h.Return = OutcomeBlackjack, h.Stake+r.Rules.Blackjack.Win(h.Stake)
			case dealerBJ:
				// Without a peek this takes doubles and splits too (no-hole-card rule).
				h.Outcome, h.Return = OutcomeLose, 0
			case t > 21:
				h.Outcome, h.Return = OutcomeBust, 0
			case dealer > 21 || t > dealer:
				h.Outcome, h.Return = OutcomeWin, 2*h.Stake
			case t == dealer:
				h.Outcome, h.Return = OutcomePush, h.Stake
			default:
				h.Outcome, h.Return = OutcomeLose, 0
			}
		}
	}
	return nil
}
