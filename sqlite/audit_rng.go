package sqlite

import (
	"context"
	"database/sql"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/rng"
)

var _ rng.Store = (*AuditedRNGStore)(nil)

// AuditedRNGStore is the RNG log store with capture: every append writes
// one rng.draw record per draw (audit.RNGDrawRecords: id, index, leaf hash,
// purpose, reference; never the values) to the audit outbox in the same
// transaction as the draws, so a logged draw is never missing from the
// archive and an unlogged one never in it.
type AuditedRNGStore struct {
	*RNGStore
	jurisdiction string
	log          string
	clock        buzzer.Clock
}

// NewAuditedRNGStore returns the capturing RNG store over db (migrated with
// components "rng" and "audit"). jurisdiction is the node's; log names the
// RNG log in the archive and must be the RNG service's origin
// (rng.Config.Origin), which is how `audit replay` finds the log to compare.
func NewAuditedRNGStore(db *DB, jurisdiction, log string) *AuditedRNGStore {
	return &AuditedRNGStore{RNGStore: NewRNGStore(db), jurisdiction: jurisdiction, log: log, clock: buzzer.SystemClock{}}
}

// Append implements rng.Store: the draws and their audit records commit
// together. Draws appended while capture was off are captured first, in the
// same transaction, so the archive always holds the log from index 0.
func (s *AuditedRNGStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	if err := rng.CheckAppend(oldSize, records, hashes); err != nil {
		return err
	}
	// Built before the transaction: the encoding is most of the capture's
	// cost and need not hold SQLite's one writer.
	recs, err := audit.RNGDrawRecords(s.jurisdiction, s.log, records)
	if err != nil {
		return err
	}
	now := s.clock.Now()
	data := make([][]byte, len(recs))
	for i, r := range recs {
		if data[i], err = audit.Prepare(r, r.Seq, now); err != nil {
			return err
		}
	}
	err = s.db.InTx(ctx, func(tx *sql.Tx) error {
		if err := appendRNG(ctx, tx, oldSize, records, hashes); err != nil {
			return err
		}
		return s.capture(ctx, tx, oldSize, recs, data, now)
	})
	return rngErr(err, "appending to the RNG log failed")
}

// capture writes recs (encoded as data) after any draws the capture
// missed, which it reads back from the log and captures first.
func (s *AuditedRNGStore) capture(ctx context.Context, tx *sql.Tx, oldSize int64, recs []*audit.Record, data [][]byte, now time.Time) error {
	last, err := NewOutbox(tx).LastSeq(ctx, s.jurisdiction, audit.ComponentRNG, s.log)
	if err != nil {
		return err
	}
	from, err := audit.RNGCaptureFrom(last, oldSize)
	if err != nil {
		return err
	}
	if from < oldSize {
		rows, err := tx.QueryContext(ctx, `SELECT idx, draw_id, data FROM rng_records WHERE idx >= ? AND idx < ? ORDER BY idx`, from, oldSize)
		if err != nil {
			return err
		}
		var earlier []rng.StoredRecord
		for rows.Next() {
			var r rng.StoredRecord
			if err := rows.Scan(&r.Index, &r.ID, &r.Data); err != nil {
				rows.Close()
				return err
			}
			earlier = append(earlier, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if int64(len(earlier)) != oldSize-from {
			return buzzer.Errorf(buzzer.EINTERNAL, "the RNG log is missing records between %d and %d", from, oldSize)
		}
		missed, err := audit.RNGDrawRecords(s.jurisdiction, s.log, earlier)
		if err != nil {
			return err
		}
		enc := make([][]byte, len(missed))
		for i, r := range missed {
			if enc[i], err = audit.Prepare(r, r.Seq, now); err != nil {
				return err
			}
		}
		recs, data = append(missed, recs...), append(enc, data...)
	}
	key := recs[0].StreamKey()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at) VALUES (?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for i, r := range recs {
		if _, err := ins.ExecContext(ctx, key, int64(r.Seq), r.ID, s.jurisdiction, data[i], us(now)); err != nil {
			return err
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_sequences (stream_key, seq) VALUES (?, ?)
		ON CONFLICT (stream_key) DO UPDATE SET seq = excluded.seq`, key, int64(recs[len(recs)-1].Seq))
	return err
}
