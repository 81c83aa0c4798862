package wallet

import (
	"context"
	"encoding/json"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// PlaceBet places a single or an accumulator for player under the
// idempotency key. Every leg's market must be open and unresulted and its
// current price must satisfy the request's price_change policy; the bet is
// accepted at the current prices and records each market's odds version and
// feed position. If any leg is in play, the bet waits the longest bet delay
// and is checked again before it is accepted.
func (s *Service) PlaceBet(ctx context.Context, player, key string, req PlaceBetRequest) (*Response, error) {
	if err := req.Validate(s.cfg.MaxLegs); err != nil {
		return nil, err
	}
	if req.Stake < s.cfg.MinStake || req.Stake > s.cfg.MaxStake {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "The stake must be between %d and %d minor units.", s.cfg.MinStake, s.cfg.MaxStake).WithReason("stake_limit")
	}
	decision, err := s.admit(req.Decision)
	if err != nil {
		return nil, err
	}
	req.Decision = decision
	fp, err := Fingerprint(RoutePlaceBet, req)
	if err != nil {
		return nil, err
	}
	// The delay is read before the key is claimed; an error here is not
	// returned, because a completed key must replay even if the market has
	// since closed. The effect quotes again and decides.
	var delay time.Duration
	if qs, err := s.quotes(ctx, req); err == nil {
		for _, q := range qs {
			if q.InPlay && q.BetDelay > delay {
				delay = q.BetDelay
			}
		}
	}
	markets := make([]string, len(req.Legs))
	for i, l := range req.Legs {
		markets[i] = l.MarketID
	}
	return s.execute(ctx, player, key, fp, delay, effect{markets: markets,
		plan: func(ctx context.Context, now time.Time, effectKey string, bucket func(string) int, results map[string]*MarketResult) (*plan, error) {
			return s.planBet(ctx, now, effectKey, bucket, results, player, req)
		}})
}

// quotes fetches and checks the current quote of every leg.
func (s *Service) quotes(ctx context.Context, req PlaceBetRequest) ([]Quote, error) {
	out := make([]Quote, len(req.Legs))
	for i, l := range req.Legs {
		q, err := s.prices.Quote(ctx, l.EventID, l.MarketID, l.SelectionID)
		if err != nil {
			if buzzer.ErrorCode(err) == buzzer.ENOTFOUND {
				return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "Leg %d refers to an unknown event, market or selection.", i+1).WithReason("unknown_selection")
			}
			return nil, err
		}
		if q.Status != MarketOpen {
			return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "The market of leg %d is %s.", i+1, q.Status).WithReason("market_not_open")
		}
		if !req.PriceChange.accepts(l.Price, q.Price) {
			return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "The price of leg %d changed to %s.", i+1, q.Price).WithReason("price_changed")
		}
		out[i] = q
	}
	return out, nil
}

// planBet prices the bet now and builds its placement; results holds the
// result records of the legs' markets (a resulted market takes no bets).
func (s *Service) planBet(ctx context.Context, now time.Time, effectKey string, bucket func(string) int, results map[string]*MarketResult, player string, req PlaceBetRequest) (*plan, error) {
	qs, err := s.quotes(ctx, req)
	if err != nil {
		return nil, err
	}
	prices := make([]buzzer.Price, len(qs))
	legs := make([]Leg, len(qs))
	for i, q := range qs {
		if results[q.MarketID] != nil || results[req.Legs[i].MarketID] != nil {
			return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "The market of leg %d is already resulted.", i+1).WithReason("market_not_open")
		}
		prices[i] = q.Price
		legs[i] = Leg{EventID: q.EventID, MarketID: q.MarketID, SelectionID: q.SelectionID, RequestedPrice: req.Legs[i].Price,
			Price: q.Price, OddsVersion: q.OddsVersion, FeedPosition: q.FeedPosition, InPlay: q.InPlay}
	}
	payout, err := buzzer.Payout(req.Stake, prices...)
	if err != nil || payout > s.cfg.MaxPayout {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "The potential payout is over the limit of %d minor units.", s.cfg.MaxPayout).WithReason("payout_limit")
	}
	id := s.newID()
	b := &Bet{ID: id, Player: player, Jurisdiction: s.cfg.Jurisdiction, Currency: req.Currency, Stake: req.Stake,
		PotentialPayout: payout, PriceChange: req.PriceChange, Legs: legs, Status: BetOpen, PlacedAt: now.UTC(),
		StakeBucket: bucket(id), PlacementTxn: s.newID(), Decision: req.Decision}
	t := &Transaction{ID: b.PlacementTxn, Kind: TxnBetPlaced, Player: player, Reference: id, EffectKey: effectKey, CreatedAt: now, Decision: req.Decision, Postings: []Posting{
		{Account: s.playerAccount(player, req.Currency, KindCash), Amount: -req.Stake},
		{Account: s.houseAccount(req.Currency, KindStakesHeld, b.StakeBucket), Amount: req.Stake},
	}}
	return &plan{txn: t, bet: b, answer: func([]buzzer.Amount) (int, []byte, error) {
		body, err := json.Marshal(b.View())
		if err != nil {
			return 0, nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the bet")
		}
		return 201, body, nil
	}}, nil
}

// Bet returns one of player's bets; another player's bet is ENOTFOUND.
func (s *Service) Bet(ctx context.Context, player, id string) (*Bet, error) {
	if validID(player) != nil || validID(id) != nil {
		return nil, buzzer.Errorf(buzzer.ENOTFOUND, "No such bet.")
	}
	var b *Bet
	err := s.store.InTx(ctx, func(tx Tx) error {
		var err error
		b, err = tx.GetBet(ctx, player, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if b == nil || b.Player != player {
		return nil, buzzer.Errorf(buzzer.ENOTFOUND, "No such bet.")
	}
	return b, nil
}

// Bets returns one page of player's bets newest first (status "" for all)
// and the next page's cursor ("" when there is none).
func (s *Service) Bets(ctx context.Context, player string, status BetStatus, cursor string, limit int) ([]*Bet, string, error) {
	if err := validID(player); err != nil {
		return nil, "", buzzer.Errorf(buzzer.EINVALID, "player id is invalid")
	}
	switch status {
	case "", BetOpen, BetSettled:
	default:
		return nil, "", buzzer.Errorf(buzzer.EINVALID, "status must be open or settled")
	}
	c, err := ParseBetCursor(cursor)
	if err != nil {
		return nil, "", err
	}
	limit = clampLimit(limit)
	var out []*Bet
	err = s.store.InTx(ctx, func(tx Tx) error {
		var err error
		out, err = tx.ListBets(ctx, player, status, c, limit+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[len(out)-1]
		next = BetCursor{PlacedAt: last.PlacedAt, ID: last.ID}.String()
	}
	return out, next, nil
}
