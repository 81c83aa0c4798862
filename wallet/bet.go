package wallet

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// PriceChange is the bettor's policy when the price moved since they saw it.
type PriceChange string

const (
	// PriceExact accepts only the requested price.
	PriceExact PriceChange = "exact"
	// PriceBetter accepts the current price if it is at least the requested one.
	PriceBetter PriceChange = "better"
	// PriceAny accepts the current price whatever it is.
	PriceAny PriceChange = "any"
)

// accepts reports whether current is acceptable for requested under p.
func (p PriceChange) accepts(requested, current buzzer.Price) bool {
	switch p {
	case PriceExact:
		return current == requested
	case PriceBetter:
		return current >= requested
	case PriceAny:
		return true
	default:
		return false
	}
}

// BetStatus is a bet's life cycle.
type BetStatus string

const (
	BetOpen    BetStatus = "open"
	BetSettled BetStatus = "settled"
)

// LegResult is a leg's settled result.
type LegResult string

const (
	ResultWon  LegResult = "won"
	ResultLost LegResult = "lost"
	ResultVoid LegResult = "void"
)

// Leg is one selection of a bet and what it was accepted against.
type Leg struct {
	EventID        string       `json:"event_id"`
	MarketID       string       `json:"market_id"`
	SelectionID    string       `json:"selection_id"`
	RequestedPrice buzzer.Price `json:"requested_price"`
	Price          buzzer.Price `json:"price"`
	OddsVersion    int64        `json:"odds_version"`
	FeedPosition   string       `json:"feed_position,omitempty"`
	InPlay         bool         `json:"in_play,omitempty"`

	// Settlement state of this leg: the market result version it reflects
	// (0: unsettled) and the outcome at that version.
	ResultVersion  int64     `json:"result_version,omitempty"`
	Result         LegResult `json:"result,omitempty"`
	VoidFactor     Factor    `json:"void_factor,omitempty"`
	DeadHeatFactor Factor    `json:"dead_heat_factor,omitempty"`
}

// Bet is a single (one leg) or an accumulator (several legs, one per event).
type Bet struct {
	ID              string          `json:"id"`
	Player          string          `json:"player_id"`
	Jurisdiction    string          `json:"jurisdiction"`
	Currency        buzzer.Currency `json:"currency"`
	Stake           buzzer.Amount   `json:"stake"`
	PotentialPayout buzzer.Amount   `json:"potential_payout"`
	PriceChange     PriceChange     `json:"price_change"`
	Legs            []Leg           `json:"legs"`
	Status          BetStatus       `json:"status"`
	// Payout is what settlement returned to the player (stake included).
	Payout    buzzer.Amount `json:"payout"`
	PlacedAt  time.Time     `json:"placed_at"`
	SettledAt *time.Time    `json:"settled_at,omitempty"`
	// SettledBy is who made the last settlement or resettlement: an operator
	// ID or "feed".
	SettledBy string `json:"settled_by,omitempty"`
	// Decision is the compliance decision the bet was placed under.
	Decision *Decision `json:"decision,omitempty"`
	// Internal bookkeeping, not shown to players.
	StakeBucket  int    `json:"stake_bucket"`
	PlacementTxn string `json:"placement_txn"`
}

// BetView is a bet as its player sees it.
type BetView struct {
	ID              string          `json:"id"`
	Status          BetStatus       `json:"status"`
	Currency        buzzer.Currency `json:"currency"`
	Stake           buzzer.Amount   `json:"stake"`
	PotentialPayout buzzer.Amount   `json:"potential_payout"`
	Payout          buzzer.Amount   `json:"payout"`
	PriceChange     PriceChange     `json:"price_change"`
	Legs            []Leg           `json:"legs"`
	PlacedAt        time.Time       `json:"placed_at"`
	SettledAt       *time.Time      `json:"settled_at,omitempty"`
}

// View returns the player-facing form of b.
func (b *Bet) View() BetView {
	return BetView{ID: b.ID, Status: b.Status, Currency: b.Currency, Stake: b.Stake, PotentialPayout: b.PotentialPayout,
		Payout: b.Payout, PriceChange: b.PriceChange, Legs: b.Legs, PlacedAt: b.PlacedAt, SettledAt: b.SettledAt}
}

// BetCursor pages a player's bets newest first.
type BetCursor struct {
	PlacedAt time.Time
	ID       string
}

// String encodes the cursor opaquely.
func (c BetCursor) String() string {
	if c.ID == "" {
		return ""
	}
	return fmt.Sprintf("%d.%s", c.PlacedAt.UnixNano(), c.ID)
}

// ParseBetCursor decodes BetCursor.String; "" is the first page.
func ParseBetCursor(s string) (BetCursor, error) {
	if s == "" {
		return BetCursor{}, nil
	}
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" || len(id) > 64 {
		return BetCursor{}, buzzer.Errorf(buzzer.EINVALID, "cursor is malformed")
	}
	return BetCursor{PlacedAt: time.Unix(0, n).UTC(), ID: id}, nil
}

// legMultiplier is the exact return per unit stake of one settled leg, in
// Sportradar UOF terms: the void_factor share of the stake is refunded; the
// rest wins at price × dead_heat_factor or is lost. A void leg returns 1.
func legMultiplier(l Leg) *big.Rat {
	if l.Result == ResultVoid {
		return big.NewRat(1, 1)
	}
	v := l.VoidFactor.Rat()
	m := new(big.Rat).Set(v) // refunded share
	if l.Result == ResultWon {
		dh := l.DeadHeatFactor.Rat()
		if l.DeadHeatFactor == 0 {
			dh = big.NewRat(1, 1)
		}
		rest := new(big.Rat).Sub(big.NewRat(1, 1), v)
		rest.Mul(rest, l.Price.Rat())
		rest.Mul(rest, dh)
		m.Add(m, rest)
	}
	return m
}

// SettlementPayout returns what bet b returns given its legs' results, and
// whether it is settled: when every leg has a result, or as soon as one leg
// returns nothing (a lost leg makes an accumulator lost). The amount is
// floor(stake × Π leg multipliers), rounded down to the minor unit in the
// house's favour, exactly like buzzer.Payout.
func SettlementPayout(b *Bet) (buzzer.Amount, bool, error) {
	r := new(big.Rat).SetInt64(int64(b.Stake))
	complete := true
	for _, l := range b.Legs {
		if l.ResultVersion == 0 {
			complete = false
			continue
		}
		m := legMultiplier(l)
		if m.Sign() == 0 {
			return 0, true, nil
		}
		r.Mul(r, m)
	}
	if !complete {
		return 0, false, nil
	}
	q := new(big.Int).Quo(r.Num(), r.Denom())
	if !q.IsInt64() {
		return 0, false, buzzer.Errorf(buzzer.EINTERNAL, "payout of bet %s overflows", b.ID)
	}
	return buzzer.Amount(q.Int64()), true, nil
}
