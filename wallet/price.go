package wallet

import (
	"context"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// MarketStatus is a market's trading state as the price source sees it.
type MarketStatus string

const (
	MarketOpen      MarketStatus = "open"
	MarketSuspended MarketStatus = "suspended"
	MarketClosed    MarketStatus = "closed"
	MarketSettled   MarketStatus = "settled"
)

// Quote is the current state of one selection, as bets are accepted against.
type Quote struct {
	EventID     string
	MarketID    string
	SelectionID string
	Price       buzzer.Price
	Status      MarketStatus
	// OddsVersion is the market's odds version the price belongs to.
	OddsVersion int64
	// FeedPosition is the odds pipeline's position (stream sequence) the
	// state was read at; empty until a live pipeline feeds the source.
	FeedPosition string
	InPlay       bool
	// BetDelay is how long an in-play bet waits before it is re-checked and
	// accepted (zero for pre-match markets).
	BetDelay time.Duration
}

// PriceSource gives the current price of a selection. It returns ENOTFOUND
// for an unknown event, market or selection, or a selection not in that
// market of that event.
type PriceSource interface {
	Quote(ctx context.Context, eventID, marketID, selectionID string) (Quote, error)
}
