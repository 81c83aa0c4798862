package archive

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// testIdentify reads bodies of the form "id|key|seq|payload".
func testIdentify(b []byte) (Meta, error) {
	p := strings.SplitN(string(b), "|", 4)
	if len(p) != 4 {
		return Meta{}, errors.New("bad test record")
	}
	seq, err := strconv.ParseUint(p[2], 10, 64)
	if err != nil {
		return Meta{}, err
	}
	return Meta{ID: p[0], Key: p[1], Seq: seq}, nil
}

func rec(id, key string, seq uint64) []byte {
	return fmt.Appendf(nil, "%s|%s|%d|payload-%s", id, key, seq, id)
}

func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func testOpts(segRecords int) Options {
	return Options{Key: testKey(1), Identify: testIdentify, SegmentRecords: segRecords}
}

func mustOpen(t *testing.T, dir string, o Options) *Writer {
	t.Helper()
	w, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func appendAll(t *testing.T, w *Writer, bodies ...[]byte) []Status {
	t.Helper()
	st, err := w.Append(bodies)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if err := w.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return st
}

// bodies returns every record body in the archive, in order, verified.
func bodies(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if _, err := Verify(nil, dir, testKey(1).Public().(ed25519.PublicKey), 0, func(r RecordInfo) error {
		out = append(out, string(r.Body))
		return nil
	}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return out
}

// buildArchive writes n records over keys "a", "b", "c" with segments of
// segRecords records, and leaves the last segment unsealed.
func buildArchive(t *testing.T, dir string, n, segRecords int) []string {
	t.Helper()
	w := mustOpen(t, dir, testOpts(segRecords))
	defer w.Close()
	seq := map[string]uint64{}
	var want []string
	for i := 0; i < n; i++ {
		k := string(rune('a' + i%3))
		seq[k]++
		b := rec(fmt.Sprintf("r%03d", i), k, seq[k])
		appendAll(t, w, b)
		want = append(want, string(b))
	}
	return want
}

func TestAppendSealsAndVerifies(t *testing.T) {
	dir := t.TempDir()
	var seals []SealInfo
	o := testOpts(4)
	o.OnSeal = func(s SealInfo) { seals = append(seals, s) }
	w := mustOpen(t, dir, o)
	var want []string
	seq := map[string]uint64{}
	for batch := 0; batch < 5; batch++ {
		var bs [][]byte
		for i := 0; i < 3; i++ {
			k := []string{"x", "y"}[i%2]
			seq[k]++
			b := rec(fmt.Sprintf("%d-%d", batch, i), k, seq[k])
			bs = append(bs, b)
		}
		st := appendAll(t, w, bs...)
		for i, s := range st {
			if s != Appended {
				t.Fatalf("batch %d record %d: %v", batch, i, s)
			}
		}
		// Append orders a batch by (key, seq).
		for _, k := range []string{"x", "y"} {
			for _, b := range bs {
				if m, _ := testIdentify(b); m.Key == k {
					want = append(want, string(b))
				}
			}
		}
	}
	w.Close()
	if got := bodies(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("archive holds\n%v\nwant\n%v", got, want)
	}
	if len(seals) != 3 { // 15 records, 4 per segment: 3 sealed + 3 in the active one
		t.Fatalf("%d seals, want 3", len(seals))
	}
	for _, s := range seals {
		fi, err := os.Stat(s.File)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o444 {
			t.Errorf("sealed %s has mode %v, want 0444", s.File, fi.Mode().Perm())
		}
		if s.Records != 4 {
			t.Errorf("segment %d sealed with %d records", s.Index, s.Records)
		}
	}
	rep, err := Verify(nil, dir, testKey(1).Public().(ed25519.PublicKey), 0, nil)
	if err != nil || rep.Records != 15 || rep.Sealed != 3 || rep.Segments != 4 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestSegmentBytesBound(t *testing.T) {
	dir := t.TempDir()
	o := testOpts(1000)
	o.MaxRecordBytes = 100
	o.SegmentBytes = headerSize + sealFrame + 3*(frameOver+30)
	w := mustOpen(t, dir, o)
	for i := 1; i <= 10; i++ {
		appendAll(t, w, rec(fmt.Sprintf("id%02d", i), "k", uint64(i)))
	}
	w.Close()
	segs, err := listSegments(OSFS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		fi, _ := os.Stat(filepath.Join(dir, segmentName(s)))
		if fi.Size() > o.SegmentBytes {
			t.Errorf("segment %d is %d bytes, bound %d", s, fi.Size(), o.SegmentBytes)
		}
	}
	if len(segs) < 3 {
		t.Fatalf("only %d segments for 10 records of ~30 bytes", len(segs))
	}
	if n := len(bodies(t, dir)); n != 10 {
		t.Fatalf("%d records", n)
	}
}

func TestReopenResumesChainAndDedups(t *testing.T) {
	for _, dropCkpt := range []bool{false, true} {
		t.Run(fmt.Sprintf("dropCheckpoint=%v", dropCkpt), func(t *testing.T) {
			dir := t.TempDir()
			o := testOpts(3)
			o.RecentIDs = 2 // force the per-key high-water mark to do the work
			want := buildArchive(t, dir, 10, 3)
			if dropCkpt {
				if err := os.Remove(filepath.Join(dir, ckptName)); err != nil {
					t.Fatal(err)
				}
			}
			w := mustOpen(t, dir, o)
			if !dropCkpt && w.Recovery().Scanned != 1 {
				t.Errorf("with a checkpoint Open read %d segments, want only the active one", w.Recovery().Scanned)
			}
			// Every old record re-sent: all duplicates.
			var old [][]byte
			for _, b := range want {
				old = append(old, []byte(b))
			}
			for i, s := range appendAll(t, w, old...) {
				if s != Duplicate {
					t.Fatalf("re-sent record %d: %v", i, s)
				}
			}
			// a has seqs 1..4 archived; 6 skips 5; 5 then 6 in one batch is fine.
			st := appendAll(t, w, rec("new6", "a", 6))
			if st[0] != OutOfOrder {
				t.Fatalf("gap: %v", st[0])
			}
			st = appendAll(t, w, rec("new6", "a", 6), rec("new5", "a", 5), rec("new5", "a", 5), rec("zz", "a", 0), []byte("junk"))
			if fmt.Sprint(st) != "[appended appended duplicate invalid invalid]" {
				t.Fatalf("statuses %v", st)
			}
			w.Close()
			got := bodies(t, dir)
			want = append(want, string(rec("new5", "a", 5)), string(rec("new6", "a", 6)))
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("archive holds\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// writeRaw appends raw bytes to a segment, bypassing the writer.
func writeRaw(t *testing.T, name string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func lastSegment(t *testing.T, dir string) string {
	segs, err := listSegments(OSFS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, segmentName(segs[len(segs)-1]))
}

func TestTornTailIsCutCompleteRecordsKept(t *testing.T) {
	fullFrame, _ := appendFrame(nil, kindRecord, Hash{}, rec("torn", "a", 99))
	cases := map[string][]byte{
		"half frame":   fullFrame[:len(fullFrame)/2],
		"no crc":       fullFrame[:len(fullFrame)-4],
		"zero pages":   make([]byte, 4096),
		"one byte":     {kindRecord},
		"garbage tail": bytes.Repeat([]byte{0xAB}, 100),
	}
	for name, tail := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			want := buildArchive(t, dir, 7, 3)
			seg := lastSegment(t, dir)
			before, _ := os.Stat(seg)
			writeRaw(t, seg, tail)
			if _, err := Walk(nil, dir, nil, 0, nil); err == nil {
				t.Fatal("Walk accepted a torn tail")
			}
			w := mustOpen(t, dir, testOpts(3))
			if r := w.Recovery(); r.TruncatedBytes != int64(len(tail)) || r.File != seg {
				t.Fatalf("recovery %+v, want %d bytes cut from %s", r, len(tail), seg)
			}
			after, _ := os.Stat(seg)
			if after.Size() != before.Size() {
				t.Fatalf("segment is %d bytes, was %d before the torn write", after.Size(), before.Size())
			}
			appendAll(t, w, rec("next", "a", 4))
			w.Close()
			got := bodies(t, dir)
			want = append(want, string(rec("next", "a", 4)))
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("archive holds %v, want %v", got, want)
			}
		})
	}
}

func TestOpenRefusesToCutCompleteRecords(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 8, 100)
	seg := lastSegment(t, dir)
	data, _ := os.ReadFile(seg)
	data[headerSize+10] ^= 0x20 // inside the first record; complete records follow
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, testOpts(100)); err == nil {
		t.Fatal("Open cut or accepted a damaged middle record")
	}
	after, _ := os.ReadFile(seg)
	if !bytes.Equal(after, data) {
		t.Fatal("Open changed a damaged segment")
	}
}

func TestCrashBetweenSealAndNextSegment(t *testing.T) {
	for _, c := range []struct {
		name     string
		newSeg   int64 // bytes of the next segment left (-1: none)
		dropCkpt bool
	}{
		{"torn header", 20, false},
		{"empty file", 0, true},
		{"no next segment", -1, false},
		{"no next segment nor checkpoint", -1, true},
		{"zeroed header", headerSize, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			want := buildArchive(t, dir, 6, 3)
			w := mustOpen(t, dir, testOpts(3))
			if err := w.sealAndRoll(); err != nil {
				t.Fatal(err)
			}
			next := filepath.Join(dir, segmentName(w.seg.Index))
			w.Close()
			switch {
			case c.newSeg < 0:
				os.Remove(next)
			case c.newSeg == headerSize:
				os.WriteFile(next, make([]byte, headerSize), 0o644)
			default:
				os.Truncate(next, c.newSeg)
			}
			if c.dropCkpt {
				os.Remove(filepath.Join(dir, ckptName))
			}
			w = mustOpen(t, dir, testOpts(3))
			st := appendAll(t, w, rec("r000", "a", 1), rec("seven", "a", 3))
			if fmt.Sprint(st) != "[duplicate appended]" {
				t.Fatalf("statuses %v", st)
			}
			w.Close()
			want = append(want, string(rec("seven", "a", 3)))
			if got := bodies(t, dir); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("archive holds %v, want %v", got, want)
			}
		})
	}
}

func TestOpenRefusesACompleteRecordThatBreaksTheChain(t *testing.T) {
	for name, mk := range map[string]func() []byte{
		"wrong prev": func() []byte { b, _ := appendFrame(nil, kindRecord, Hash{1}, rec("x", "a", 9)); return b },
		"bad seal": func() []byte {
			b, _ := appendFrame(nil, kindSeal, Hash{}, make([]byte, sealBodySize))
			return b
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			buildArchive(t, dir, 4, 100)
			seg := lastSegment(t, dir)
			writeRaw(t, seg, mk())
			before, _ := os.ReadFile(seg)
			if _, err := Open(dir, testOpts(100)); err == nil {
				t.Fatal("Open accepted or cut a complete frame that breaks the chain")
			}
			if after, _ := os.ReadFile(seg); !bytes.Equal(after, before) {
				t.Fatal("Open changed the segment")
			}
		})
	}
}

func TestConflictingRecordAtAnArchivedPlace(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, testOpts(2))
	appendAll(t, w, rec("x1", "a", 1), rec("x2", "a", 2), rec("x3", "a", 3))
	check := func(w *Writer) {
		t.Helper()
		st := appendAll(t, w, rec("x1", "a", 1), rec("other", "a", 2), rec("x3", "a", 3), rec("x4", "a", 4))
		if fmt.Sprint(st) != "[duplicate conflict duplicate appended]" {
			t.Fatalf("statuses %v", st)
		}
	}
	check(w)
	w.Close()
	// After a restart, from the checkpoint and from a rescan.
	w = mustOpen(t, dir, testOpts(2))
	st := appendAll(t, w, rec("y", "a", 3), rec("x4", "a", 4))
	if fmt.Sprint(st) != "[conflict duplicate]" {
		t.Fatalf("after reopen: %v", st)
	}
	w.Close()
	os.Remove(filepath.Join(dir, ckptName))
	w = mustOpen(t, dir, testOpts(2))
	st = appendAll(t, w, rec("y", "a", 1), rec("x2", "a", 2))
	if fmt.Sprint(st) != "[conflict duplicate]" {
		t.Fatalf("after rescan: %v", st)
	}
	w.Close()
	if got := bodies(t, dir); len(got) != 4 {
		t.Fatalf("archive holds %d records, want 4", len(got))
	}
}
