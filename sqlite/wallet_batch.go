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
	ctx, err := unwatched(ctx)
	if err != nil {
		return nil, err
	}
	ins, err := t.prepare(ctx, insertKeySQL)
	if err != nil {
		return nil, err
	}
	defer ins.Close()
	out := make([]*wallet.KeyRecord, len(recs))
	for i, k := range recs {
		res, err := ins.ExecContext(ctx, keyArgs(k)...)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n == 1 {
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
	ctx, err := unwatched(ctx)
	if err != nil {
		return nil, err
	}
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
	ctx, err := unwatched(ctx)
	if err != nil {
		return nil, err
	}
	sel, err := t.prepare(ctx, `SELECT balance FROM wallet_accounts WHERE id = $1`)
	if err != nil {
		return nil, err
	}
	defer sel.Close()
	out := map[string]buzzer.Amount{}
	for _, k := range keys {
		id := k.ID()
		if _, done := out[id]; done {
			continue
		}
		var bal int64
		err := sel.QueryRowContext(ctx, id).Scan(&bal)
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

// ApplyBatch writes a group commit's members as ApplyTransaction, InsertBet
// and UpdateKey would one at a time, with each statement prepared once per
// batch (parsing SQL was most of a batch's cost) and each account's balance
// updated once with the sum of its postings: the house buckets that every
// member posts to take one write per batch, not one per member. The
// wallet checked every member's balances in posting order before this, so
// the sums leave the same balances as the postings applied one by one.
func (t walletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	ctx, err := unwatched(ctx)
	if err != nil {
		return err
	}
	if len(txns) > 0 {
		if err := t.applyTransactions(ctx, txns); err != nil {
			return err
		}
	}
	for _, b := range bets {
		if err := t.InsertBet(ctx, b); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	upd, err := t.prepare(ctx, updateKeySQL)
	if err != nil {
		return err
	}
	defer upd.Close()
	for _, k := range keys {
		res, err := upd.ExecContext(ctx, keyArgs(k)...)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return buzzer.Errorf(buzzer.ENOTFOUND, "no such idempotency key")
		}
	}
	return nil
}

func (t walletTx) applyTransactions(ctx context.Context, txns []*wallet.Transaction) error {
	insTxn, err := t.prepare(ctx, insertTxnSQL)
	if err != nil {
		return err
	}
	defer insTxn.Close()
	insPosting, err := t.prepare(ctx, insertPostingSQL)
	if err != nil {
		return err
	}
	defer insPosting.Close()
	type delta struct {
		k      wallet.AccountKey
		amount int64
	}
	var order []string
	deltas := map[string]*delta{}
	for _, txn := range txns {
		if _, err := insTxn.ExecContext(ctx, txnArgs(txn)...); err != nil {
			return err
		}
		for _, p := range txn.Postings {
			id := p.Account.ID()
			if _, err := insPosting.ExecContext(ctx, id, txn.ID, p.Account.Owner, int64(p.Amount), us(txn.CreatedAt)); err != nil {
				return err
			}
			d := deltas[id]
			if d == nil {
				d = &delta{k: p.Account}
				deltas[id] = d
				order = append(order, id)
			}
			d.amount += int64(p.Amount)
		}
	}
	upsert, err := t.prepare(ctx, upsertAccountSQL)
	if err != nil {
		return err
	}
	defer upsert.Close()
	for _, id := range order {
		d := deltas[id]
		var bal int64
		if err := upsert.QueryRowContext(ctx, accountArgs(id, d.k, d.amount)...).Scan(&bal); err != nil {
			return err
		}
	}
	return nil
}
