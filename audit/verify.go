package audit

import (
	"crypto/ed25519"

	"github.com/buzzer-bet/buzzer/archive"
)

// Verify checks the archive in dir end to end: every segment header, frame
// checksum, chain link and seal signature (with pub), and every record: it
// must be canonical, its id unique, and its sequence the next of its stream
// key. On failure the error wraps the first *archive.Damage (file, byte
// offset, record number, reason).
func Verify(dir string, pub ed25519.PublicKey) (archive.Report, error) {
	return verify(nil, dir, pub)
}

func verify(fsys archive.FS, dir string, pub ed25519.PublicKey) (archive.Report, error) {
	ids := map[string]struct{}{}
	seqs := map[string]uint64{}
	return archive.Verify(fsys, dir, pub, archive.MaxRecordBytesLimit, func(ri archive.RecordInfo) error {
		r, err := DecodeCanonical(ri.Body)
		if err != nil {
			return err
		}
		if _, dup := ids[r.ID]; dup {
			return invalid("record id %s appears twice", r.ID)
		}
		ids[r.ID] = struct{}{}
		k := r.StreamKey()
		if r.Seq != seqs[k]+1 {
			return invalid("record %s has seq %d of %s, want %d", r.ID, r.Seq, k, seqs[k]+1)
		}
		seqs[k] = r.Seq
		return nil
	})
}
