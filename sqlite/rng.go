package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
)

// RNGStore keeps the RNG's Merkle log (records, stored hashes, signed
// checkpoints) in the embedded SQLite store.
type RNGStore struct {
	db *DB
}

var _ rng.Store = (*RNGStore)(nil)

// NewRNGStore returns the RNG log store over db (migrated with component "rng").
func NewRNGStore(db *DB) *RNGStore { return &RNGStore{db: db} }

// rngErr translates SQLite errors by result code; *buzzer.Error passes through.
func rngErr(err error, msg string) error {
	var be *buzzer.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &be):
		return err
	case IsUniqueViolation(err):
		return buzzer.Wrap(err, buzzer.ECONFLICT, "the RNG log already has this entry")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "The store did not answer in time.")
	default:
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "%s", msg)
	}
}

// Append implements rng.Store: the size check, the records and the hashes
// commit in one IMMEDIATE transaction, so an append is all or nothing.
func (s *RNGStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	if err := rng.CheckAppend(oldSize, records, hashes); err != nil {
		return err
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error { return appendRNG(ctx, tx, oldSize, records, hashes) })
	return rngErr(err, "appending to the RNG log failed")
}

// appendRNG appends inside tx (arguments checked by rng.CheckAppend); the
// audited store adds its capture to the same transaction.
func appendRNG(ctx context.Context, tx *sql.Tx, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	ids := make([]string, len(records))
	for i, r := range records {
		u, err := uuid.Parse(r.ID)
		if err != nil {
			return buzzer.Errorf(buzzer.EINVALID, "draw id %q is not a UUID", r.ID)
		}
		ids[i] = u.String()
	}
	base := tlog.StoredHashCount(oldSize)
	newSize := oldSize + int64(len(records))
	res, err := tx.ExecContext(ctx, `UPDATE rng_tree SET size = ?2 WHERE id = 1 AND size = ?1`, oldSize, newSize)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n != 1 {
		return buzzer.Errorf(buzzer.ECONFLICT, "the RNG log is not at size %d", oldSize)
	}
	rec, err := tx.PrepareContext(ctx, `INSERT INTO rng_records (idx, draw_id, data) VALUES (?, ?, ?)`)
	if err != nil {
		return err
	}
	defer rec.Close()
	for i, r := range records {
		if _, err := rec.ExecContext(ctx, r.Index, ids[i], r.Data); err != nil {
			return err
		}
	}
	hs, err := tx.PrepareContext(ctx, `INSERT INTO rng_hashes (idx, hash) VALUES (?, ?)`)
	if err != nil {
		return err
	}
	defer hs.Close()
	for i, h := range hashes {
		if _, err := hs.ExecContext(ctx, base+int64(i), h[:]); err != nil {
			return err
		}
	}
	return nil
}

// TreeSize implements rng.Store.
func (s *RNGStore) TreeSize(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.SQL.QueryRowContext(ctx, `SELECT size FROM rng_tree WHERE id = 1`).Scan(&n)
	return n, rngErr(err, "reading the RNG log size failed")
}

// ReadHashes implements rng.Store. The indexes travel as one JSON array, so
// a large request needs no statement with thousands of parameters.
func (s *RNGStore) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return []tlog.Hash{}, nil
	}
	arg, _ := json.Marshal(indexes)
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT idx, hash FROM rng_hashes WHERE idx IN (SELECT value FROM json_each(?))`, string(arg))
	if err != nil {
		return nil, rngErr(err, "reading RNG log hashes failed")
	}
	defer rows.Close()
	got := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var i int64
		var h []byte
		if err := rows.Scan(&i, &h); err != nil {
			return nil, rngErr(err, "reading RNG log hashes failed")
		}
		if len(h) != tlog.HashSize {
			return nil, buzzer.Errorf(buzzer.EINTERNAL, "stored hash %d has %d bytes", i, len(h))
		}
		got[i] = tlog.Hash(h)
	}
	if err := rows.Err(); err != nil {
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
	err = s.db.SQL.QueryRowContext(ctx, `SELECT idx, data FROM rng_records WHERE draw_id = ?`, r.ID).Scan(&r.Index, &r.Data)
	if errors.Is(err, sql.ErrNoRows) {
		return rng.StoredRecord{}, buzzer.Errorf(buzzer.ENOTFOUND, "no draw %s", id)
	}
	return r, rngErr(err, "reading an RNG record failed")
}

// Records implements rng.Store.
func (s *RNGStore) Records(ctx context.Context, from int64, limit int) ([]rng.StoredRecord, error) {
	if from < 0 || limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "records need from >= 0 and limit > 0")
	}
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT idx, draw_id, data FROM rng_records WHERE idx >= ? ORDER BY idx LIMIT ?`, from, limit)
	if err != nil {
		return nil, rngErr(err, "reading RNG records failed")
	}
	defer rows.Close()
	var out []rng.StoredRecord
	for rows.Next() {
		var r rng.StoredRecord
		if err := rows.Scan(&r.Index, &r.ID, &r.Data); err != nil {
			return nil, rngErr(err, "reading RNG records failed")
		}
		out = append(out, r)
	}
	return out, rngErr(rows.Err(), "reading RNG records failed")
}

// SaveCheckpoint implements rng.Store.
func (s *RNGStore) SaveCheckpoint(ctx context.Context, c rng.SavedCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return buzzer.Errorf(buzzer.EINVALID, "checkpoint needs a size and a note")
	}
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO rng_checkpoints (size, note, issued_at) VALUES (?, ?, ?)`, c.Size, c.Note, c.Time.UnixMicro())
		return err
	})
	if IsUniqueViolation(err) {
		return buzzer.Wrap(err, buzzer.ECONFLICT, "a checkpoint of size %d is already stored", c.Size)
	}
	return rngErr(err, "saving an RNG checkpoint failed")
}

// LatestCheckpoint implements rng.Store.
func (s *RNGStore) LatestCheckpoint(ctx context.Context) (rng.SavedCheckpoint, error) {
	var c rng.SavedCheckpoint
	var us int64
	err := s.db.SQL.QueryRowContext(ctx, `SELECT size, note, issued_at FROM rng_checkpoints ORDER BY size DESC LIMIT 1`).Scan(&c.Size, &c.Note, &us)
	if errors.Is(err, sql.ErrNoRows) {
		return rng.SavedCheckpoint{}, buzzer.Errorf(buzzer.ENOTFOUND, "no RNG checkpoint stored")
	}
	c.Time = time.UnixMicro(us).UTC()
	return c, rngErr(err, "reading the latest RNG checkpoint failed")
}

// Checkpoints implements rng.Store.
func (s *RNGStore) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]rng.SavedCheckpoint, error) {
	if limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "checkpoints need limit > 0")
	}
	rows, err := s.db.SQL.QueryContext(ctx, `SELECT size, note, issued_at FROM rng_checkpoints WHERE size >= ? ORDER BY size LIMIT ?`, fromSize, limit)
	if err != nil {
		return nil, rngErr(err, "reading RNG checkpoints failed")
	}
	defer rows.Close()
	var out []rng.SavedCheckpoint
	for rows.Next() {
		var c rng.SavedCheckpoint
		var us int64
		if err := rows.Scan(&c.Size, &c.Note, &us); err != nil {
			return nil, rngErr(err, "reading RNG checkpoints failed")
		}
		c.Time = time.UnixMicro(us).UTC()
		out = append(out, c)
	}
	return out, rngErr(rows.Err(), "reading RNG checkpoints failed")
}
