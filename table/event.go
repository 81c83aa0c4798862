package table

import (
	"slices"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// EventKind names what an Event reports.
type EventKind string

// Event kinds, in the order a round produces them.
const (
	EventSeatTaken   EventKind = "seat_taken"   // Seat, Player
	EventSeatLeaving EventKind = "seat_leaving" // Seat: leaves when the round ends
	EventSeatLeft    EventKind = "seat_left"    // Seat, Player
	EventBet         EventKind = "bet"          // Seat, Amount, Deadline (betting closes)
	EventDealt       EventKind = "dealt"        // Hands (two cards per seat), Cards (dealer's up card), ShoeRef
	EventTurn        EventKind = "turn"         // Phase, Seat, Hand, Deadline, Actions
	EventAction      EventKind = "action"       // Seat, Hand, Action, Amount, Cards dealt by it, Timeout
	EventReveal      EventKind = "reveal"       // Cards: the dealer's whole hand, hole card first revealed here
	EventSettled     EventKind = "settled"      // Results
	EventRoundOpened EventKind = "round_opened" // Round: betting is open
)

// Event is one player-visible fact about a table, numbered by the table's
// sequence. Events carry only cards that are face up: the dealer's hole card
// appears first in EventReveal, and the shoe never appears.
type Event struct {
	Seq      int64         `json:"seq"`
	Table    string        `json:"table"`
	Round    int64         `json:"round"`
	Kind     EventKind     `json:"kind"`
	At       time.Time     `json:"at"`
	Phase    TablePhase    `json:"phase,omitempty"`
	Seat     int           `json:"seat,omitempty"`
	Player   string        `json:"player,omitempty"`
	Hand     int           `json:"hand,omitempty"`
	Action   Action        `json:"action,omitempty"`
	Amount   buzzer.Amount `json:"amount,omitempty"`
	Timeout  bool          `json:"timeout,omitempty"`
	Cards    []Card        `json:"cards,omitempty"`
	Hands    []SeatCards   `json:"hands,omitempty"`
	Deadline time.Time     `json:"deadline,omitzero"`
	Actions  []Action      `json:"actions,omitempty"`
	Results  []SeatResult  `json:"results,omitempty"`
	ShoeRef  string        `json:"shoe_ref,omitempty"`
}

// SeatCards is a seat's opening cards in EventDealt.
type SeatCards struct {
	Seat  int    `json:"seat"`
	Cards []Card `json:"cards"`
}

// SeatResult is one seat's settlement in EventSettled.
type SeatResult struct {
	Seat            int           `json:"seat"`
	Hands           []HandResult  `json:"hands"`
	InsuranceReturn buzzer.Amount `json:"insurance_return,omitempty"`
}

// HandResult is one hand's settlement; Return includes the stake.
type HandResult struct {
	Outcome Outcome       `json:"outcome"`
	Return  buzzer.Amount `json:"return"`
}

// TablePhase is where a table stands between and within rounds.
type TablePhase string

const (
	TableBetting   TablePhase = "betting"
	TableInsurance TablePhase = "insurance"
	TablePlayers   TablePhase = "players"
	TableSettled   TablePhase = "settled"
)

// View is what every player at a table may see: a snapshot as of Seq. Applying
// the events after Seq to it, in order, yields the table's later views.
type View struct {
	Table         string     `json:"table"`
	Seq           int64      `json:"seq"`
	Round         int64      `json:"round"`
	Phase         TablePhase `json:"phase"`
	BettingCloses time.Time  `json:"betting_closes,omitzero"`
	Seats         []SeatView `json:"seats,omitempty"`
	// Dealer holds the dealer's face-up cards; HoleHidden says one more is
	// face down.
	Dealer     []Card `json:"dealer,omitempty"`
	HoleHidden bool   `json:"hole_hidden,omitempty"`
	Turn       *Turn  `json:"turn,omitempty"`
	ShoeRef    string `json:"shoe_ref,omitempty"`
}

// SeatView is one seat as players see it.
type SeatView struct {
	Seat            int           `json:"seat"`
	Player          string        `json:"player"`
	Leaving         bool          `json:"leaving,omitempty"`
	Bet             buzzer.Amount `json:"bet,omitempty"`
	Insurance       buzzer.Amount `json:"insurance,omitempty"`
	InsuranceReturn buzzer.Amount `json:"insurance_return,omitempty"`
	Hands           []HandView    `json:"hands,omitempty"`
}

// HandView is one hand as players see it.
type HandView struct {
	Cards       []Card        `json:"cards"`
	Stake       buzzer.Amount `json:"stake"`
	Doubled     bool          `json:"doubled,omitempty"`
	Surrendered bool          `json:"surrendered,omitempty"`
	Outcome     Outcome       `json:"outcome,omitempty"`
	Return      buzzer.Amount `json:"return,omitempty"`
}

// Turn is the decision the table is waiting for.
type Turn struct {
	Phase    TablePhase `json:"phase"`
	Seat     int        `json:"seat"`
	Hand     int        `json:"hand"`
	Deadline time.Time  `json:"deadline"`
	Actions  []Action   `json:"actions"`
}

func (v *View) seat(n int) *SeatView {
	for i := range v.Seats {
		if v.Seats[i].Seat == n {
			return &v.Seats[i]
		}
	}
	return nil
}

func badEvent(e Event, why string) error {
	return buzzer.Errorf(buzzer.EINVALID, "event %d (%s) does not apply: %s", e.Seq, e.Kind, why)
}

// Apply folds the next event into the view. It fails, changing nothing that
// matters, if e is not the event right after v.Seq or does not fit the view.
func (v *View) Apply(e Event) error {
	if e.Seq != v.Seq+1 {
		return buzzer.Errorf(buzzer.ECONFLICT, "event %d does not follow %d", e.Seq, v.Seq).WithReason(ReasonSeqGap)
	}
	if e.Table != v.Table {
		return badEvent(e, "another table")
	}
	switch e.Kind {
	case EventSeatTaken:
		if v.seat(e.Seat) != nil {
			return badEvent(e, "seat taken")
		}
		v.Seats = append(v.Seats, SeatView{Seat: e.Seat, Player: e.Player})
		slices.SortFunc(v.Seats, func(a, b SeatView) int { return a.Seat - b.Seat })
	case EventSeatLeaving:
		s := v.seat(e.Seat)
		if s == nil {
			return badEvent(e, "no such seat")
		}
		s.Leaving = true
	case EventSeatLeft:
		if v.seat(e.Seat) == nil {
			return badEvent(e, "no such seat")
		}
		v.Seats = slices.DeleteFunc(v.Seats, func(s SeatView) bool { return s.Seat == e.Seat })
	case EventBet:
		s := v.seat(e.Seat)
		if s == nil {
			return badEvent(e, "no such seat")
		}
		s.Bet = e.Amount
		v.BettingCloses = e.Deadline
	case EventDealt:
		if len(e.Cards) != 1 {
			return badEvent(e, "dealer must show one card")
		}
		for _, sc := range e.Hands {
			s := v.seat(sc.Seat)
			if s == nil {
				return badEvent(e, "no such seat")
			}
			s.Hands = []HandView{{Cards: slices.Clone(sc.Cards), Stake: s.Bet}}
		}
		v.Dealer, v.HoleHidden = slices.Clone(e.Cards), true
		v.BettingCloses = time.Time{}
		v.ShoeRef = e.ShoeRef
	case EventTurn:
		v.Phase = e.Phase
		v.Turn = &Turn{Phase: e.Phase, Seat: e.Seat, Hand: e.Hand, Deadline: e.Deadline, Actions: slices.Clone(e.Actions)}
	case EventAction:
		v.Turn = nil
		s := v.seat(e.Seat)
		if s == nil {
			return badEvent(e, "no such seat")
		}
		if e.Action == Insure {
			s.Insurance = e.Amount
			return v.done(e)
		}
		if e.Action == NoInsurance {
			return v.done(e)
		}
		if e.Hand < 0 || e.Hand >= len(s.Hands) {
			return badEvent(e, "no such hand")
		}
		h := &s.Hands[e.Hand]
		switch e.Action {
		case Hit:
			h.Cards = append(h.Cards, e.Cards...)
		case DoubleDown:
			h.Cards = append(h.Cards, e.Cards...)
			h.Stake *= 2
			h.Doubled = true
		case Surrender:
			h.Surrendered = true
		case Split:
			if len(h.Cards) != 2 || len(e.Cards) != 2 {
				return badEvent(e, "split needs a pair and two new cards")
			}
			second := HandView{Cards: []Card{h.Cards[1], e.Cards[1]}, Stake: h.Stake}
			h.Cards = []Card{h.Cards[0], e.Cards[0]}
			s.Hands = slices.Insert(s.Hands, e.Hand+1, second)
		}
	case EventReveal:
		v.Dealer, v.HoleHidden, v.Turn = slices.Clone(e.Cards), false, nil
	case EventSettled:
		v.Phase, v.Turn = TableSettled, nil
		for _, r := range e.Results {
			s := v.seat(r.Seat)
			if s == nil || len(r.Hands) != len(s.Hands) {
				return badEvent(e, "results do not match the hands")
			}
			for i, hr := range r.Hands {
				s.Hands[i].Outcome, s.Hands[i].Return = hr.Outcome, hr.Return
			}
			s.InsuranceReturn = r.InsuranceReturn
		}
	case EventRoundOpened:
		v.Round, v.Phase = e.Round, TableBetting
		v.Dealer, v.HoleHidden, v.Turn, v.BettingCloses = nil, false, nil, time.Time{}
		for i := range v.Seats {
			s := &v.Seats[i]
			s.Bet, s.Insurance, s.InsuranceReturn, s.Hands = 0, 0, 0, nil
		}
	default:
		return badEvent(e, "unknown kind")
	}
	return v.done(e)
}

func (v *View) done(e Event) error {
	v.Seq = e.Seq
	return nil
}
