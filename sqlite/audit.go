package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"

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
	tx    *sql.Tx
	clock buzzer.Clock
	stmts *stmtCache
	// next and insert are Write's statements, prepared on its first call
	// and closed with tx: a group commit writes a record per member.
	next, insert *sql.Stmt
}

// NewOutbox returns the outbox of tx. Records without a time are stamped
// with the system clock.
func NewOutbox(tx *sql.Tx) *Outbox { return &Outbox{tx: tx, clock: buzzer.SystemClock{}} }

// Outbox returns the outbox of tx, a transaction of db, with db's
// statements kept prepared across transactions.
func (db *DB) Outbox(tx *sql.Tx) *Outbox {
	return &Outbox{tx: tx, clock: buzzer.SystemClock{}, stmts: db.stmts}
}

// WriteOutbox captures recs inside tx (see audit.Outbox.Write).
func WriteOutbox(ctx context.Context, tx *sql.Tx, recs ...*audit.Record) error {
	return NewOutbox(tx).Write(ctx, recs...)
}

// LastSeq implements audit.Outbox.
func (o *Outbox) LastSeq(ctx context.Context, jurisdiction string, c audit.Component, key string) (uint64, error) {
	r := audit.Record{Jurisdiction: jurisdiction, Component: c, Key: key}
	var seq int64
	err := o.tx.QueryRowContext(ctx, `SELECT seq FROM audit_sequences WHERE stream_key = $1`, r.StreamKey()).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return uint64(seq), nil
}

// Write implements audit.Outbox: each record takes the next sequence of its
// stream key and is inserted pending. SQLite has one writer at a time, so
// per-key order is commit order. A run of records with one stream key (a
// table's events) moves its counter once.
func (o *Outbox) Write(ctx context.Context, recs ...*audit.Record) error {
	ctx, err := unwatched(ctx)
	if err != nil {
		return err
	}
	if o.next == nil {
		next, err := o.stmts.prepare(ctx, o.tx, `INSERT INTO audit_sequences (stream_key, seq) VALUES ($1, $2)
			ON CONFLICT (stream_key) DO UPDATE SET seq = audit_sequences.seq + $2 RETURNING seq`)
		if err != nil {
			return err
		}
		insert, err := o.stmts.prepare(ctx, o.tx, `INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at)
			VALUES ($1, $2, $3, $4, $5, $6)`)
		if err != nil {
			next.Close()
			return err
		}
		o.next, o.insert = next, insert
	}
	for len(recs) > 0 {
		key := recs[0].StreamKey()
		n := 1
		for n < len(recs) && recs[n].StreamKey() == key {
			n++
		}
		var last int64
		if err := o.next.QueryRowContext(ctx, key, n).Scan(&last); err != nil {
			return err
		}
		// Read the clock after the counter row is ours: a later sequence of
		// the key then never gets an earlier capture time, which keeps the
		// relay's oldest-first order in sequence order per key.
		now := o.clock.Now()
		for i, r := range recs[:n] {
			seq := last - int64(n-1-i)
			data, err := audit.Prepare(r, uint64(seq), now)
			if err != nil {
				return err
			}
			if _, err := o.insert.ExecContext(ctx, key, seq, r.ID, r.Jurisdiction, data, us(now)); err != nil {
				return err
			}
		}
		recs = recs[n:]
	}
	return nil
}

// AuditedWalletStore is the wallet store with capture: every ledger
// transaction, bet placement, bet settlement and new market result is
// written to the audit outbox in the same transaction as the change.
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
	return s.db.InTx(ctx, func(tx *sql.Tx) error {
		return fn(auditedWalletTx{walletTx: walletTx{tx, s.db.stmts}, ob: s.db.Outbox(tx), jurisdiction: s.jurisdiction})
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
// ApplyTransaction and InsertBet do one at a time.
func (t auditedWalletTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	ctx, err := unwatched(ctx)
	if err != nil {
		return err
	}
	if err := t.walletTx.ApplyBatch(ctx, txns, bets, keys); err != nil {
		return err
	}
	for _, txn := range txns {
		if err := audit.CaptureTransaction(ctx, t.ob, txn); err != nil {
			return err
		}
	}
	for _, b := range bets {
		if err := audit.CaptureBetPlaced(ctx, t.ob, b); err != nil {
			return err
		}
	}
	return nil
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

// AuditOutbox is the outbox as audit.Relay drains it.
type AuditOutbox struct{ db *DB }

// NewAuditOutbox returns the relay's view of db's outbox.
func NewAuditOutbox(db *DB) *AuditOutbox { return &AuditOutbox{db: db} }

func outboxErr(err error) error {
	if err == nil {
		return nil
	}
	var be *buzzer.Error
	if errors.As(err, &be) {
		return err
	}
	return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the audit outbox is unavailable")
}

// Pending implements audit.CaptureStore.
func (o *AuditOutbox) Pending(ctx context.Context, limit int) ([]audit.Captured, error) {
	rows, err := o.db.SQL.QueryContext(ctx, `SELECT rowid, stream_key, seq, id, jurisdiction, record, captured_at, resends FROM audit_outbox
		WHERE stream_seq IS NULL ORDER BY captured_at, stream_key, seq LIMIT $1`, limit)
	if err != nil {
		return nil, outboxErr(err)
	}
	defer rows.Close()
	var out []audit.Captured
	for rows.Next() {
		var c audit.Captured
		var seq, at int64
		if err := rows.Scan(&c.Ref, &c.StreamKey, &seq, &c.ID, &c.Jurisdiction, &c.Data, &at, &c.Resends); err != nil {
			return nil, outboxErr(err)
		}
		c.Seq, c.CapturedAt = uint64(seq), fromUS(at)
		out = append(out, c)
	}
	return out, outboxErr(rows.Err())
}

// MarkSent implements audit.CaptureStore.
func (o *AuditOutbox) MarkSent(ctx context.Context, ps []audit.Published) error {
	if len(ps) == 0 {
		return nil
	}
	var lowestNew uint64
	for _, p := range ps {
		if !p.Duplicate && (lowestNew == 0 || p.StreamSeq < lowestNew) {
			lowestNew = p.StreamSeq
		}
	}
	return outboxErr(o.db.InTx(ctx, func(tx *sql.Tx) error {
		if lowestNew > 0 {
			// Numbers the stream gives out again: what it held there is gone.
			if _, err := tx.ExecContext(ctx, `UPDATE audit_outbox SET stream_seq = NULL, resends = resends + 1 WHERE stream_seq >= $1`, int64(lowestNew)); err != nil {
				return err
			}
		}
		// By rowid (Pending's Ref): the outbox has no index by stream key
		// (migration audit/0002). The key and sequence must still match.
		st, err := o.db.stmts.prepare(ctx, tx, `UPDATE audit_outbox SET stream_seq = $4 WHERE rowid = $1 AND stream_key = $2 AND seq = $3`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, p := range ps {
			if p.Ref <= 0 {
				return buzzer.Errorf(buzzer.EINTERNAL, "audit record %s#%d was not read from this outbox (no row reference)", p.StreamKey, p.Seq)
			}
			if _, err := st.ExecContext(ctx, p.Ref, p.StreamKey, int64(p.Seq), int64(p.StreamSeq)); err != nil {
				return err
			}
		}
		return nil
	}))
}

// Release implements audit.CaptureStore.
func (o *AuditOutbox) Release(ctx context.Context, p audit.Progress) (deleted, resent int, err error) {
	err = o.db.InTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_outbox WHERE stream_seq >= $1 AND stream_seq <= $2`, int64(p.First), int64(p.Archived))
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		deleted = int(n)
		res, err = tx.ExecContext(ctx, `UPDATE audit_outbox SET stream_seq = NULL, resends = resends + 1
			WHERE stream_seq IS NOT NULL AND (stream_seq > $1 OR stream_seq < $2)`, int64(p.Last), int64(p.First))
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		resent = int(n)
		return nil
	})
	return deleted, resent, outboxErr(err)
}

// Backlog implements audit.CaptureStore.
func (o *AuditOutbox) Backlog(ctx context.Context) (audit.Backlog, error) {
	var b audit.Backlog
	var oldest sql.NullInt64
	if err := o.db.SQL.QueryRowContext(ctx, `SELECT count(*), min(captured_at) FROM audit_outbox`).Scan(&b.Records, &oldest); err != nil {
		return b, outboxErr(err)
	}
	if oldest.Valid {
		b.Oldest = fromUS(oldest.Int64)
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

// ReadState implements audit.StateReader from one transaction.
func (s *AuditState) ReadState(ctx context.Context) (audit.State, error) {
	st := audit.State{Balances: map[string]buzzer.Amount{}, Bets: map[string]audit.BetState{}, Markets: map[string]int64{}}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, balance FROM wallet_accounts`)
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
		rows, err = tx.QueryContext(ctx, `SELECT doc FROM wallet_bets`)
		if err != nil {
			return err
		}
		if _, err := scanBets(rows, func(b *wallet.Bet) error {
			st.Bets[b.ID] = audit.BetState{Player: b.Player, Currency: b.Currency, Stake: b.Stake, Status: string(b.Status), Payout: b.Payout}
			return nil
		}); err != nil {
			return err
		}
		rows, err = tx.QueryContext(ctx, `SELECT market_id, result_version FROM wallet_market_results`)
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
		return audit.State{}, outboxErr(err)
	}
	return st, nil
}

// AuditBacklog returns how many captured changes are still in the outbox,
// so `audit replay` can say that the archive is behind rather than wrong.
func (s *AuditState) AuditBacklog(ctx context.Context) (audit.Backlog, error) {
	return NewAuditOutbox(s.db).Backlog(ctx)
}

// AdoptStreamCursors moves the numbering of jurisdiction's audit streams of
// component c to db from src, the outbox that captured them until now:
// every such stream key whose sequence counter src holds higher than db
// (or db lacks) gets src's, so db's next record of that key follows src's
// last one and the stream stays dense. Records already in src's outbox stay
// there for src's relay. It is safe to run on every start (db's own
// counters only move up) and reads only that range of src's counter key,
// however many other streams src numbers; it reports how many counters it
// moved.
func (db *DB) AdoptStreamCursors(ctx context.Context, src *DB, jurisdiction string, c audit.Component) (int, error) {
	if !c.Valid() || jurisdiction == "" || strings.Contains(jurisdiction, "/") {
		return 0, buzzer.Errorf(buzzer.EINVALID, "cannot adopt the streams of jurisdiction %q, component %q", jurisdiction, c)
	}
	// Stream keys are jurisdiction/component/key: the component's keys are
	// the range [prefix, prefix with its closing '/' raised to '0').
	prefix := jurisdiction + "/" + string(c) + "/"
	rows, err := src.SQL.QueryContext(ctx, `SELECT stream_key, seq FROM audit_sequences
		WHERE stream_key >= $1 AND stream_key < $2`, prefix, prefix[:len(prefix)-1]+"0")
	if err != nil {
		return 0, outboxErr(err)
	}
	type cursor struct {
		key string
		seq int64
	}
	var cs []cursor
	for rows.Next() {
		var k cursor
		if err := rows.Scan(&k.key, &k.seq); err != nil {
			rows.Close()
			return 0, outboxErr(err)
		}
		cs = append(cs, k)
	}
	if err := rows.Err(); err != nil {
		return 0, outboxErr(err)
	}
	moved := 0
	err = db.InTx(ctx, func(tx *sql.Tx) error {
		moved = 0
		for _, k := range cs {
			res, err := tx.ExecContext(ctx, `INSERT INTO audit_sequences (stream_key, seq) VALUES ($1, $2)
				ON CONFLICT (stream_key) DO UPDATE SET seq = excluded.seq WHERE excluded.seq > audit_sequences.seq`, k.key, k.seq)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n > 0 {
				moved++
			}
		}
		return nil
	})
	return moved, outboxErr(err)
}
