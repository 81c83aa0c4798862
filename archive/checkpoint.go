package archive

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
)

// checkpoint is the de-duplication state as of the end of a sealed segment:
// derived data that saves Open from re-reading every sealed segment. It is
// written after each seal (temp file, fsync, rename, directory fsync) and
// ignored when missing or damaged, in which case Open rebuilds it by
// scanning.
type checkpoint struct {
	Version int               `json:"version"`
	Segment uint64            `json:"segment"` // last sealed segment covered
	Total   uint64            `json:"total"`   // records in segments 0..Segment
	Head    Hash              `json:"head"`
	HWM     map[string]uint64 `json:"hwm"`
	Recent  []recentEntry     `json:"recent"` // oldest first
}

// MarshalText encodes a hash as hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h[:])), nil }

// UnmarshalText decodes a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	var out Hash
	n, err := hex.Decode(out[:], b)
	if err != nil || n != len(out) || len(b) != 2*len(out) {
		return &json.UnsupportedValueError{Str: "hash"}
	}
	*h = out
	return nil
}

func (w *Writer) writeCheckpoint(segment uint64) error {
	ck := checkpoint{Version: 1, Segment: segment, Total: w.total, Head: w.head, HWM: w.hwm, Recent: w.recentInOrder()}
	js, err := json.Marshal(ck)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(js)
	data := append(js, '\n')
	data = append(data, hex.EncodeToString(sum[:])...)
	data = append(data, '\n')
	tmp := filepath.Join(w.dir, ckptName+".tmp")
	f, err := w.fs.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := w.fs.Rename(tmp, filepath.Join(w.dir, ckptName)); err != nil {
		return err
	}
	return w.fs.SyncDir(w.dir)
}

// parseCheckpoint decodes a checkpoint file, reporting false for anything
// malformed.
func parseCheckpoint(data []byte) (checkpoint, bool) {
	var ck checkpoint
	js, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return ck, false
	}
	sum := sha256.Sum256(js)
	if string(rest) != hex.EncodeToString(sum[:])+"\n" {
		return ck, false
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ck); err != nil || ck.Version != 1 {
		return checkpoint{}, false
	}
	if ck.HWM == nil {
		ck.HWM = map[string]uint64{}
	}
	return ck, true
}

func (w *Writer) loadCheckpoint() (checkpoint, bool) {
	data, err := readAll(w.fs, filepath.Join(w.dir, ckptName))
	if err != nil {
		return checkpoint{}, false
	}
	return parseCheckpoint(data)
}
