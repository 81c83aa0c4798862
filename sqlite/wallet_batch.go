package sqlite

import (
	"context"
	"database/sql"
	"errors"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// The group-commit half of the wallet store. SQLite runs in the process, so
// a statement per row costs no round trip; what a group commit saves here
// is the commit (one fsync) per request.

// decisionCols splits a decision into its nullable columns.
func decisionCols(d *wallet.Decision) (jur, hash, at, src any) {
	if d == nil {
		return nil, nil, nil, nil
	}
	return d.Jurisdiction, d.TokenHash, us(d.DecidedAt), d.Source
}

// scanDecision rebuilds a decision from its nullable columns.
func scanDecision(jur, hash sql.NullString, at sql.NullInt64, src sql.NullString) *wallet.Decision {
	if !jur.Valid || !hash.Valid || !at.Valid || !src.Valid {
		return nil
	}
	return &wallet.Decision{Jurisdiction: jur.String, TokenHash: hash.String, DecidedAt: fromUS(at.Int64), Source: src.String}
}

func (t walletTx) ClaimKeys(ctx context.Context, recs []*wallet.KeyRecord) ([]*wallet.KeyRecord, error) {
	out := make([]*wallet.KeyRecord, len(recs))
	for i, k := range recs {
		ok, err := t.InsertKey(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = k
			continue
		}
		if out[i], err = t.GetKey(ctx, k.Player, k.Key); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t walletTx) MarketResults(ctx context.Context, markets []string) (map[string]*wallet.MarketResult, error) {
	out := map[string]*wallet.MarketResult{}
	for _, m := range markets {
		if _, done := out[m]; done {
			continue
		}
		r, err := t.GetMarketResult(ctx, m)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[m] = r
		}
	}
	return out, nil
}

// LockBalances reads the balances; the IMMEDIATE transaction already holds
// SQLite's single write lock.
func (t walletTx) LockBalances(ctx context.Context, keys []wallet.AccountKey) (map[string]buzzer.Amount, error) {
	out := map[string]buzzer.Amount{}
	for _, k := range keys {
		id := k.ID()
		if _, done := out[id]; done {
			continue
		}
		var bal int64
		err := t.tx.QueryRowContext(ctx, `SELECT balance FROM wallet_accounts WHERE id = $1`, id).Scan(&bal)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[id] = buzzer.Amount(bal)
	}
	return out, nil
}

func (t walletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	for _, txn := range txns {
		if _, err := t.ApplyTransaction(ctx, txn); err != nil {
			return err
		}
	}
	for _, b := range bets {
		if err := t.InsertBet(ctx, b); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := t.UpdateKey(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
