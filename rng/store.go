package rng

import (
	"context"
	"time"

	"github.com/buzzer-bet/buzzer"

	"golang.org/x/mod/sumdb/tlog"
)

// Store persists one append-only log: the encoded records, the tlog stored
// hashes (tlog.StoredHashIndex numbering) and the signed checkpoints. It stores
// and returns bytes; all hashing and checking happens in this package, so a
// store needs no knowledge of Merkle trees. Implementations: postgres.RNGStore,
// sqlite.RNGStore; rngtest.RunStoreTests is the conformance suite.
type Store interface {
	// Append atomically appends records (indexes oldSize, oldSize+1, ...) and
	// hashes (stored-hash indexes tlog.StoredHashCount(oldSize), ...), and
	// grows the tree to oldSize+len(records). It is durable when it returns
	// nil. If the tree size is not oldSize it fails with ECONFLICT; a record
	// ID already in the log fails with ECONFLICT; wrong indexes or a hash
	// count other than StoredHashCount(new)-StoredHashCount(old) fail with
	// EINVALID. On any error nothing is appended.
	Append(ctx context.Context, oldSize int64, records []StoredRecord, hashes []tlog.Hash) error
	// TreeSize returns the number of records in the log.
	TreeSize(ctx context.Context) (int64, error)
	// ReadHashes returns the stored hashes at the given indexes, in order;
	// ENOTFOUND if any is missing.
	ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error)
	// RecordByID returns the record with the given draw ID, or ENOTFOUND.
	RecordByID(ctx context.Context, id string) (StoredRecord, error)
	// Records returns up to limit records with index >= from, in index order.
	Records(ctx context.Context, from int64, limit int) ([]StoredRecord, error)
	// SaveCheckpoint stores a signed checkpoint; ECONFLICT if one of the same
	// size is already stored.
	SaveCheckpoint(ctx context.Context, c SavedCheckpoint) error
	// LatestCheckpoint returns the stored checkpoint with the largest size,
	// or ENOTFOUND if there is none.
	LatestCheckpoint(ctx context.Context) (SavedCheckpoint, error)
	// Checkpoints returns up to limit stored checkpoints with size >= fromSize,
	// in size order.
	Checkpoints(ctx context.Context, fromSize int64, limit int) ([]SavedCheckpoint, error)
}

// StoredRecord is a record as the store keeps it: its leaf index, its draw ID
// (for lookup) and its canonical encoding (the leaf data).
type StoredRecord struct {
	Index int64
	ID    string
	Data  []byte
}

// SavedCheckpoint is a signed checkpoint note as stored. Time is when it was
// issued (UTC; stores keep at least microsecond precision).
type SavedCheckpoint struct {
	Size int64
	Note []byte
	Time time.Time
}

// storeHashReader adapts a Store to tlog.HashReader for one operation.
func storeHashReader(ctx context.Context, s Store) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return s.ReadHashes(ctx, indexes)
	})
}

// CheckAppend validates the arguments of Store.Append (indexes and
// hash count) as the contract requires; stores call it before touching data.
func CheckAppend(oldSize int64, records []StoredRecord, hashes []tlog.Hash) error {
	if oldSize < 0 || len(records) == 0 {
		return buzzer.Errorf(buzzer.EINVALID, "append needs at least one record and a non-negative size")
	}
	for i, r := range records {
		if r.Index != oldSize+int64(i) {
			return buzzer.Errorf(buzzer.EINVALID, "record %d has index %d, want %d", i, r.Index, oldSize+int64(i))
		}
		if r.ID == "" || len(r.Data) == 0 {
			return buzzer.Errorf(buzzer.EINVALID, "record %d needs an id and data", r.Index)
		}
	}
	want := tlog.StoredHashCount(oldSize+int64(len(records))) - tlog.StoredHashCount(oldSize)
	if int64(len(hashes)) != want {
		return buzzer.Errorf(buzzer.EINVALID, "append of %d records at size %d needs %d hashes, got %d", len(records), oldSize, want, len(hashes))
	}
	return nil
}
