package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// WalletStore keeps the wallet's ledger, bets and idempotency keys in the
// embedded SQLite database (component "wallet" migrations). Times are stored
// as Unix microseconds, the precision the wallet keeps.
type WalletStore struct {
	db *DB
}

var _ wallet.Store = (*WalletStore)(nil)

// NewWalletStore returns the wallet store over db.
func NewWalletStore(db *DB) *WalletStore { return &WalletStore{db: db} }

// InTx implements wallet.Store: SQLite's single writer (BEGIN IMMEDIATE)
// makes every transaction serializable.
func (s *WalletStore) InTx(ctx context.Context, fn func(wallet.Tx) error) error {
	return s.db.InTx(ctx, func(tx *sql.Tx) error { return fn(walletTx{tx, s.db.stmts}) })
}

type walletTx struct {
	tx    *sql.Tx
	stmts *stmtCache
}

func us(t time.Time) int64     { return t.UnixMicro() }
func fromUS(v int64) time.Time { return time.UnixMicro(v).UTC() }
func (t walletTx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	st, err := t.prepare(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (t walletTx) prepare(ctx context.Context, q string) (*sql.Stmt, error) {
	return t.stmts.prepare(ctx, t.tx, q)
}

// The statements a group commit runs once per member; ApplyBatch prepares
// each once per batch.
const (
	insertKeySQL = `INSERT INTO wallet_idempotency_keys
		(player_id, key, fingerprint, state, owner, locked_until, status, body, effect_id, created_at, expires_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)
		ON CONFLICT (player_id, key) DO NOTHING`
	updateKeySQL = `UPDATE wallet_idempotency_keys SET fingerprint=$3, state=$4, owner=$5, locked_until=$6,
		status=$7, body=$8, effect_id=$9, created_at=$10, expires_at=$11 WHERE player_id=$1 AND key=$2`
	insertTxnSQL = `INSERT INTO wallet_transactions (id, kind, player_id, reference, effect_key, created_at,
			decision_jurisdiction, decision_token_hash, decision_at, decision_source) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`
	insertPostingSQL = `INSERT INTO wallet_postings (account_id, txn_id, owner, amount, created_at) VALUES ($1,$2,$3,$4,$5)`
	upsertAccountSQL = `INSERT INTO wallet_accounts (id, owner, jurisdiction, currency, kind, bucket, balance)
			VALUES ($1,$2,$3,$4,$5,$6,$7)
			ON CONFLICT (id) DO UPDATE SET balance = wallet_accounts.balance + excluded.balance
			RETURNING balance`
)

// keyArgs are the arguments of insertKeySQL and updateKeySQL.
func keyArgs(k *wallet.KeyRecord) []any {
	return []any{k.Player, k.Key, k.Fingerprint, string(k.State), k.Owner, us(k.LockedUntil), k.Status, k.Body, k.EffectID, us(k.CreatedAt), us(k.ExpiresAt)}
}

// txnArgs are the arguments of insertTxnSQL.
func txnArgs(txn *wallet.Transaction) []any {
	dj, dh, da, ds := decisionCols(txn.Decision)
	return []any{txn.ID, string(txn.Kind), txn.Player, txn.Reference, txn.EffectKey, us(txn.CreatedAt), dj, dh, da, ds}
}

// accountArgs are the arguments of upsertAccountSQL: add delta to account
// id (k), creating it with that balance.
func accountArgs(id string, k wallet.AccountKey, delta int64) []any {
	return []any{id, k.Owner, k.Jurisdiction, string(k.Currency), string(k.Kind), k.Bucket, delta}
}

func (t walletTx) InsertKey(ctx context.Context, k *wallet.KeyRecord) (bool, error) {
	res, err := t.exec(ctx, insertKeySQL, keyArgs(k)...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (t walletTx) GetKey(ctx context.Context, player, key string) (*wallet.KeyRecord, error) {
	k := &wallet.KeyRecord{Player: player, Key: key}
	var state string
	var locked, created, expires int64
	err := t.tx.QueryRowContext(ctx, `SELECT fingerprint, state, owner, locked_until, status, body, effect_id, created_at, expires_at
		FROM wallet_idempotency_keys WHERE player_id = $1 AND key = $2`, player, key).
		Scan(&k.Fingerprint, &state, &k.Owner, &locked, &k.Status, &k.Body, &k.EffectID, &created, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	k.State = wallet.KeyState(state)
	k.LockedUntil, k.CreatedAt, k.ExpiresAt = fromUS(locked), fromUS(created), fromUS(expires)
	return k, nil
}

func (t walletTx) UpdateKey(ctx context.Context, k *wallet.KeyRecord) error {
	res, err := t.exec(ctx, updateKeySQL, keyArgs(k)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no such idempotency key")
	}
	return nil
}

func (t walletTx) DeleteKey(ctx context.Context, player, key, owner string) error {
	_, err := t.exec(ctx, `DELETE FROM wallet_idempotency_keys WHERE player_id=$1 AND key=$2 AND owner=$3`, player, key, owner)
	return err
}

func (t walletTx) PurgeKeys(ctx context.Context, before time.Time, limit int) (int, error) {
	res, err := t.exec(ctx, `DELETE FROM wallet_idempotency_keys WHERE rowid IN (
		SELECT rowid FROM wallet_idempotency_keys WHERE expires_at < $1 LIMIT $2)`, us(before), limit)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// LockAccounts does nothing: an IMMEDIATE transaction already holds
// SQLite's single write lock.
func (t walletTx) LockAccounts(context.Context, []wallet.AccountKey) error { return nil }

func (t walletTx) ApplyTransaction(ctx context.Context, txn *wallet.Transaction) ([]buzzer.Amount, error) {
	if _, err := t.exec(ctx, insertTxnSQL, txnArgs(txn)...); err != nil {
		return nil, err
	}
	out := make([]buzzer.Amount, len(txn.Postings))
	for i, p := range txn.Postings {
		k := p.Account
		id := k.ID()
		if _, err := t.exec(ctx, insertPostingSQL, id, txn.ID, k.Owner, int64(p.Amount), us(txn.CreatedAt)); err != nil {
			return nil, err
		}
		var bal int64
		if err := t.tx.QueryRowContext(ctx, upsertAccountSQL, accountArgs(id, k, int64(p.Amount))...).Scan(&bal); err != nil {
			return nil, err
		}
		out[i] = buzzer.Amount(bal)
	}
	return out, nil
}

func (t walletTx) Balance(ctx context.Context, k wallet.AccountKey) (buzzer.Amount, error) {
	var bal int64
	err := t.tx.QueryRowContext(ctx, `SELECT balance FROM wallet_accounts WHERE id = $1`, k.ID()).Scan(&bal)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return buzzer.Amount(bal), err
}

func (t walletTx) Accounts(ctx context.Context, owner string) ([]wallet.Account, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT id, balance FROM wallet_accounts WHERE owner = $1 ORDER BY id`, owner)
	if err != nil {
		return nil, err
	}
	return scanAccounts(rows)
}

func scanAccounts(rows *sql.Rows) ([]wallet.Account, error) {
	defer rows.Close()
	var out []wallet.Account
	for rows.Next() {
		var id string
		var bal int64
		if err := rows.Scan(&id, &bal); err != nil {
			return nil, err
		}
		k, err := wallet.ParseAccountID(id)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored account id is malformed")
		}
		out = append(out, wallet.Account{AccountKey: k, Balance: buzzer.Amount(bal)})
	}
	return out, rows.Err()
}

func (t walletTx) Entries(ctx context.Context, owner string, before wallet.EntryCursor, limit int) ([]wallet.Entry, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT p.txn_id, t.kind, p.account_id, p.amount, t.reference, p.created_at,
			t.decision_jurisdiction, t.decision_token_hash, t.decision_at, t.decision_source
		FROM wallet_postings p JOIN wallet_transactions t ON t.id = p.txn_id
		WHERE p.owner = $1 AND ($2 = '' OR (p.created_at, p.txn_id) < ($3, $2))
		ORDER BY p.created_at DESC, p.txn_id DESC LIMIT $4`, owner, before.TransactionID, us(before.CreatedAt), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []wallet.Entry
	for rows.Next() {
		var e wallet.Entry
		var kind, account string
		var amount, at int64
		var dj, dh, ds sql.NullString
		var da sql.NullInt64
		if err := rows.Scan(&e.TransactionID, &kind, &account, &amount, &e.Reference, &at, &dj, &dh, &da, &ds); err != nil {
			return nil, err
		}
		e.Decision = scanDecision(dj, dh, da, ds)
		k, err := wallet.ParseAccountID(account)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored account id is malformed")
		}
		e.Kind, e.Account, e.Amount, e.Currency, e.CreatedAt = wallet.TxnKind(kind), k.Kind, buzzer.Amount(amount), k.Currency, fromUS(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (t walletTx) InsertBet(ctx context.Context, b *wallet.Bet) error {
	doc, err := json.Marshal(b)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode bet")
	}
	dj, dh, da, ds := decisionCols(b.Decision)
	if _, err := t.exec(ctx, `INSERT INTO wallet_bets (player_id, id, status, placed_at, doc,
			decision_jurisdiction, decision_token_hash, decision_at, decision_source) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		b.Player, b.ID, string(b.Status), us(b.PlacedAt), string(doc), dj, dh, da, ds); err != nil {
		return err
	}
	for _, l := range b.Legs {
		if _, err := t.exec(ctx, `INSERT INTO wallet_bet_legs (market_id, bet_id, player_id, result_version) VALUES ($1,$2,$3,$4)`,
			l.MarketID, b.ID, b.Player, l.ResultVersion); err != nil {
			return err
		}
	}
	return nil
}

func (t walletTx) GetBet(ctx context.Context, player, id string) (*wallet.Bet, error) {
	var doc string
	err := t.tx.QueryRowContext(ctx, `SELECT doc FROM wallet_bets WHERE player_id = $1 AND id = $2`, player, id).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeBet(doc)
}

func decodeBet(doc string) (*wallet.Bet, error) {
	var b wallet.Bet
	if err := json.Unmarshal([]byte(doc), &b); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored bet is corrupt")
	}
	return &b, nil
}

func (t walletTx) UpdateBet(ctx context.Context, b *wallet.Bet) error {
	doc, err := json.Marshal(b)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode bet")
	}
	res, err := t.exec(ctx, `UPDATE wallet_bets SET status = $3, doc = $4 WHERE player_id = $1 AND id = $2`, b.Player, b.ID, string(b.Status), string(doc))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no bet %s", b.ID)
	}
	for _, l := range b.Legs {
		if _, err := t.exec(ctx, `UPDATE wallet_bet_legs SET result_version = $3 WHERE market_id = $1 AND bet_id = $2`, l.MarketID, b.ID, l.ResultVersion); err != nil {
			return err
		}
	}
	return nil
}

func (t walletTx) ListBets(ctx context.Context, player string, status wallet.BetStatus, before wallet.BetCursor, limit int) ([]*wallet.Bet, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT doc FROM wallet_bets
		WHERE player_id = $1 AND ($2 = '' OR status = $2) AND ($3 = '' OR (placed_at, id) < ($4, $3))
		ORDER BY placed_at DESC, id DESC LIMIT $5`, player, string(status), before.ID, us(before.PlacedAt), limit)
	if err != nil {
		return nil, err
	}
	return scanBets(rows, nil)
}

func scanBets(rows *sql.Rows, fn func(*wallet.Bet) error) ([]*wallet.Bet, error) {
	defer rows.Close()
	var out []*wallet.Bet
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		b, err := decodeBet(doc)
		if err != nil {
			return nil, err
		}
		if fn != nil {
			if err := fn(b); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

func (t walletTx) PendingBets(ctx context.Context, market string, version int64, limit int) ([]wallet.BetRef, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT player_id, bet_id FROM wallet_bet_legs
		WHERE market_id = $1 AND result_version < $2 ORDER BY result_version, bet_id LIMIT $3`, market, version, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []wallet.BetRef
	for rows.Next() {
		var r wallet.BetRef
		if err := rows.Scan(&r.Player, &r.BetID); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (t walletTx) GetMarketResult(ctx context.Context, market string) (*wallet.MarketResult, error) {
	r := &wallet.MarketResult{MarketID: market}
	var outcomes string
	var done, at int64
	err := t.tx.QueryRowContext(ctx, `SELECT result_version, fingerprint, outcomes, settled_by, done, updated_at
		FROM wallet_market_results WHERE market_id = $1`, market).
		Scan(&r.ResultVersion, &r.Fingerprint, &outcomes, &r.SettledBy, &done, &at)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(outcomes), &r.Outcomes); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "stored market result is corrupt")
	}
	r.Done, r.UpdatedAt = done != 0, fromUS(at)
	return r, nil
}

func (t walletTx) PutMarketResult(ctx context.Context, r *wallet.MarketResult) error {
	outcomes, err := json.Marshal(r.Outcomes)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode outcomes")
	}
	done := 0
	if r.Done {
		done = 1
	}
	_, err = t.exec(ctx, `INSERT INTO wallet_market_results (market_id, result_version, fingerprint, outcomes, settled_by, done, updated_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7)
		ON CONFLICT (market_id) DO UPDATE SET result_version = excluded.result_version, fingerprint = excluded.fingerprint,
			outcomes = excluded.outcomes, settled_by = excluded.settled_by, done = excluded.done, updated_at = excluded.updated_at`,
		r.MarketID, r.ResultVersion, r.Fingerprint, string(outcomes), r.SettledBy, done, us(r.UpdatedAt))
	return err
}

func (t walletTx) UnfinishedMarketResults(ctx context.Context, limit int) ([]string, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT market_id FROM wallet_market_results WHERE done = 0 ORDER BY market_id LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var m string
		if err := rows.Scan(&m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t walletTx) ScanAccounts(ctx context.Context, fn func(wallet.Account) error) error {
	rows, err := t.tx.QueryContext(ctx, `SELECT id, balance FROM wallet_accounts`)
	if err != nil {
		return err
	}
	as, err := scanAccounts(rows)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

func (t walletTx) PostingSums(ctx context.Context) (map[string]buzzer.Amount, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT account_id, sum(amount) FROM wallet_postings GROUP BY account_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]buzzer.Amount{}
	for rows.Next() {
		var id string
		var sum int64
		if err := rows.Scan(&id, &sum); err != nil {
			return nil, err
		}
		out[id] = buzzer.Amount(sum)
	}
	return out, rows.Err()
}

func (t walletTx) DuplicateEffects(ctx context.Context) (map[string]int, error) {
	rows, err := t.tx.QueryContext(ctx, `SELECT effect_key, count(*) FROM wallet_transactions GROUP BY effect_key HAVING count(*) > 1`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = int(n)
	}
	return out, rows.Err()
}

func (t walletTx) ScanBets(ctx context.Context, fn func(*wallet.Bet) error) error {
	rows, err := t.tx.QueryContext(ctx, `SELECT doc FROM wallet_bets`)
	if err != nil {
		return err
	}
	_, err = scanBets(rows, fn)
	return err
}
