package postgres

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/rng"
)

var _ rng.Store = (*AuditedRNGStore)(nil)

// AuditedRNGStore is the RNG log store with capture: every append writes
// one rng.draw record per draw (audit.RNGDrawRecords: id, index, leaf hash,
// purpose, reference; never the values) to the audit outbox in the same
// SERIALIZABLE transaction as the draws, so a logged draw is never missing
// from the archive and an unlogged one never in it.
type AuditedRNGStore struct {
	*RNGStore
	jurisdiction string
	log          string
	clock        buzzer.Clock
	// captured is the log size the outbox's sequence was at after this
	// store's last committed append (-1: unknown). When an append starts
	// there, the sequence check rides in the append's own pipelined batch.
	captured atomic.Int64
}

// NewAuditedRNGStore returns the capturing RNG store over db (migrated with
// components "rng" and "audit"). jurisdiction is the node's; log names the
// RNG log in the archive and must be the RNG service's origin
// (rng.Config.Origin), which is how `audit replay` finds the log to compare.
func NewAuditedRNGStore(db *DB, jurisdiction, log string) *AuditedRNGStore {
	s := &AuditedRNGStore{RNGStore: NewRNGStore(db), jurisdiction: jurisdiction, log: log, clock: buzzer.SystemClock{}}
	s.captured.Store(-1)
	return s
}

// Append implements rng.Store: the draws and their audit records commit
// together. Draws appended while capture was off are captured first, in the
// same transaction, so the archive always holds the log from index 0.
func (s *AuditedRNGStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	if err := rng.CheckAppend(oldSize, records, hashes); err != nil {
		return err
	}
	var known *pgx.Batch
	if s.captured.Load() == oldSize {
		// Built before the transaction: the encoding is most of the
		// capture's cost and need not hold the log's row lock.
		recs, err := audit.RNGDrawRecords(s.jurisdiction, s.log, records)
		if err != nil {
			return err
		}
		known = &pgx.Batch{}
		if err := queueRNGAppend(known, oldSize, records, hashes); err != nil {
			return err
		}
		if err := s.queueCapture(known, recs); err != nil {
			return err
		}
		key, newSize := recs[0].StreamKey(), oldSize+int64(len(records))
		if oldSize == 0 {
			known.Queue(`INSERT INTO audit_sequences (stream_key, seq) VALUES ($1, $2)`, key, newSize)
		} else {
			known.Queue(`UPDATE audit_sequences SET seq = $3 WHERE stream_key = $1 AND seq = $2`, key, oldSize, newSize)
		}
	}
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		if known != nil {
			return s.appendCaptured(ctx, tx, oldSize, known)
		}
		if err := appendRNG(ctx, tx, oldSize, records, hashes); err != nil {
			return err
		}
		return s.capture(ctx, tx, oldSize, records)
	})
	if err != nil {
		s.captured.Store(-1) // the outcome may be unknown: read the sequence next time
	} else {
		s.captured.Store(oldSize + int64(len(records)))
	}
	return rngErr(err, "appending to the RNG log failed")
}

// appendCaptured is the common case, the capture up to date with the log:
// b holds the append, the records and the checked sequence move (see
// Append), sent in one round trip.
func (s *AuditedRNGStore) appendCaptured(ctx context.Context, tx pgx.Tx, oldSize int64, b *pgx.Batch) error {
	br := tx.SendBatch(ctx, b)
	err := readRNGAppend(br, oldSize)
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err == nil && tag.RowsAffected() != 1 {
			err = buzzer.Errorf(buzzer.EINTERNAL, "the audit capture of RNG log %s is not at %d draws", s.log, oldSize).WithReason("audit_capture_out_of_order")
		}
	}
	if IsUniqueViolation(err, "audit_sequences_pkey") {
		err = buzzer.Wrap(err, buzzer.EINTERNAL, "the audit capture of RNG log %s is not at 0 draws", s.log).WithReason("audit_capture_out_of_order")
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// queueCapture queues the insert of recs (one stream key, in order) into
// the outbox.
func (s *AuditedRNGStore) queueCapture(b *pgx.Batch, recs []*audit.Record) error {
	now := s.clock.Now()
	seqs, ids, data := make([]int64, len(recs)), make([]string, len(recs)), make([][]byte, len(recs))
	for i, r := range recs {
		enc, err := audit.Prepare(r, r.Seq, now)
		if err != nil {
			return err
		}
		seqs[i], ids[i], data[i] = int64(r.Seq), r.ID, enc
	}
	b.Queue(`INSERT INTO audit_outbox (stream_key, seq, id, jurisdiction, record, captured_at)
		SELECT $1, u.s, u.i, $2, u.r, $3 FROM unnest($4::BIGINT[], $5::TEXT[], $6::BYTEA[]) AS u(s, i, r)`,
		recs[0].StreamKey(), s.jurisdiction, now, seqs, ids, data)
	return nil
}

func (s *AuditedRNGStore) capture(ctx context.Context, tx pgx.Tx, oldSize int64, records []rng.StoredRecord) error {
	last, err := NewOutbox(tx).LastSeq(ctx, s.jurisdiction, audit.ComponentRNG, s.log)
	if err != nil {
		return err
	}
	from, err := audit.RNGCaptureFrom(last, oldSize)
	if err != nil {
		return err
	}
	all := records
	if from < oldSize {
		rows, err := tx.Query(ctx, `SELECT idx, draw_id::TEXT, data FROM rng_records WHERE idx >= $1 AND idx < $2 ORDER BY idx`, from, oldSize)
		if err != nil {
			return err
		}
		var earlier []rng.StoredRecord
		var r rng.StoredRecord
		if _, err := pgx.ForEachRow(rows, []any{&r.Index, &r.ID, &r.Data}, func() error {
			earlier = append(earlier, rng.StoredRecord{Index: r.Index, ID: r.ID, Data: append([]byte(nil), r.Data...)})
			return nil
		}); err != nil {
			return err
		}
		if int64(len(earlier)) != oldSize-from {
			return buzzer.Errorf(buzzer.EINTERNAL, "the RNG log is missing records between %d and %d", from, oldSize)
		}
		all = append(earlier, records...)
	}
	recs, err := audit.RNGDrawRecords(s.jurisdiction, s.log, all)
	if err != nil {
		return err
	}
	key := recs[0].StreamKey()
	// One round trip: the records and the stream key's new sequence.
	var b pgx.Batch
	if err := s.queueCapture(&b, recs); err != nil {
		return err
	}
	b.Queue(`INSERT INTO audit_sequences (stream_key, seq) VALUES ($1, $2)
		ON CONFLICT (stream_key) DO UPDATE SET seq = EXCLUDED.seq`, key, int64(recs[len(recs)-1].Seq))
	br := tx.SendBatch(ctx, &b)
	_, err = br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}
