package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/wallet"
)

// The audit capture (component "audit" migrations): a transactional outbox
// written inside the transaction of every captured change, drained by
// audit.Relay through AuditOutbox, and AuditState for `audit replay`.
var (
	_ audit.Outbox       = (*Outbox)(nil)
	_ audit.CaptureStore = (*AuditOutbox)(nil)
	_ audit.StateReader  = (*AuditState)(nil)
	_ wallet.Store       = (*AuditedWalletStore)(nil)
)

// Outbox captures audit records inside one transaction: they commit or roll
// back with the change they describe.
type Outbox struct {
	tx    pgx.Tx
	clock buzzer.Clock
}

// NewOutbox returns the outbox of tx. Records without a time are stamped
// with the system clock.
func NewOutbox(tx pgx.Tx) *Outbox { return &Outbox{tx: tx, clock: buzzer.SystemClock{}} }

// WriteOutbox captures recs inside tx (see audit.Outbox.Write).
func WriteOutbox(ctx context.Context, tx pgx.Tx, recs ...*audit.Record) error {
	return NewOutbox(tx).Write(ctx, recs...)
}

// LastSeq implements audit.Outbox.
func (o *Outbox) LastSeq(ctx context.Context, jurisdiction string, c audit.Component, key string) (uint64, error) {
	r := audit.Record{Jurisdiction: jurisdiction, Component: c, Key: key}
	var seq int64
	err := o.tx.QueryRow(ctx, `SELECT seq FROM audit_sequences WHERE stream_key = $1`, r.StreamKey()).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// Write implements audit.Outbox: each record takes the next sequence of its
// stream key (the counter row is locked by the update until the
// transaction ends, so per-key order is commit order) and is inserted
// pending.
func (o *Outbox) Write(ctx context.Context, recs ...*audit.Record) error {
	for _, r := range recs {
		var seq int64
		if err := o.tx.QueryRow(ctx, `INSERT INTO audit_sequences (stream_key, seq) VALUES ($1, 1)
			ON CONFLICT (stream_key) DO UPDATE SET seq = audit_sequences.seq + 1 RETURNING seq`, r.StreamKey()).Scan(&seq); err != nil {
			return err
		}
		// Read the clock after the counter row is ours: a later sequence of
		// the key then never gets an earlier capture time, which keeps the
		// relay's oldest-first order in sequence order per key.
		now := o.clock.Now()
		data, err := audit.Prepare(r, uint64(seq), now)
		if err != nil {
			return err
		}
		if _, err := o.tx.Exec(ctx, `INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at)
			VALUES ($1, $2, $3, $4, $5, $6)`, r.StreamKey(), seq, r.ID, r.Jurisdiction, data, now); err != nil {
			return err
		}
	}
	return nil
}

// AuditedWalletStore is the wallet store with capture: every ledger
// transaction, bet placement, bet settlement and new market result is
// written to the audit outbox in the same SERIALIZABLE transaction as the
// change.
type AuditedWalletStore struct {
	db           *DB
	jurisdiction string
}

// NewAuditedWalletStore returns the capturing wallet store over db;
// jurisdiction is the wallet's (wallet.Config.Jurisdiction), recorded on
// market results, which name none.
func NewAuditedWalletStore(db *DB, jurisdiction string) *AuditedWalletStore {
	return &AuditedWalletStore{db: db, jurisdiction: jurisdiction}
}

// InTx implements wallet.Store.
func (s *AuditedWalletStore) InTx(ctx context.Context, fn func(wallet.Tx) error) error {
	return s.db.InTx(ctx, func(tx pgx.Tx) error {
		return fn(auditedWalletTx{walletTx: walletTx{tx}, ob: NewOutbox(tx), jurisdiction: s.jurisdiction})
	})
}

type auditedWalletTx struct {
	walletTx
	ob           *Outbox
	jurisdiction string
}

func (t auditedWalletTx) ApplyTransaction(ctx context.Context, txn *wallet.Transaction) ([]buzzer.Amount, error) {
	out, err := t.walletTx.ApplyTransaction(ctx, txn)
	if err != nil {
		return nil, err
	}
	return out, audit.CaptureTransaction(ctx, t.ob, txn)
}

// ApplyBatch captures every transaction and bet of a group commit, as
// ApplyTransaction and InsertBet do one at a time (the same records through
// the same counters, pipelined with the writes: see applyBatch).
func (t auditedWalletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	return t.walletTx.applyBatch(ctx, txns, bets, keys, true, false)
}

func (t auditedWalletTx) InsertBet(ctx context.Context, b *wallet.Bet) error {
	if err := t.walletTx.InsertBet(ctx, b); err != nil {
		return err
	}
	return audit.CaptureBetPlaced(ctx, t.ob, b)
}

func (t auditedWalletTx) UpdateBet(ctx context.Context, b *wallet.Bet) error {
	if err := t.walletTx.UpdateBet(ctx, b); err != nil {
		return err
	}
	return audit.CaptureBetUpdated(ctx, t.ob, b)
}

func (t auditedWalletTx) PutMarketResult(ctx context.Context, r *wallet.MarketResult) error {
	if err := t.walletTx.PutMarketResult(ctx, r); err != nil {
		return err
	}
	return audit.CaptureMarketResult(ctx, t.ob, t.jurisdiction, r)
}

// AuditOutbox is the outbox as audit.Relay drains it. Its statements run at
// READ COMMITTED: they take no serializable read locks on the outbox that
// would make concurrent bet transactions retry.
type AuditOutbox struct{ db *DB }

// NewAuditOutbox returns the relay's view of db's outbox.
func NewAuditOutbox(db *DB) *AuditOutbox { return &AuditOutbox{db: db} }

func (o *AuditOutbox) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, o.db.Pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the audit outbox is unavailable")
	}
	return nil
}

// Pending implements audit.CaptureStore.
func (o *AuditOutbox) Pending(ctx context.Context, limit int) ([]audit.Captured, error) {
	rows, err := o.db.Pool.Query(ctx, `SELECT stream_key, seq, id, jurisdiction, record, captured_at, resends FROM audit_outbox
		WHERE stream_seq IS NULL ORDER BY captured_at, stream_key, seq LIMIT $1`, limit)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit outbox")
	}
	defer rows.Close()
	var out []audit.Captured
	for rows.Next() {
		var c audit.Captured
		var seq int64
		if err := rows.Scan(&c.StreamKey, &seq, &c.ID, &c.Jurisdiction, &c.Data, &c.CapturedAt, &c.Resends); err != nil {
			return nil, err
		}
		c.Seq, c.CapturedAt = uint64(seq), c.CapturedAt.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// MarkSent implements audit.CaptureStore.
func (o *AuditOutbox) MarkSent(ctx context.Context, ps []audit.Published) error {
	if len(ps) == 0 {
		return nil
	}
	keys, seqs, sseqs := make([]string, len(ps)), make([]int64, len(ps)), make([]int64, len(ps))
	var lowestNew uint64
	for i, p := range ps {
		keys[i], seqs[i], sseqs[i] = p.StreamKey, int64(p.Seq), int64(p.StreamSeq)
		if !p.Duplicate && (lowestNew == 0 || p.StreamSeq < lowestNew) {
			lowestNew = p.StreamSeq
		}
	}
	return o.inTx(ctx, func(tx pgx.Tx) error {
		if lowestNew > 0 {
			// Numbers the stream gives out again: what it held there is gone.
			if _, err := tx.Exec(ctx, `UPDATE audit_outbox SET stream_seq = NULL, resends = resends + 1 WHERE stream_seq >= $1`, int64(lowestNew)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `UPDATE audit_outbox AS o SET stream_seq = u.ss
			FROM unnest($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS u(k, s, ss)
			WHERE o.stream_key = u.k AND o.seq = u.s`, keys, seqs, sseqs)
		return err
	})
}

// Release implements audit.CaptureStore.
func (o *AuditOutbox) Release(ctx context.Context, p audit.Progress) (deleted, resent int, err error) {
	err = o.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM audit_outbox WHERE stream_seq >= $1 AND stream_seq <= $2`, int64(p.First), int64(p.Archived))
		if err != nil {
			return err
		}
		deleted = int(tag.RowsAffected())
		tag, err = tx.Exec(ctx, `UPDATE audit_outbox SET stream_seq = NULL, resends = resends + 1
			WHERE stream_seq IS NOT NULL AND (stream_seq > $1 OR stream_seq < $2)`, int64(p.Last), int64(p.First))
		if err != nil {
			return err
		}
		resent = int(tag.RowsAffected())
		return nil
	})
	return deleted, resent, err
}

// Backlog implements audit.CaptureStore.
func (o *AuditOutbox) Backlog(ctx context.Context) (audit.Backlog, error) {
	var b audit.Backlog
	var oldest *time.Time
	if err := o.db.Pool.QueryRow(ctx, `SELECT count(*), min(captured_at) FROM audit_outbox`).Scan(&b.Records, &oldest); err != nil {
		return b, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit outbox")
	}
	if oldest != nil {
		b.Oldest = oldest.UTC()
	}
	return b, nil
}

// AuditState reads the state `audit replay` compares with the archive:
// every account balance, every bet and every market's result version. The
// RNG log is read by audit.RNGLogState and tables by audit.TableLogState.
type AuditState struct {
	db *DB
}

// NewAuditState returns the state reader over db.
func NewAuditState(db *DB) *AuditState { return &AuditState{db: db} }

// ReadState implements audit.StateReader from one consistent snapshot.
func (s *AuditState) ReadState(ctx context.Context) (audit.State, error) {
	st := audit.State{Balances: map[string]buzzer.Amount{}, Bets: map[string]audit.BetState{}, Markets: map[string]int64{}}
	err := pgx.BeginTxFunc(ctx, s.db.Pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id, balance FROM wallet_accounts`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var id string
			var bal int64
			if err := rows.Scan(&id, &bal); err != nil {
				rows.Close()
				return err
			}
			st.Balances[id] = buzzer.Amount(bal)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT doc FROM wallet_bets`)
		if err != nil {
			return err
		}
		if _, err := scanBets(rows, func(b *wallet.Bet) error {
			st.Bets[b.ID] = audit.BetState{Player: b.Player, Currency: b.Currency, Stake: b.Stake, Status: string(b.Status), Payout: b.Payout}
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT market_id, result_version FROM wallet_market_results`)
		if err != nil {
			return err
		}
		for rows.Next() {
			var m string
			var v int64
			if err := rows.Scan(&m, &v); err != nil {
				rows.Close()
				return err
			}
			st.Markets[m] = v
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return audit.State{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the store's state")
	}
	return st, nil
}

// AuditBacklog returns how many captured changes are still in the outbox,
// so `audit replay` can say that the archive is behind rather than wrong.
func (s *AuditState) AuditBacklog(ctx context.Context) (audit.Backlog, error) {
	return NewAuditOutbox(s.db).Backlog(ctx)
}
