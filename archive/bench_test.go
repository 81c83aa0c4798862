package archive

import (
	"fmt"
	"testing"
)

// BenchmarkAppendSync measures one flush: 256 records of ~300 bytes
// appended and fsynced (the archiver's unit of durable work).
func BenchmarkAppendSync(b *testing.B) {
	w, err := Open(b.TempDir(), testOpts(1<<20))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	pad := make([]byte, 250)
	for i := range pad {
		pad[i] = 'x'
	}
	seq := uint64(0)
	batch := make([][]byte, 256)
	b.SetBytes(int64(len(batch) * 300))
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i] = fmt.Appendf(nil, "id-%d|k|%d|%s", seq, seq, pad)
		}
		if _, err := w.Append(batch); err != nil {
			b.Fatal(err)
		}
		if err := w.Sync(); err != nil {
			b.Fatal(err)
		}
	}
}
