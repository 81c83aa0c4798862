package wallet

import (
	"context"
	"fmt"
	"sort"

	"github.com/buzzer-bet/buzzer"
)

// CheckReport is the ledger checker's verdict.
type CheckReport struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems,omitempty"`
	// Truncated says more problems were found than are listed.
	Truncated bool `json:"truncated,omitempty"`
	Accounts  int  `json:"accounts"`
	Bets      int  `json:"bets"`
	// Totals is Σ postings per currency; every one must be zero.
	Totals map[buzzer.Currency]buzzer.Amount `json:"totals"`
}

const maxProblems = 100

func (r *CheckReport) fail(format string, args ...any) {
	r.OK = false
	if len(r.Problems) >= maxProblems {
		r.Truncated = true
		return
	}
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// Check verifies the ledger's invariants in one transaction of store:
// Σ postings is zero per currency; every account's balance equals the sum of
// its postings; no balance breaks its kind's sign rule; no effect key (an
// idempotency key, or a settlement of one bet at one result version) has
// more than one transaction; every stakes-held bucket equals the stakes of
// the open bets placed through it; and every settled bet's payout is what
// its legs' results give; and no leg lags behind a market whose
// settlement finished. A failed check is a report with OK false, not an
// error; errors are for a store that could not be read.
func Check(ctx context.Context, store Store) (*CheckReport, error) {
	var rep *CheckReport
	err := store.InTx(ctx, func(tx Tx) error {
		rep = &CheckReport{OK: true, Totals: map[buzzer.Currency]buzzer.Amount{}}
		sums, err := tx.PostingSums(ctx)
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		held := map[string]buzzer.Amount{} // stakes-held account ID -> balance
		err = tx.ScanAccounts(ctx, func(a Account) error {
			rep.Accounts++
			id := a.ID()
			seen[id] = true
			if s := sums[id]; s != a.Balance {
				rep.fail("account %s: balance %d but its postings sum to %d", id, a.Balance, s)
			}
			if a.Balance < 0 && !a.Kind.AllowsNegative() {
				rep.fail("account %s: balance %d is negative", id, a.Balance)
			}
			if a.Balance > 0 && !a.Kind.AllowsPositive() {
				rep.fail("account %s: balance %d is positive", id, a.Balance)
			}
			if a.Kind == KindStakesHeld {
				held[id] = a.Balance
			}
			return nil
		})
		if err != nil {
			return err
		}
		ids := make([]string, 0, len(sums))
		for id := range sums {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			k, err := ParseAccountID(id)
			if err != nil {
				rep.fail("posting to malformed account %q", id)
				continue
			}
			rep.Totals[k.Currency] += sums[id]
			if !seen[id] {
				rep.fail("account %s has postings (sum %d) but no balance row", id, sums[id])
			}
		}
		for c, t := range rep.Totals {
			if t != 0 {
				rep.fail("postings in %s sum to %d, not zero", c, t)
			}
		}
		dups, err := tx.DuplicateEffects(ctx)
		if err != nil {
			return err
		}
		keys := make([]string, 0, len(dups))
		for k := range dups {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			rep.fail("effect %q has %d transactions", k, dups[k])
		}
		openStakes := map[string]buzzer.Amount{}
		type legAt struct {
			bet     string
			version int64
		}
		legs := map[string][]legAt{} // market -> legs on it
		err = tx.ScanBets(ctx, func(b *Bet) error {
			rep.Bets++
			for _, l := range b.Legs {
				legs[l.MarketID] = append(legs[l.MarketID], legAt{b.ID, l.ResultVersion})
			}
			if b.Status == BetOpen {
				k := AccountKey{Owner: HouseOwner, Jurisdiction: b.Jurisdiction, Currency: b.Currency, Kind: KindStakesHeld, Bucket: b.StakeBucket}
				openStakes[k.ID()] += b.Stake
				return nil
			}
			p, settled, err := SettlementPayout(b)
			if err != nil || !settled || p != b.Payout {
				rep.fail("bet %s: settled with payout %d but its legs give %d (complete %v)", b.ID, b.Payout, p, settled)
			}
			return nil
		})
		if err != nil {
			return err
		}
		markets := make([]string, 0, len(legs))
		for m := range legs {
			markets = append(markets, m)
		}
		sort.Strings(markets)
		for _, m := range markets {
			r, err := tx.GetMarketResult(ctx, m)
			if err != nil {
				return err
			}
			if r == nil || !r.Done {
				continue
			}
			for _, l := range legs[m] {
				if l.version != r.ResultVersion {
					rep.fail("bet %s: its leg on market %s is at result version %d but the market finished settling version %d", l.bet, m, l.version, r.ResultVersion)
				}
			}
		}
		for id := range held {
			if _, ok := openStakes[id]; !ok {
				openStakes[id] = 0
			}
		}
		hids := make([]string, 0, len(openStakes))
		for id := range openStakes {
			hids = append(hids, id)
		}
		sort.Strings(hids)
		for _, id := range hids {
			if held[id] != openStakes[id] {
				rep.fail("account %s holds %d but its open bets staked %d", id, held[id], openStakes[id])
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// Check runs the ledger checker on the service's store.
func (s *Service) Check(ctx context.Context) (*CheckReport, error) { return Check(ctx, s.store) }
