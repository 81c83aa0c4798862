package archive

import (
	"crypto/ed25519"

	"github.com/buzzer-bet/buzzer/audit"
)

// The archive is package audit's log: a Writer appends audit records, an
// Opener opens one for the archiver, Records reads a directory back for
// replay.
var (
	_ audit.Log       = (*Writer)(nil)
	_ audit.LogOpener = Opener{}
	_ audit.Records   = Records{}
)

// IdentifyRecord is Options.Identify for audit records: the record's id,
// its stream key (jurisdiction/component/key) and its sequence.
func IdentifyRecord(b []byte) (Meta, error) {
	r, err := audit.Decode(b)
	if err != nil {
		return Meta{}, err
	}
	return Meta{ID: r.ID, Key: r.StreamKey(), Seq: r.Seq}, nil
}

// Opener opens archive directories as audit logs, writing through FS (nil:
// the operating system's; tests inject a stalling or failing one).
type Opener struct {
	FS FS
}

// OpenLog opens (creating and recovering) the archive in opts.Dir for audit
// records. Zero sizes take the archive's defaults.
func (o Opener) OpenLog(opts audit.LogOptions) (audit.Log, audit.Recovery, error) {
	var onSeal func(SealInfo)
	if opts.OnSeal != nil {
		onSeal = func(s SealInfo) { opts.OnSeal(audit.Seal{File: s.File, Index: s.Index, Records: s.Records}) }
	}
	w, err := Open(opts.Dir, Options{
		FS: o.FS, Key: opts.Key, Identify: IdentifyRecord,
		SegmentBytes: opts.SegmentBytes, SegmentRecords: opts.SegmentRecords,
		MaxRecordBytes: opts.MaxRecordBytes, RecentIDs: opts.RecentIDs,
		OnSeal: onSeal,
	})
	if err != nil {
		return nil, audit.Recovery{}, err
	}
	r := w.Recovery()
	return w, audit.Recovery{File: r.File, TruncatedBytes: r.TruncatedBytes}, nil
}

// Records reads the archive in Dir (through FS, nil: the operating
// system's) as audit records for audit.Replay. Walk checks every header,
// frame checksum and chain link, and seal signatures too when Pub is set;
// an error names the file, byte offset and record number (it wraps a
// *Damage).
type Records struct {
	FS  FS
	Dir string
	Pub ed25519.PublicKey
}

// Walk calls visit with every record in archive order.
func (r Records) Walk(visit func([]byte) error) error {
	_, err := Walk(r.FS, r.Dir, r.Pub, MaxRecordBytesLimit, func(ri RecordInfo) error { return visit(ri.Body) })
	return err
}

// VerifyRecords checks the archive of audit records in dir end to end:
// every segment header, frame checksum, chain link and seal signature (with
// pub), and every record: it must be canonical, its id unique, and its
// sequence the next of its stream key (audit.Checker). On failure the error
// wraps the first *Damage (file, byte offset, record number, reason).
func VerifyRecords(fsys FS, dir string, pub ed25519.PublicKey) (Report, error) {
	c := audit.NewChecker()
	return Verify(fsys, dir, pub, MaxRecordBytesLimit, func(ri RecordInfo) error { return c.Check(ri.Body) })
}
