package table

import (
	"context"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Lease is one node's right to write one table. Epoch is the fencing token:
// it grows every time the lease changes hands (or is re-acquired after it
// lapsed), and the store refuses any write that carries an older one.
type Lease struct {
	Table   string    `json:"table"`
	Owner   string    `json:"owner"`
	Epoch   int64     `json:"epoch"`
	Expires time.Time `json:"expires"`
}

// Stored is a table's committed state as the store holds it.
type Stored struct {
	// State is the table's internal state, opaque to the store. It holds
	// hidden information and is never sent to players.
	State []byte
	// Version counts accepted writes; a write names the version it read.
	Version int64
	// Seq is the sequence number of the table's last event (0 before any).
	Seq int64
	// Epoch is the epoch of the lease that made the last write.
	Epoch int64
}

// Write replaces a table's state and appends its events, atomically.
type Write struct {
	Lease Lease
	// Version is the version the writer read (0 for a table not yet
	// stored); the write is refused unless it is still current.
	Version int64
	State   []byte
	// Events are appended in order; they must be numbered Seq+1, Seq+2, ...
	// continuing the stored log. A write may carry no events.
	Events []Event
}

// Store keeps table state and each table's ordered event log, with a fenced
// single writer per table. Every method honours ctx.
//
// Conformance (tabletest.RunStoreTests): Acquire grants the lease if it is
// free, lapsed or already the caller's, with a new, larger epoch whenever the
// owner changes or the old lease lapsed; a live lease held by another owner
// is refused with ECONFLICT/lease_held. Write is refused with ECONFLICT and
// reason stale_epoch if Lease.Epoch is not the table's current epoch,
// lease_expired if that lease has lapsed, version_mismatch if Version is not
// current and seq_gap if the events do not continue the log; a refused write
// changes nothing. Events returns events after a sequence number in order;
// if some were trimmed it fails with ECONFLICT/events_trimmed so the caller
// reloads a snapshot.
//
// Trimming (tabletest.RunTrimTests): a store keeps the last Retain events of
// a table. Once a trim floor is set (SetTrimFloor), it also keeps every event
// above the floor, up to MaxRetain events in all; past that bound it trims
// anyway and a reader of the trimmed events gets events_trimmed — an
// explicit gap, never a silent one.
type Store interface {
	Acquire(ctx context.Context, table, owner string, ttl time.Duration) (Lease, error)
	// Renew extends a live lease; it fails as Write does if the lease is
	// stale or lapsed.
	Renew(ctx context.Context, l Lease, ttl time.Duration) (Lease, error)
	// Release gives a live lease up early; the epoch is kept, so the next
	// owner's epoch is still larger.
	Release(ctx context.Context, l Lease) error
	// Load returns the committed state, or ENOTFOUND for a table never written.
	Load(ctx context.Context, table string) (Stored, error)
	// Head returns the Seq Load would, without the state (ENOTFOUND the
	// same way): pollers that only follow the sequence ask this.
	Head(ctx context.Context, table string) (int64, error)
	// Write commits w and returns the new version.
	Write(ctx context.Context, w Write) (int64, error)
	// Events returns up to limit events with Seq > after, in order.
	Events(ctx context.Context, table string, after int64, limit int) ([]Event, error)
	// SetTrimFloor tells the store that a consumer that must see every
	// event (the audit capture) has read table's log up to seq: events with
	// Seq > seq are kept, within the store's MaxRetain bound, until the
	// floor passes them. The floor never moves back (a lower seq is
	// ignored), needs no lease, and may be set before the table is written.
	SetTrimFloor(ctx context.Context, table string, seq int64) error
}

// Reasons refining ECONFLICT errors from a Store.
const (
	ReasonLeaseHeld       = "lease_held"
	ReasonStaleEpoch      = "stale_epoch"
	ReasonLeaseExpired    = "lease_expired"
	ReasonVersionMismatch = "version_mismatch"
	ReasonSeqGap          = "seq_gap"
	ReasonEventsTrimmed   = "events_trimmed"
)

// StoreError builds the error a Store returns for a refused write.
func StoreError(reason, format string, args ...any) error {
	return buzzer.Errorf(buzzer.ECONFLICT, format, args...).WithReason(reason)
}
