package archive

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// memFS is a read-only in-memory copy of an archive, so the sweeps below can
// damage thousands of variants without touching the disk.
type memFS map[string][]byte

type memFile struct {
	*bytes.Reader
	name string
	size int64
}

type memInfo struct {
	name string
	size int64
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() fs.FileMode  { return 0o444 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }

var errReadOnly = errors.New("read-only memFS")

func (f *memFile) Write([]byte) (int, error)       { return 0, errReadOnly }
func (f *memFile) Close() error                    { return nil }
func (f *memFile) Sync() error                     { return errReadOnly }
func (f *memFile) Truncate(int64) error            { return errReadOnly }
func (f *memFile) Chmod(fs.FileMode) error         { return errReadOnly }
func (f *memFile) Stat() (fs.FileInfo, error)      { return memInfo{filepath.Base(f.name), f.size}, nil }
func (m memFS) MkdirAll(string, fs.FileMode) error { return errReadOnly }
func (m memFS) Remove(string) error                { return errReadOnly }
func (m memFS) Rename(string, string) error        { return errReadOnly }
func (m memFS) SyncDir(string) error               { return errReadOnly }

func (m memFS) OpenFile(name string, flag int, _ fs.FileMode) (File, error) {
	if flag != os.O_RDONLY {
		return nil, errReadOnly
	}
	b, ok := m[filepath.Base(name)]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return &memFile{Reader: bytes.NewReader(b), name: name, size: int64(len(b))}, nil
}

type memEntry string

func (e memEntry) Name() string               { return string(e) }
func (e memEntry) IsDir() bool                { return false }
func (e memEntry) Type() fs.FileMode          { return 0 }
func (e memEntry) Info() (fs.FileInfo, error) { return memInfo{name: string(e)}, nil }

func (m memFS) ReadDir(string) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	for n := range m {
		out = append(out, memEntry(n))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (m memFS) clone() memFS {
	c := memFS{}
	for k, v := range m {
		c[k] = bytes.Clone(v)
	}
	return c
}

func loadMem(t *testing.T, dir string) memFS {
	t.Helper()
	m := memFS{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) != segmentSuffix {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}

// layout maps each segment file to the start offsets of its header (0) and
// frames, from an undamaged walk.
func layout(t *testing.T, m memFS) map[string][]int64 {
	t.Helper()
	out := map[string][]int64{}
	for name := range m {
		out[name] = []int64{0}
	}
	_, err := Walk(m, "/arch", nil, 0, func(r RecordInfo) error {
		n := filepath.Base(r.File)
		out[n] = append(out[n], r.Offset)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range m {
		off := len(b) - sealFrame
		if off < headerSize {
			continue
		}
		if f, st, _ := decodeFrame(b[off:], DefaultMaxRecordBytes); st == frameOK && f.Kind == kindSeal {
			out[name] = append(out[name], int64(off))
		}
	}
	return out
}

func containing(starts []int64, pos int64) int64 {
	best := int64(0)
	for _, s := range starts {
		if s <= pos && s >= best {
			best = s
		}
	}
	return best
}

func pubKey(seed byte) ed25519.PublicKey { return testKey(seed).Public().(ed25519.PublicKey) }

func damageOf(t *testing.T, err error) *Damage {
	t.Helper()
	var d *Damage
	if !errors.As(err, &d) {
		t.Fatalf("error %v carries no *Damage", err)
	}
	return d
}

func TestVerifyNamesEveryFlippedByte(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 10, 4) // segments 0 and 1 sealed, 2 active with 2 records
	orig := loadMem(t, dir)
	if len(orig) != 3 {
		t.Fatalf("%d segments", len(orig))
	}
	if _, err := Verify(orig, "/arch", pubKey(1), 0, nil); err != nil {
		t.Fatalf("undamaged archive: %v", err)
	}
	starts := layout(t, orig)
	checked := 0
	for name, data := range orig {
		for pos := range data {
			for _, mask := range []byte{0x01, 0xFF} {
				m := orig.clone()
				m[name][pos] ^= mask
				_, err := Verify(m, "/arch", pubKey(1), 0, nil)
				if err == nil {
					t.Fatalf("%s byte %d ^ %#x: not detected", name, pos, mask)
				}
				d := damageOf(t, err)
				if filepath.Base(d.File) != name || d.Offset != containing(starts[name], int64(pos)) {
					t.Fatalf("%s byte %d ^ %#x: reported %s offset %d (%s), want offset %d",
						name, pos, mask, d.File, d.Offset, d.Reason, containing(starts[name], int64(pos)))
				}
				checked++
			}
		}
	}
	t.Logf("%d damaged variants detected and located", checked)
}

func TestVerifyNamesARemovedRecord(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 10, 4)
	orig := loadMem(t, dir)
	starts := layout(t, orig)
	last := segmentName(2)
	removed := 0
	for name, offs := range starts {
		data := orig[name]
		for i := 1; i < len(offs); i++ { // offs[0] is the header
			end := int64(len(data))
			if i+1 < len(offs) {
				end = offs[i+1]
			}
			if data[offs[i]] == kindSeal {
				continue
			}
			if name == last && i == len(offs)-1 {
				// The newest unsealed record has nothing after it to
				// disagree: a documented limit (see doc.go).
				continue
			}
			m := orig.clone()
			m[name] = append(bytes.Clone(data[:offs[i]]), data[end:]...)
			_, err := Verify(m, "/arch", pubKey(1), 0, nil)
			if err == nil {
				t.Fatalf("removing the record at %s:%d was not detected", name, offs[i])
			}
			if d := damageOf(t, err); filepath.Base(d.File) != name || d.Offset != offs[i] {
				t.Fatalf("removed %s:%d, reported %s:%d (%s)", name, offs[i], d.File, d.Offset, d.Reason)
			}
			removed++
		}
	}
	if removed != 9 {
		t.Fatalf("checked %d removals, want 9", removed)
	}
	// A whole sealed segment removed, the later ones renumbered.
	m := orig.clone()
	m[segmentName(1)] = m[segmentName(2)]
	delete(m, segmentName(2))
	if _, err := Verify(m, "/arch", pubKey(1), 0, nil); err == nil || filepath.Base(damageOf(t, err).File) != segmentName(1) {
		t.Fatalf("removed segment: %v", err)
	}
	// A segment file missing from the middle.
	m = orig.clone()
	delete(m, segmentName(1))
	if _, err := Verify(m, "/arch", pubKey(1), 0, nil); err == nil {
		t.Fatal("a missing segment was not detected")
	}
	// The first segment removed.
	m = orig.clone()
	delete(m, segmentName(0))
	if _, err := Verify(m, "/arch", pubKey(1), 0, nil); err == nil {
		t.Fatal("a missing first segment was not detected")
	}
}

func TestVerifyDetectsReorderedSegments(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 13, 4)
	orig := loadMem(t, dir)
	m := orig.clone()
	m[segmentName(1)], m[segmentName(2)] = m[segmentName(2)], m[segmentName(1)]
	_, err := Verify(m, "/arch", pubKey(1), 0, nil)
	if err == nil {
		t.Fatal("reordered segments were not detected")
	}
	if d := damageOf(t, err); filepath.Base(d.File) != segmentName(1) || d.Offset != 0 || d.Record != 4 {
		t.Fatalf("reported %+v", d)
	}
}

func TestVerifyRejectsASealFromAnotherKey(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 10, 4)
	orig := loadMem(t, dir)
	_, err := Verify(orig, "/arch", pubKey(2), 0, nil)
	if err == nil {
		t.Fatal("seals verified with the wrong public key")
	}
	d := damageOf(t, err)
	if filepath.Base(d.File) != segmentName(0) || d.Offset != int64(len(orig[segmentName(0)])-sealFrame) {
		t.Fatalf("reported %+v", d)
	}

	// A forger who rewrites segment 0's seal with their own key, keeping
	// every other byte, is caught the same way.
	m := orig.clone()
	b := m[segmentName(0)]
	off := len(b) - sealFrame
	f, _, _ := decodeFrame(b[off:], DefaultMaxRecordBytes)
	sl := decodeSeal(f.Body)
	forged, _ := appendFrame(bytes.Clone(b[:off]), kindSeal, f.Prev, encodeSeal(testKey(3), sl.Index, sl.Count, f.Prev, sl.FileHash))
	m[segmentName(0)] = forged
	if _, err := Verify(m, "/arch", pubKey(1), 0, nil); err == nil || damageOf(t, err).Offset != int64(off) {
		t.Fatalf("forged seal: %v", err)
	}
	if _, err := Verify(m, "/arch", pubKey(3), 0, nil); err == nil {
		t.Fatal("segment 1's seal verified with the forger's key")
	}
}

func TestVerifyRejectsAppendedDataAfterSeal(t *testing.T) {
	dir := t.TempDir()
	buildArchive(t, dir, 10, 4)
	m := loadMem(t, dir)
	b := m[segmentName(0)]
	extra, _ := appendFrame(nil, kindRecord, Hash{}, rec("x", "k", 1))
	m[segmentName(0)] = append(bytes.Clone(b), extra...)
	if _, err := Verify(m, "/arch", pubKey(1), 0, nil); err == nil {
		t.Fatal("data after a seal was accepted")
	}
}
