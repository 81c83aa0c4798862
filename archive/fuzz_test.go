package archive

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
)

func seedSegments(f *testing.F) {
	dir := f.TempDir()
	w, err := Open(dir, testOpts(3))
	if err != nil {
		f.Fatal(err)
	}
	for i := 1; i <= 7; i++ {
		if _, err := w.Append([][]byte{rec(string(rune('a'+i)), "k", uint64(i))}); err != nil {
			f.Fatal(err)
		}
	}
	w.Sync()
	w.Close()
	for _, n := range []uint64{0, 1, 2} {
		b, err := os.ReadFile(filepath.Join(dir, segmentName(n)))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{})
	f.Add(header{}.encode())
}

// FuzzScanSegment feeds arbitrary bytes to the segment parser the verifier
// and recovery use on files read from disk.
func FuzzScanSegment(f *testing.F) {
	seedSegments(f)
	pub := testKey(1).Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		var n uint64
		s := scanSegment("seg", data, 0, Hash{}, 0, pub, 1<<16, func(r RecordInfo) error {
			if r.Number != n || len(r.Body) == 0 {
				t.Fatalf("record %d reported as %d", n, r.Number)
			}
			n++
			return nil
		})
		if s.bad == nil && s.end != int64(len(data)) {
			t.Fatalf("clean scan ended at %d of %d bytes", s.end, len(data))
		}
		if s.bad != nil && (s.bad.Offset < 0 || s.bad.Offset > int64(len(data))) {
			t.Fatalf("damage offset %d outside %d bytes", s.bad.Offset, len(data))
		}
		if s.count != n {
			t.Fatalf("count %d, visited %d", s.count, n)
		}
		if s.bad != nil {
			validFrameAfter(data, s.bad.Offset, 1<<16)
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(MarshalPublicKey(testKey(1).Public().(ed25519.PublicKey)))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(data)
		if err != nil {
			return
		}
		again, err := ParsePublicKey(MarshalPublicKey(pub))
		if err != nil || !bytes.Equal(again, pub) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	dir := f.TempDir()
	w, err := Open(dir, testOpts(1))
	if err != nil {
		f.Fatal(err)
	}
	w.Append([][]byte{rec("a", "k", 1), rec("b", "k", 2), rec("c", "j", 1)})
	w.Close()
	b, err := os.ReadFile(filepath.Join(dir, ckptName))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ck, ok := parseCheckpoint(data)
		if ok && ck.HWM == nil {
			t.Fatal("accepted checkpoint has a nil map")
		}
	})
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "audit-seal.key")
	k1, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi.Mode(), err)
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || !k1.Equal(k2) {
		t.Fatalf("reloaded a different key: %v", err)
	}
	pub, err := ParsePublicKey(MarshalPublicKey(k1.Public().(ed25519.PublicKey)))
	if err != nil || !pub.Equal(k1.Public()) {
		t.Fatalf("public key round trip: %v", err)
	}
	os.WriteFile(path, []byte("not a key"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil {
		t.Fatal("a garbage key file was accepted")
	}
	if _, err := ParsePublicKey(MarshalPublicKey(k1.Public().(ed25519.PublicKey))[:40]); err == nil {
		t.Fatal("a truncated public key was accepted")
	}
}

func FuzzParsePrivateKey(f *testing.F) {
	path := filepath.Join(f.TempDir(), "k")
	if _, err := LoadOrCreateKey(path); err != nil {
		f.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParsePrivateKey(data)
		if err == nil && len(k) != ed25519.PrivateKeySize {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
	})
}
