package wallet

import (
	"context"
	"strconv"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// SettledByFeed is the settler recorded when the odds feed settles a market.
const SettledByFeed = "feed"

// SettleReport says what one SettleMarket call did.
type SettleReport struct {
	MarketID      string `json:"market_id"`
	ResultVersion int64  `json:"result_version"`
	// Bets is how many bets this call brought to the result.
	Bets    int  `json:"bets"`
	Batches int  `json:"batches"`
	Done    bool `json:"done"`
}

// SettleMarket records the market's result at req.ResultVersion (who gave it
// is settledBy: an operator ID or SettledByFeed) and brings every bet with a
// leg on the market to it, SettleBatch bets per transaction. It is
// idempotent per (market, result_version): repeating a finished version does
// nothing, repeating an interrupted one resumes it. A higher version
// resettles: each bet's earlier settlement is reversed and the new one
// applied in one ledger transaction. A lower version is refused.
func (s *Service) SettleMarket(ctx context.Context, marketID string, req SettleRequest, settledBy string) (*SettleReport, error) {
	if err := validID(marketID); err != nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "market id is invalid")
	}
	if settledBy == "" || len(settledBy) > 128 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "the settler must be named")
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	fp, err := Fingerprint("settle "+marketID, req)
	if err != nil {
		return nil, err
	}
	ctx = context.WithoutCancel(ctx)
	err = s.store.InTx(ctx, func(tx Tx) error {
		r, err := tx.GetMarketResult(ctx, marketID)
		if err != nil {
			return err
		}
		if r != nil {
			switch {
			case req.ResultVersion < r.ResultVersion:
				return buzzer.Errorf(buzzer.ECONFLICT, "Market %s is already at result version %d.", marketID, r.ResultVersion).WithReason("stale_result_version")
			case req.ResultVersion == r.ResultVersion && r.Fingerprint != fp:
				return buzzer.Errorf(buzzer.EUNPROCESSABLE, "Result version %d of market %s was given with other outcomes.", r.ResultVersion, marketID).WithReason("result_version_reused")
			case req.ResultVersion == r.ResultVersion:
				return nil
			}
		}
		return tx.PutMarketResult(ctx, &MarketResult{MarketID: marketID, ResultVersion: req.ResultVersion, Fingerprint: fp,
			Outcomes: req.Outcomes, SettledBy: settledBy, UpdatedAt: s.now()})
	})
	if err != nil {
		return nil, err
	}
	return s.resume(ctx, marketID, req.ResultVersion)
}

// ResumeSettlements finishes every settlement a crash interrupted. Call it
// at start-up (and it is safe to call at any time).
func (s *Service) ResumeSettlements(ctx context.Context) error {
	for {
		var ms []string
		err := s.store.InTx(ctx, func(tx Tx) error {
			var err error
			ms, err = tx.UnfinishedMarketResults(ctx, 100)
			return err
		})
		if err != nil {
			return err
		}
		if len(ms) == 0 {
			return nil
		}
		for _, m := range ms {
			var v int64
			err := s.store.InTx(ctx, func(tx Tx) error {
				r, err := tx.GetMarketResult(ctx, m)
				if r != nil {
					v = r.ResultVersion
				}
				return err
			})
			if err != nil {
				return err
			}
			if _, err := s.resume(ctx, m, v); err != nil && buzzer.ErrorReason(err) != "stale_result_version" {
				return err
			}
		}
	}
}

func (s *Service) resume(ctx context.Context, marketID string, version int64) (*SettleReport, error) {
	rep := &SettleReport{MarketID: marketID, ResultVersion: version}
	for {
		var n int
		err := s.store.InTx(ctx, func(tx Tx) error {
			n = 0
			r, err := tx.GetMarketResult(ctx, marketID)
			if err != nil {
				return err
			}
			if r == nil || r.ResultVersion != version {
				return buzzer.Errorf(buzzer.ECONFLICT, "Market %s moved to another result version.", marketID).WithReason("stale_result_version")
			}
			if r.Done {
				rep.Done = true
				return nil
			}
			refs, err := tx.PendingBets(ctx, marketID, version, s.cfg.SettleBatch)
			if err != nil {
				return err
			}
			now := s.now()
			if len(refs) == 0 {
				r.Done, r.UpdatedAt = true, now
				rep.Done = true
				return tx.PutMarketResult(ctx, r)
			}
			bets := make([]*Bet, 0, len(refs))
			for _, ref := range refs {
				b, err := tx.GetBet(ctx, ref.Player, ref.BetID)
				if err != nil {
					return err
				}
				if b == nil {
					return buzzer.Errorf(buzzer.EINTERNAL, "bet %s is indexed but missing", ref.BetID)
				}
				bets = append(bets, b)
			}
			// A batch posts to many players and house buckets; taking every
			// lock it can need up front, in the global order, keeps it from
			// deadlocking with bets placed meanwhile.
			// One revenue and one payouts bucket per batch, picked at random,
			// spread batches over the buckets while keeping the lock set small.
			hb := houseBuckets{revenue: s.bucket(s.newID()), payouts: s.bucket(s.newID())}
			if err := tx.LockAccounts(ctx, s.settlementAccounts(bets, hb)); err != nil {
				return err
			}
			for _, b := range bets {
				if err := s.settleBet(ctx, tx, r, b, hb, now); err != nil {
					return err
				}
			}
			n = len(refs)
			return nil
		})
		if err != nil {
			return rep, err
		}
		if rep.Done {
			return rep, nil
		}
		rep.Bets += n
		rep.Batches++
	}
}

// settleBet brings one bet's leg on r's market to r and moves the money
// difference between the bet's old and new settlement.
// houseBuckets are the revenue and payouts buckets one settlement batch posts to.
type houseBuckets struct{ revenue, payouts int }

// settlementAccounts lists every account a settlement batch can post to:
// each player's cash and receivable, each bet's stakes-held bucket, and the
// batch's revenue and payouts buckets.
func (s *Service) settlementAccounts(bets []*Bet, hb houseBuckets) []AccountKey {
	seen := map[string]bool{}
	var keys []AccountKey
	add := func(k AccountKey) {
		if id := k.ID(); !seen[id] {
			seen[id] = true
			keys = append(keys, k)
		}
	}
	for _, b := range bets {
		add(s.playerAccount(b.Player, b.Currency, KindCash))
		add(s.playerAccount(b.Player, b.Currency, KindReceivable))
		add(s.houseAccount(b.Currency, KindStakesHeld, b.StakeBucket))
		add(s.houseAccount(b.Currency, KindRevenue, hb.revenue))
		add(s.houseAccount(b.Currency, KindPayouts, hb.payouts))
	}
	return keys
}

func (s *Service) settleBet(ctx context.Context, tx Tx, r *MarketResult, b *Bet, hb houseBuckets, now time.Time) error {
	oldSettled, oldPayout := b.Status == BetSettled, b.Payout
	for i := range b.Legs {
		l := &b.Legs[i]
		if l.MarketID != r.MarketID {
			continue
		}
		// A selection the result does not name is void: the stake of that
		// leg is refunded rather than guessed lost.
		o := Outcome{SelectionID: l.SelectionID, Result: ResultVoid, VoidFactor: FactorOne, DeadHeatFactor: FactorOne}
		for _, c := range r.Outcomes {
			if c.SelectionID == l.SelectionID {
				o = c
			}
		}
		l.ResultVersion, l.Result, l.VoidFactor, l.DeadHeatFactor = r.ResultVersion, o.Result, o.VoidFactor, o.DeadHeatFactor
	}
	payout, settled, err := SettlementPayout(b)
	if err != nil {
		return err
	}
	var ps []Posting
	held := s.houseAccount(b.Currency, KindStakesHeld, b.StakeBucket)
	id := s.newID()
	revenue := s.houseAccount(b.Currency, KindRevenue, hb.revenue)
	payouts := s.houseAccount(b.Currency, KindPayouts, hb.payouts)
	var delta buzzer.Amount // to the player
	if oldSettled {
		ps = append(ps, Posting{held, b.Stake}, Posting{revenue, -b.Stake}, Posting{payouts, oldPayout})
		delta -= oldPayout
	}
	if settled {
		ps = append(ps, Posting{held, -b.Stake}, Posting{revenue, b.Stake}, Posting{payouts, -payout})
		delta += payout
	}
	if delta != 0 {
		more, err := s.playerDelta(ctx, tx, b.Player, b.Currency, delta)
		if err != nil {
			return err
		}
		ps = append(ps, more...)
	}
	b.SettledBy = r.SettledBy
	if settled {
		b.Status, b.Payout = BetSettled, payout
		t := now
		b.SettledAt = &t
	} else {
		b.Status, b.Payout, b.SettledAt = BetOpen, 0, nil
	}
	if ps = netPostings(ps); len(ps) > 0 {
		t := &Transaction{ID: id, Kind: TxnBetSettled, Player: b.Player, Reference: b.ID, CreatedAt: now, Postings: ps,
			EffectKey: "settle/" + r.MarketID + "/" + strconv.FormatInt(r.ResultVersion, 10) + "/" + b.ID}
		if _, err := s.apply(ctx, tx, t); err != nil {
			return err
		}
	}
	return tx.UpdateBet(ctx, b)
}

// playerDelta moves delta to a player. A debit larger than the cash balance
// (a resettlement taking back winnings already withdrawn) takes what cash
// there is and books the rest as the player's receivable; a credit first
// repays any receivable.
func (s *Service) playerDelta(ctx context.Context, tx Tx, player string, c buzzer.Currency, delta buzzer.Amount) ([]Posting, error) {
	cash := s.playerAccount(player, c, KindCash)
	recv := s.playerAccount(player, c, KindReceivable)
	if delta < 0 {
		bal, err := tx.Balance(ctx, cash)
		if err != nil {
			return nil, err
		}
		if bal >= -delta {
			return []Posting{{cash, delta}}, nil
		}
		return []Posting{{cash, -bal}, {recv, delta + bal}}, nil
	}
	owed, err := tx.Balance(ctx, recv)
	if err != nil {
		return nil, err
	}
	if owed < 0 {
		repay := min(delta, -owed)
		return []Posting{{recv, repay}, {cash, delta - repay}}, nil
	}
	return []Posting{{cash, delta}}, nil
}
