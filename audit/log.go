package audit

import "crypto/ed25519"

// AppendStatus is what a Log did with one appended record.
type AppendStatus int

const (
	// Appended: the record was written (durable once Sync returns nil).
	Appended AppendStatus = iota + 1
	// Duplicate: a record with this id, or this stream key at or below this
	// sequence, is already in the log (or earlier in the same batch).
	Duplicate
	// OutOfOrder: the stream key's previous sequence is not in the log yet;
	// the record must be offered again after it.
	OutOfOrder
	// Invalid: the record cannot be identified or is over the size limit.
	Invalid
	// Conflict: a different record holds this stream key and sequence (a
	// capture bug: two changes given one place in the order). It is not
	// written and must not be treated as archived.
	Conflict
)

func (s AppendStatus) String() string {
	switch s {
	case Appended:
		return "appended"
	case Duplicate:
		return "duplicate"
	case OutOfOrder:
		return "out_of_order"
	case Invalid:
		return "invalid"
	case Conflict:
		return "conflict"
	default:
		return "unknown"
	}
}

// Log is the write-once, hash-chained record log the archiver appends to
// (package archive's segment files implement it). One goroutine uses it at
// a time. After any error from Append or Sync the Log is broken: the
// archiver closes it and opens a new one, which recovers from what is
// durable.
type Log interface {
	// Append writes records (canonical encodings, see Encode) in order and
	// reports for each what it did.
	Append(records [][]byte) ([]AppendStatus, error)
	// Sync makes every appended record durable. Only after it returns nil
	// may the records be acknowledged upstream.
	Sync() error
	// Close releases the log without sealing anything.
	Close() error
}

// Seal describes a full segment of the log that was just sealed.
type Seal struct {
	File    string
	Index   uint64
	Records uint64
}

// Recovery is what opening a log had to repair: bytes of a torn tail write
// (never acknowledged, since no fsync covered them) that were cut.
type Recovery struct {
	File           string
	TruncatedBytes int64
}

// LogOptions tells a LogOpener which log to open and how to write it; they
// come from the archiver's Config.
type LogOptions struct {
	Dir            string
	Key            ed25519.PrivateKey // seals full segments
	SegmentBytes   int64
	SegmentRecords int
	MaxRecordBytes int
	RecentIDs      int
	OnSeal         func(Seal) // called after each seal, from the appending goroutine
}

// LogOpener opens the log for appending, recovering it first: a torn tail
// is cut, a complete record never; a log damaged anywhere else is refused
// with an error.
type LogOpener interface {
	OpenLog(opts LogOptions) (Log, Recovery, error)
}

// Records is an archived log read back in order, checking its integrity
// (framing, chain links) on the way.
type Records interface {
	// Walk calls visit with every record's bytes in log order. An error
	// from visit, or damage in the log, stops the walk; the error then names
	// where in the log it stopped.
	Walk(visit func(record []byte) error) error
}
