package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/buzzer-bet/buzzer"
)

// Damage locates the first thing wrong in an archive: the file, the byte
// offset of the header or frame that is wrong, and the number of the record
// at that place (0-based across the whole archive; for a seal or header, the
// number the next record would have had).
type Damage struct {
	File   string
	Offset int64
	Record uint64
	Reason string
}

func (d *Damage) Error() string {
	return fmt.Sprintf("%s: offset %d (record #%d): %s", d.File, d.Offset, d.Record, d.Reason)
}

// damaged wraps d as Buzzer's error: the archive is not what was written.
func damaged(d *Damage) error {
	return &buzzer.Error{Code: buzzer.EINVALID, Reason: "archive_damaged", Message: "The audit archive is damaged: " + d.Error(), Err: d}
}

// RecordInfo is a record as the verifier and readers see it.
type RecordInfo struct {
	File   string
	Offset int64
	Number uint64 // 0-based position in the whole archive
	Hash   Hash
	Body   []byte // valid only during the callback
}

// segScan is what scanning one segment found.
type segScan struct {
	hdr    header
	head   Hash
	count  uint64 // records in this segment
	end    int64  // end of the last good frame (or of the header)
	sealed bool
	// bad is the first problem, if any; incomplete says it is a frame cut
	// short by the end of the file (a torn write at the tail).
	bad        *Damage
	incomplete bool
	// unreadable says the bad frame itself failed to decode (short, bad
	// checksum, bad kind or length), as a torn write does; a frame that
	// decodes but breaks the chain or seal rules is never a torn write.
	unreadable bool
}

// scanSegment checks one segment's bytes: header against the expected index,
// chain head and record count; every frame's checksum and chain link; the
// seal's counts, file hash and (when pub is not nil) signature. visit is
// called for every good record in order; an error from it becomes Damage at
// that record.
func scanSegment(name string, data []byte, index uint64, prev Hash, before uint64, pub ed25519.PublicKey, maxBody int, visit func(RecordInfo) error) segScan {
	s := segScan{head: prev}
	dmg := func(off int64, n uint64, format string, args ...any) segScan {
		s.bad = &Damage{File: name, Offset: off, Record: n, Reason: fmt.Sprintf(format, args...)}
		return s
	}
	h, why := decodeHeader(data)
	if why != "" {
		return dmg(0, before, "%s", why)
	}
	s.hdr = h
	switch {
	case h.Index != index:
		return dmg(0, before, "segment header says index %d, want %d (segments renamed, removed or reordered)", h.Index, index)
	case h.Before != before:
		return dmg(0, before, "segment header says %d records precede it, the archive has %d (records or segments removed)", h.Before, before)
	case h.Prev != prev:
		return dmg(0, before, "segment does not continue the chain: header prev %s, previous record hash %s", h.Prev, prev)
	}
	off := int64(headerSize)
	s.end = off
	for off < int64(len(data)) {
		n := before + s.count
		f, st, why := decodeFrame(data[off:], maxBody)
		if st != frameOK {
			s.incomplete = st == frameIncomplete
			s.unreadable = true
			return dmg(off, n, "%s", why)
		}
		if f.Prev != s.head {
			return dmg(off, n, "chain broken: frame's prev hash %s is not the previous record's hash %s (a record was removed, inserted or reordered)", f.Prev, s.head)
		}
		if f.Kind == kindSeal {
			sl := decodeSeal(f.Body)
			fh := Hash(sha256.Sum256(data[:off]))
			switch {
			case off+int64(f.Size) != int64(len(data)):
				return dmg(off, n, "data follows the seal")
			case sl.Index != h.Index:
				return dmg(off, n, "seal is for segment %d, not %d", sl.Index, h.Index)
			case sl.Count != s.count:
				return dmg(off, n, "seal counts %d records, the segment has %d", sl.Count, s.count)
			case sl.FileHash != fh:
				return dmg(off, n, "seal's file hash does not match the segment's bytes")
			case pub != nil && !ed25519.Verify(pub, sealMessage(sl.Index, sl.Count, s.head, sl.FileHash), sl.Sig):
				return dmg(off, n, "seal signature does not verify with the given public key")
			}
			s.sealed = true
			s.end = off + int64(f.Size)
			return s
		}
		if visit != nil {
			if err := visit(RecordInfo{File: name, Offset: off, Number: n, Hash: f.Hash, Body: f.Body}); err != nil {
				return dmg(off, n, "%v", err)
			}
		}
		s.head = f.Hash
		s.count++
		off += int64(f.Size)
		s.end = off
	}
	return s
}

// validFrameAfter reports whether any complete frame with a good checksum
// starts after offset from in data: if so, the bytes at from are not a torn
// tail but damage in the middle, and must not be truncated.
func validFrameAfter(data []byte, from int64, maxBody int) bool {
	for off := from + 1; off+frameOver <= int64(len(data)); off++ {
		if k := data[off]; k != kindRecord && k != kindSeal {
			continue
		}
		if _, st, _ := decodeFrame(data[off:], maxBody); st == frameOK {
			return true
		}
	}
	return false
}

// listSegments returns the segment indexes in dir in order, checking that
// they run 0, 1, 2, ... without a gap.
func listSegments(fsys FS, dir string) ([]uint64, error) {
	ents, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot list the audit archive %s", dir)
	}
	var idx []uint64
	for _, e := range ents {
		name := e.Name()
		base, ok := strings.CutSuffix(name, segmentSuffix)
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != 16 {
			return nil, damaged(&Damage{File: filepath.Join(dir, name), Reason: "file name is not a segment index"})
		}
		idx = append(idx, n)
	}
	sort.Slice(idx, func(i, j int) bool { return idx[i] < idx[j] })
	for i, n := range idx {
		if n != uint64(i) {
			return nil, damaged(&Damage{File: filepath.Join(dir, segmentName(uint64(i))), Reason: fmt.Sprintf("segment %d is missing (next present is %d)", i, n)})
		}
	}
	return idx, nil
}

func readAll(fsys FS, name string) ([]byte, error) {
	f, err := fsys.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if fi, err := f.Stat(); err == nil {
		b.Grow(int(fi.Size()))
	}
	_, err = io.Copy(&b, f)
	return b.Bytes(), err
}

// Report summarises a verified archive.
type Report struct {
	Segments int
	Sealed   int
	Records  uint64
	Head     Hash // hash of the last record (zero if none)
}

// Walk reads every record of the archive in dir in order, checking every
// header, frame checksum, chain link and seal (seal signatures only when pub
// is not nil), and calls visit for each record. Anything wrong, including a
// torn tail not yet recovered by a writer, an unsealed segment before the
// last, or an error returned by visit, stops the walk with an EINVALID
// error (reason "archive_damaged") that wraps the first *Damage.
func Walk(fsys FS, dir string, pub ed25519.PublicKey, maxRecordBytes int, visit func(RecordInfo) error) (Report, error) {
	if fsys == nil {
		fsys = OSFS{}
	}
	if maxRecordBytes <= 0 {
		maxRecordBytes = DefaultMaxRecordBytes
	}
	var rep Report
	segs, err := listSegments(fsys, dir)
	if err != nil {
		return rep, err
	}
	for i, idx := range segs {
		name := filepath.Join(dir, segmentName(idx))
		data, err := readAll(fsys, name)
		if err != nil {
			return rep, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read audit segment %s", name)
		}
		s := scanSegment(name, data, idx, rep.Head, rep.Records, pub, maxRecordBytes, visit)
		if s.bad != nil {
			if s.incomplete {
				s.bad.Reason += " (a torn write: the archiver truncates it when it next opens the archive)"
			}
			return rep, damaged(s.bad)
		}
		rep.Segments++
		rep.Records += s.count
		rep.Head = s.head
		if s.sealed {
			rep.Sealed++
		} else if i != len(segs)-1 {
			return rep, damaged(&Damage{File: name, Offset: s.end, Record: rep.Records, Reason: "segment is not sealed but is not the last one"})
		}
	}
	return rep, nil
}

// Verify is Walk with the seal key required.
func Verify(fsys FS, dir string, pub ed25519.PublicKey, maxRecordBytes int, visit func(RecordInfo) error) (Report, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Report{}, buzzer.Errorf(buzzer.EINVALID, "verifying needs an Ed25519 public key")
	}
	return Walk(fsys, dir, pub, maxRecordBytes, visit)
}
