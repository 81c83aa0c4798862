package main

import (
	"context"
	"fmt"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/toggle"
	"github.com/buzzer-bet/buzzer/wallet"
)

// livePrices gives the wallet the odds engine's current state as its price
// source: a bet is accepted against exactly what the engine would publish.
type livePrices struct {
	engine *odds.Engine
	// inPlayDelay is how long an in-play bet waits before it is re-checked
	// against the then-current price (wallet applies it).
	inPlayDelay time.Duration
	// toggles pause bet acceptance at run time (bets.accept, bets.in_play).
	toggles *toggle.Set
}

var _ wallet.PriceSource = livePrices{}

// Quote refuses while an operator has paused betting: the wallet asks only
// for a new bet (a resent key replays its answer without a quote), so a
// pause never turns an accepted bet into a refusal.
func (p livePrices) Quote(_ context.Context, eventID, marketID, selectionID string) (wallet.Quote, error) {
	if !p.toggles.Enabled(toggle.BetsAccept) {
		return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "Betting is paused by the operator; nothing was placed. Try again shortly.").WithReason("betting_paused")
	}
	q, err := p.engine.Quote(eventID, marketID, selectionID)
	if err != nil {
		return wallet.Quote{}, err
	}
	if q.InPlay && !p.toggles.Enabled(toggle.BetsInPlay) {
		return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "In-play betting is paused by the operator; nothing was placed.").WithReason("in_play_paused")
	}
	var st wallet.MarketStatus
	switch q.Status {
	case odds.Open:
		st = wallet.MarketOpen
	case odds.Suspended:
		st = wallet.MarketSuspended
	case odds.Closed:
		st = wallet.MarketClosed
	case odds.Settled:
		st = wallet.MarketSettled
	default:
		return wallet.Quote{}, buzzer.Errorf(buzzer.EINTERNAL, "odds engine reported unknown market status %q", q.Status)
	}
	out := wallet.Quote{
		EventID: eventID, MarketID: marketID, SelectionID: selectionID,
		Price: q.Price, Status: st, OddsVersion: int64(q.Version), InPlay: q.InPlay,
		// The per-event delta sequence is the position on the odds stream the
		// price was read at: every acceptance traces back to its delta.
		FeedPosition: fmt.Sprintf("%s@%d", eventID, q.Version),
	}
	if q.InPlay {
		out.BetDelay = p.inPlayDelay
	}
	return out, nil
}
