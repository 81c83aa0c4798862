package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

// RNGStore keeps the RNG's Merkle log (records, stored hashes, signed
// checkpoints) in PostgreSQL or CockroachDB.
type RNGStore struct {
	db *DB
}

var _ rng.Store = (*RNGStore)(nil)

// NewRNGStore returns the RNG log store over db (migrated with component "rng").
func NewRNGStore(db *DB) *RNGStore { return &RNGStore{db: db} }

// Append implements rng.Store: the size check, the records and the hashes
// commit in one SERIALIZABLE transaction, so an append is all or nothing.
func (s *RNGStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	if err := rng.CheckAppend(oldSize, records, hashes); err != nil {
		return err
	}
	err := s.db.InTx(ctx, func(tx pgx.Tx) error { return appendRNG(ctx, tx, oldSize, records, hashes) })
	return rngErr(err, "appending to the RNG log failed")
}

// appendRNG appends inside tx (arguments checked by rng.CheckAppend); the
// audited store adds its capture to the same transaction.
func appendRNG(ctx context.Context, tx pgx.Tx, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	// The three statements travel in one pipelined batch: one round trip
	// between BEGIN and COMMIT.
	var b pgx.Batch
	if err := queueRNGAppend(&b, oldSize, records, hashes); err != nil {
		return err
	}
	br := tx.SendBatch(ctx, &b)
	err := readRNGAppend(br, oldSize)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// queueRNGAppend queues an append's three statements on b; readRNGAppend
// reads their results, in the same order.
func queueRNGAppend(b *pgx.Batch, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	idx := make([]int64, len(records))
	ids := make([]uuid.UUID, len(records))
	data := make([][]byte, len(records))
	for i, r := range records {
		id, err := uuid.Parse(r.ID)
		if err != nil {
			return buzzer.Errorf(buzzer.EINVALID, "draw id %q is not a UUID", r.ID)
		}
		idx[i], ids[i], data[i] = r.Index, id, r.Data
	}
	hidx := make([]int64, len(hashes))
	hval := make([][]byte, len(hashes))
	base := tlog.StoredHashCount(oldSize)
	for i := range hashes {
		hidx[i] = base + int64(i)
		hval[i] = hashes[i][:]
	}
	newSize := oldSize + int64(len(records))
	b.Queue(`UPDATE rng_tree SET size = $2 WHERE id AND size = $1`, oldSize, newSize)
	b.Queue(`INSERT INTO rng_records (idx, draw_id, data)
		SELECT * FROM unnest($1::BIGINT[], $2::UUID[], $3::BYTEA[])`, idx, ids, data)
	b.Queue(`INSERT INTO rng_hashes (idx, hash) SELECT * FROM unnest($1::BIGINT[], $2::BYTEA[])`, hidx, hval)
	return nil
}

func readRNGAppend(br pgx.BatchResults, oldSize int64) error {
	tag, err := br.Exec()
	if err == nil && tag.RowsAffected() != 1 {
		err = buzzer.Errorf(buzzer.ECONFLICT, "the RNG log is not at size %d", oldSize)
	}
	for i := 0; i < 2 && err == nil; i++ {
		_, err = br.Exec()
	}
	return err
}

// rngErr translates database errors by SQLSTATE/constraint; everything else
// passes through (already a *buzzer.Error) or becomes unavailable.
func rngErr(err error, msg string) error {
	var be *buzzer.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &be):
		return err
	case IsUniqueViolation(err, "rng_records_draw_id_key"):
		return buzzer.Wrap(err, buzzer.ECONFLICT, "a draw with this id is already logged")
	case IsUniqueViolation(err, ""):
		return buzzer.Wrap(err, buzzer.ECONFLICT, "the RNG log already has this entry")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "The store did not answer in time.")
	default:
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "%s", msg)
	}
}

// TreeSize implements rng.Store.
func (s *RNGStore) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.Pool.QueryRow(ctx, `SELECT size FROM rng_tree WHERE id`).Scan(&n)
	return n, rngErr(err, "reading the RNG log size failed")
}

// ReadHashes implements rng.Store.
func (s *RNGStore) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return []tlog.Hash{}, nil
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT idx, hash FROM rng_hashes WHERE idx = ANY($1::BIGINT[])`, indexes)
	if err != nil {
		return nil, rngErr(err, "reading RNG log hashes failed")
	}
	got := make(map[int64]tlog.Hash, len(indexes))
	var i int64
	var h []byte
	_, err = pgx.ForEachRow(rows, []any{&i, &h}, func() error {
		if len(h) != tlog.HashSize {
			return buzzer.Errorf(buzzer.EINTERNAL, "stored hash %d has %d bytes", i, len(h))
		}
		got[i] = tlog.Hash(h)
		return nil
	})
	if err != nil {
		return nil, rngErr(err, "reading RNG log hashes failed")
	}
	out := make([]tlog.Hash, len(indexes))
	for k, x := range indexes {
		v, ok := got[x]
		if !ok {
			return nil, buzzer.Errorf(buzzer.ENOTFOUND, "no stored hash %d in the RNG log", x)
		}
		out[k] = v
	}
	return out, nil
}

// RecordByID implements rng.Store.
func (s *RNGStore) RecordByID(ctx context.Context, id string) (rng.StoredRecord, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return rng.StoredRecord{}, buzzer.Errorf(buzzer.ENOTFOUND, "no draw %q", id)
	}
	r := rng.StoredRecord{ID: u.String()}
	err = s.db.Pool.QueryRow(ctx, `SELECT idx, data FROM rng_records WHERE draw_id = $1`, u).Scan(&r.Index, &r.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return rng.StoredRecord{}, buzzer.Errorf(buzzer.ENOTFOUND, "no draw %s", id)
	}
	return r, rngErr(err, "reading an RNG record failed")
}

// Records implements rng.Store.
func (s *RNGStore) Records(ctx context.Context, from int64, limit int) ([]rng.StoredRecord, error) {
	if from < 0 || limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "records need from >= 0 and limit > 0")
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT idx, draw_id::TEXT, data FROM rng_records
		WHERE idx >= $1 ORDER BY idx LIMIT $2`, from, limit)
	if err != nil {
		return nil, rngErr(err, "reading RNG records failed")
	}
	var out []rng.StoredRecord
	var r rng.StoredRecord
	_, err = pgx.ForEachRow(rows, []any{&r.Index, &r.ID, &r.Data}, func() error {
		out = append(out, rng.StoredRecord{Index: r.Index, ID: r.ID, Data: append([]byte(nil), r.Data...)})
		return nil
	})
	return out, rngErr(err, "reading RNG records failed")
}

// SaveCheckpoint implements rng.Store.
func (s *RNGStore) SaveCheckpoint(ctx context.Context, c rng.SavedCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return buzzer.Errorf(buzzer.EINVALID, "checkpoint needs a size and a note")
	}
	err := s.db.InTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO rng_checkpoints (size, note, issued_at) VALUES ($1, $2, $3)`, c.Size, c.Note, c.Time.UTC())
		return err
	})
	if IsUniqueViolation(err, "rng_checkpoints_pkey") {
		return buzzer.Wrap(err, buzzer.ECONFLICT, "a checkpoint of size %d is already stored", c.Size)
	}
	return rngErr(err, "saving an RNG checkpoint failed")
}

// LatestCheckpoint implements rng.Store.
func (s *RNGStore) LatestCheckpoint(ctx context.Context) (rng.SavedCheckpoint, error) {
	var c rng.SavedCheckpoint
	err := s.db.Pool.QueryRow(ctx, `SELECT size, note, issued_at FROM rng_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &c.Note, &c.Time)
	if errors.Is(err, pgx.ErrNoRows) {
		return rng.SavedCheckpoint{}, buzzer.Errorf(buzzer.ENOTFOUND, "no RNG checkpoint stored")
	}
	c.Time = c.Time.UTC()
	return c, rngErr(err, "reading the latest RNG checkpoint failed")
}

// Checkpoints implements rng.Store.
func (s *RNGStore) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]rng.SavedCheckpoint, error) {
	if limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "checkpoints need limit > 0")
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT size, note, issued_at FROM rng_checkpoints
		WHERE size >= $1 ORDER BY size LIMIT $2`, fromSize, limit)
	if err != nil {
		return nil, rngErr(err, "reading RNG checkpoints failed")
	}
	var out []rng.SavedCheckpoint
	var c rng.SavedCheckpoint
	var t time.Time
	_, err = pgx.ForEachRow(rows, []any{&c.Size, &c.Note, &t}, func() error {
		out = append(out, rng.SavedCheckpoint{Size: c.Size, Note: append([]byte(nil), c.Note...), Time: t.UTC()})
		return nil
	})
	return out, rngErr(err, "reading RNG checkpoints failed")
}
