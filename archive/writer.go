package archive

import (
	"cmp"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
)

// Defaults for Options.
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultSegmentRecords = 1 << 20
	DefaultMaxRecordBytes = 1 << 20
	DefaultRecentIDs      = 100_000
	// MaxRecordBytesLimit is the largest MaxRecordBytes allowed; readers
	// that do not know the writer's setting use it.
	MaxRecordBytesLimit = 64 << 20
)

// Meta is what the archive needs to know about a record: its unique id, the
// key it is ordered under and its sequence number within that key (dense,
// starting at 1).
type Meta struct {
	ID  string
	Key string
	Seq uint64
}

// Status is what Append did with one record: package audit's AppendStatus,
// so that a Writer is an audit.Log.
type Status = audit.AppendStatus

// The statuses Append reports (see audit.AppendStatus).
const (
	Appended   = audit.Appended
	Duplicate  = audit.Duplicate
	OutOfOrder = audit.OutOfOrder
	Invalid    = audit.Invalid
	Conflict   = audit.Conflict
)

// SealInfo describes a segment that was just sealed.
type SealInfo struct {
	File    string
	Index   uint64
	Records uint64 // records in the segment
	Head    Hash
}

// Options configures a Writer. Key and Identify are required.
type Options struct {
	FS       FS // nil: OSFS
	Key      ed25519.PrivateKey
	Identify func(body []byte) (Meta, error)
	// A segment is sealed before a record would take it past either bound.
	SegmentBytes   int64 // default 64 MiB
	SegmentRecords int   // default 1 Mi records
	MaxRecordBytes int   // default 1 MiB
	// RecentIDs bounds the in-memory index of recent records (id, key,
	// sequence) used to recognise a re-sent record and to tell it from a
	// different record claiming an archived place (default 100 000). Older
	// re-sends are recognised by the per-key high-water mark alone.
	RecentIDs int
	// OnSeal, if set, is called after each seal (from the appending goroutine).
	OnSeal func(SealInfo)
}

func (o *Options) normalize() error {
	if o.FS == nil {
		o.FS = OSFS{}
	}
	if len(o.Key) != ed25519.PrivateKeySize {
		return buzzer.Errorf(buzzer.EINVALID, "archive: an Ed25519 private key is required to seal segments")
	}
	if o.Identify == nil {
		return buzzer.Errorf(buzzer.EINVALID, "archive: Identify is required")
	}
	if o.SegmentBytes == 0 {
		o.SegmentBytes = DefaultSegmentBytes
	}
	if o.SegmentRecords == 0 {
		o.SegmentRecords = DefaultSegmentRecords
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = DefaultMaxRecordBytes
	}
	if o.RecentIDs == 0 {
		o.RecentIDs = DefaultRecentIDs
	}
	switch {
	case o.MaxRecordBytes < 1 || o.MaxRecordBytes > MaxRecordBytesLimit:
		return buzzer.Errorf(buzzer.EINVALID, "archive: MaxRecordBytes must be 1..64 MiB")
	case o.SegmentBytes < int64(headerSize+sealFrame+frameOver+o.MaxRecordBytes):
		return buzzer.Errorf(buzzer.EINVALID, "archive: SegmentBytes must hold at least one record of MaxRecordBytes and a seal")
	case o.SegmentRecords < 1:
		return buzzer.Errorf(buzzer.EINVALID, "archive: SegmentRecords must be at least 1")
	case o.RecentIDs < 1:
		return buzzer.Errorf(buzzer.EINVALID, "archive: RecentIDs must be at least 1")
	}
	return nil
}

// Recovery says what Open had to repair.
type Recovery struct {
	File           string // the segment whose tail was cut ("" if none)
	TruncatedBytes int64  // bytes of a torn, never-acknowledged tail write
	Scanned        int    // segments read to rebuild the state
}

// Writer appends records to the archive in one directory. It is not safe for
// concurrent use: one goroutine (the archiver's flusher) owns it. After any
// write or sync error the Writer is broken and every call fails; the caller
// closes it and opens a new one, which recovers from what is on disk.
type Writer struct {
	opts Options
	dir  string
	fs   FS

	f        File
	seg      header
	size     int64
	count    uint64 // records in the active segment
	head     Hash
	total    uint64 // records in the archive
	fileHash hash.Hash

	hwm       map[string]uint64
	recent    map[string]struct{} // ids of recent records
	recentPos map[keySeq]string   // (key, seq) -> id of recent records
	ring      []recentEntry       // recent records in insertion order, circular
	ringAt    int

	buf      []byte
	order    []int
	metas    []Meta
	broken   error
	recovery Recovery
}

// Open opens (creating if needed) the archive in dir and recovers it: it
// resumes the chain from the last complete record, truncates a torn tail
// write, and rebuilds the de-duplication state from the checkpoint and the
// segments after it. It refuses to open, rather than cut, an archive whose
// damage is followed by complete records.
func Open(dir string, opts Options) (*Writer, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	w := &Writer{opts: opts, dir: dir, fs: opts.FS, hwm: map[string]uint64{}, recent: map[string]struct{}{}, recentPos: map[keySeq]string{}}
	if err := w.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create the audit archive directory %s", dir)
	}
	if err := w.fs.SyncDir(filepath.Dir(filepath.Clean(dir))); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot sync the audit archive's parent directory")
	}
	if err := w.removeTemps(); err != nil {
		return nil, err
	}
	if err := w.recover(); err != nil {
		if w.f != nil {
			w.f.Close()
		}
		return nil, err
	}
	return w, nil
}

func (w *Writer) removeTemps() error {
	ents, err := w.fs.ReadDir(w.dir)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot list the audit archive %s", w.dir)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			if err := w.fs.Remove(filepath.Join(w.dir, e.Name())); err != nil {
				return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot remove %s", e.Name())
			}
		}
	}
	return nil
}

func (w *Writer) pub() ed25519.PublicKey { return w.opts.Key.Public().(ed25519.PublicKey) }

func (w *Writer) recover() error {
	segs, err := listSegments(w.fs, w.dir)
	if err != nil {
		return err
	}
	start := 0
	if ck, ok := w.loadCheckpoint(); ok && ck.Segment < uint64(len(segs)) {
		start = int(ck.Segment) + 1
		w.head, w.total = ck.Head, ck.Total
		w.hwm = ck.HWM
		for _, e := range ck.Recent {
			w.remember(Meta{ID: e.ID, Key: e.Key, Seq: e.Seq})
		}
	}
	for i := start; i < len(segs); i++ {
		idx := segs[i]
		name := filepath.Join(w.dir, segmentName(idx))
		last := i == len(segs)-1
		data, err := readAll(w.fs, name)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read audit segment %s", name)
		}
		w.recovery.Scanned++
		if last && len(data) < headerSize || last && len(data) == headerSize && !validHeader(data) {
			// Created but its header never became durable: no record can be
			// in it (the header is synced before any record is written).
			if err := w.fs.Remove(name); err != nil {
				return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot remove the torn segment %s", name)
			}
			return w.createSegment(idx)
		}
		var metaErr error
		s := scanSegment(name, data, idx, w.head, w.total, w.pub(), w.opts.MaxRecordBytes, func(r RecordInfo) error {
			m, err := w.opts.Identify(r.Body)
			if err != nil {
				metaErr = err
				return err
			}
			w.hwm[m.Key] = m.Seq
			w.remember(m)
			return nil
		})
		if s.bad != nil {
			// A torn tail is an unreadable frame at the end of the newest
			// segment with no complete frame after it: bytes written after
			// the last fsync. Anything else is damage, and cutting it could
			// cut acknowledged records.
			tornTail := last && s.unreadable && metaErr == nil && !validFrameAfter(data, s.bad.Offset, w.opts.MaxRecordBytes)
			if !tornTail {
				return buzzer.Wrap(damaged(s.bad), buzzer.EINTERNAL, "the audit archive is damaged; refusing to write to it (run audit verify)")
			}
			if err := w.truncate(name, s.bad.Offset, int64(len(data))); err != nil {
				return err
			}
			data = data[:s.bad.Offset]
		}
		w.head = s.head
		w.total += s.count
		if !last {
			if !s.sealed {
				return damaged(&Damage{File: name, Offset: s.end, Record: w.total, Reason: "segment is not sealed but is not the last one"})
			}
			continue
		}
		if s.sealed {
			return w.createSegment(idx + 1)
		}
		f, err := w.fs.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open audit segment %s for appending", name)
		}
		if _, err := f.Seek(int64(len(data)), io.SeekStart); err != nil {
			f.Close()
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot seek audit segment %s", name)
		}
		w.f, w.seg, w.size, w.count = f, s.hdr, int64(len(data)), s.count
		w.fileHash = sha256.New()
		w.fileHash.Write(data)
		return nil
	}
	// No segments yet, or every one is covered by the checkpoint (the crash
	// came between a seal and the next segment's creation).
	return w.createSegment(uint64(len(segs)))
}

func validHeader(b []byte) bool { _, why := decodeHeader(b); return why == "" }

func (w *Writer) truncate(name string, at, was int64) error {
	f, err := w.fs.OpenFile(name, os.O_WRONLY, 0)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open %s to cut its torn tail", name)
	}
	defer f.Close()
	if err := f.Truncate(at); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot cut the torn tail of %s", name)
	}
	if err := f.Sync(); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot sync %s", name)
	}
	w.recovery.File, w.recovery.TruncatedBytes = name, was-at
	return nil
}

// createSegment starts segment index after the current chain head and makes
// its header and directory entry durable before any record goes in.
func (w *Writer) createSegment(index uint64) error {
	name := filepath.Join(w.dir, segmentName(index))
	f, err := w.fs.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create audit segment %s", name)
	}
	h := header{Index: index, Prev: w.head, Before: w.total}
	b := h.encode()
	if _, err := f.Write(b); err != nil {
		f.Close()
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot write audit segment header %s", name)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot sync audit segment %s", name)
	}
	if err := w.fs.SyncDir(w.dir); err != nil {
		f.Close()
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot sync the audit archive directory")
	}
	w.f, w.seg, w.size, w.count = f, h, int64(len(b)), 0
	w.fileHash = sha256.New()
	w.fileHash.Write(b)
	return nil
}

type keySeq struct {
	key string
	seq uint64
}

type recentEntry struct {
	ID  string `json:"id"`
	Key string `json:"key"`
	Seq uint64 `json:"seq"`
}

func (w *Writer) remember(m Meta) {
	if _, ok := w.recent[m.ID]; ok {
		return
	}
	e := recentEntry{ID: m.ID, Key: m.Key, Seq: m.Seq}
	if len(w.ring) < w.opts.RecentIDs {
		w.ring = append(w.ring, e)
	} else {
		old := w.ring[w.ringAt]
		delete(w.recent, old.ID)
		delete(w.recentPos, keySeq{old.Key, old.Seq})
		w.ring[w.ringAt] = e
		w.ringAt = (w.ringAt + 1) % len(w.ring)
	}
	w.recent[m.ID] = struct{}{}
	w.recentPos[keySeq{m.Key, m.Seq}] = m.ID
}

// recentInOrder returns the remembered records oldest first.
func (w *Writer) recentInOrder() []recentEntry {
	out := make([]recentEntry, 0, len(w.ring))
	out = append(out, w.ring[w.ringAt:]...)
	return append(out, w.ring[:w.ringAt]...)
}

// Recovery reports what Open repaired.
func (w *Writer) Recovery() Recovery { return w.recovery }

// Head returns the number of records in the archive and the chain head.
func (w *Writer) Head() (records uint64, head Hash) { return w.total, w.head }

// HighWater returns the highest archived sequence number of key (0: none).
func (w *Writer) HighWater(key string) uint64 { return w.hwm[key] }

// Append writes records to the archive, ordered by (key, sequence) within
// the batch, and reports per input position what it did. Nothing is durable
// until Sync returns nil. A full segment is sealed (and synced) on the way.
func (w *Writer) Append(bodies [][]byte) ([]Status, error) {
	if w.broken != nil {
		return nil, w.broken
	}
	st := make([]Status, len(bodies))
	w.metas = slices.Grow(w.metas[:0], len(bodies))[:len(bodies)]
	w.order = w.order[:0]
	for i, b := range bodies {
		m, err := w.opts.Identify(b)
		if err != nil || len(b) > w.opts.MaxRecordBytes || len(b) == 0 || m.Seq == 0 {
			st[i] = Invalid
			continue
		}
		w.metas[i] = m
		w.order = append(w.order, i)
	}
	slices.SortStableFunc(w.order, func(a, b int) int {
		if c := strings.Compare(w.metas[a].Key, w.metas[b].Key); c != 0 {
			return c
		}
		return cmp.Compare(w.metas[a].Seq, w.metas[b].Seq)
	})
	w.buf = w.buf[:0]
	for _, i := range w.order {
		m, body := w.metas[i], bodies[i]
		if _, dup := w.recent[m.ID]; dup {
			st[i] = Duplicate
			continue
		}
		if m.Seq <= w.hwm[m.Key] {
			// Older than the key's high-water mark: a re-send, unless a
			// different record is known to hold that place. (Past the
			// recent window the archive can no longer tell; see RecentIDs.)
			if id, ok := w.recentPos[keySeq{m.Key, m.Seq}]; ok && id != m.ID {
				st[i] = Conflict
			} else {
				st[i] = Duplicate
			}
			continue
		}
		if m.Seq != w.hwm[m.Key]+1 {
			st[i] = OutOfOrder
			continue
		}
		n := int64(frameOver + len(body))
		if w.count > 0 && (w.count >= uint64(w.opts.SegmentRecords) || w.size+int64(len(w.buf))+n+sealFrame > w.opts.SegmentBytes) {
			if err := w.write(w.buf); err != nil {
				return nil, err
			}
			w.buf = w.buf[:0]
			if err := w.sealAndRoll(); err != nil {
				return nil, err
			}
		}
		w.buf, w.head = appendFrame(w.buf, kindRecord, w.head, body)
		w.count++
		w.total++
		w.hwm[m.Key] = m.Seq
		w.remember(m)
		st[i] = Appended
	}
	if err := w.write(w.buf); err != nil {
		return nil, err
	}
	return st, nil
}

func (w *Writer) fail(err error, format string, args ...any) error {
	w.broken = buzzer.Wrap(err, buzzer.EUNAVAILABLE, format, args...)
	return w.broken
}

func (w *Writer) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := w.f.Write(b); err != nil {
		return w.fail(err, "cannot write audit segment %d", w.seg.Index)
	}
	w.size += int64(len(b))
	w.fileHash.Write(b)
	return nil
}

// sealAndRoll signs the active segment's trailer, makes it durable and
// read-only, checkpoints the de-duplication state and starts the next one.
func (w *Writer) sealAndRoll() error {
	fh := Hash(w.fileHash.Sum(nil))
	fr, _ := appendFrame(nil, kindSeal, w.head, encodeSeal(w.opts.Key, w.seg.Index, w.count, w.head, fh))
	if err := w.write(fr); err != nil {
		return err
	}
	// Chmod before Sync so the read-only mode is durable with the seal.
	if err := w.f.Chmod(0o444); err != nil {
		return w.fail(err, "cannot make audit segment %d read-only", w.seg.Index)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err, "cannot sync audit segment %d", w.seg.Index)
	}
	if err := w.f.Close(); err != nil {
		return w.fail(err, "cannot close audit segment %d", w.seg.Index)
	}
	w.f = nil
	info := SealInfo{File: filepath.Join(w.dir, segmentName(w.seg.Index)), Index: w.seg.Index, Records: w.count, Head: w.head}
	if err := w.writeCheckpoint(w.seg.Index); err != nil {
		return w.fail(err, "cannot write the audit de-duplication checkpoint")
	}
	if w.opts.OnSeal != nil {
		w.opts.OnSeal(info)
	}
	if err := w.createSegment(w.seg.Index + 1); err != nil {
		w.broken = err
		return err
	}
	return nil
}

// Sync makes every appended record durable.
func (w *Writer) Sync() error {
	if w.broken != nil {
		return w.broken
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err, "cannot sync audit segment %d", w.seg.Index)
	}
	return nil
}

// Close closes the active segment without sealing it; the next Open resumes
// it. Records appended but not synced may or may not survive.
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	if w.broken == nil {
		w.broken = buzzer.Errorf(buzzer.EUNAVAILABLE, "the audit archive writer is closed")
	}
	if err != nil && !errors.Is(err, os.ErrClosed) {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot close the audit segment")
	}
	return nil
}
