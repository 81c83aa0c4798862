package rng_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const origin = "rng.test.buzzer.example/v1"

func newKey(t testing.TB, name string) *rng.KeySigner {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func verifierOf(t testing.TB, s rng.Signer) note.Verifier {
	t.Helper()
	v, err := rng.NewVerifier(s.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCheckpointBodyFormat(t *testing.T) {
	var h tlog.Hash
	for i := range h {
		h[i] = byte(i)
	}
	c := rng.Checkpoint{Origin: origin, Size: 1234, Hash: h}
	want := origin + "\n1234\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
	if got := string(c.Body()); got != want {
		t.Fatalf("Body = %q, want %q", got, want)
	}
	back, err := rng.ParseCheckpoint([]byte(want))
	if err != nil || back != c {
		t.Fatalf("ParseCheckpoint = %+v, %v", back, err)
	}
	// Extension lines are allowed by C2SP and ignored.
	back, err = rng.ParseCheckpoint([]byte(want + "extension line\n"))
	if err != nil || back != c {
		t.Fatalf("ParseCheckpoint with extension = %+v, %v", back, err)
	}
}

func TestParseCheckpointRejects(t *testing.T) {
	hash := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	for name, body := range map[string]string{
		"no newline":   origin + "\n1\n" + hash,
		"two lines":    origin + "\n1\n",
		"leading zero": origin + "\n01\n" + hash + "\n",
		"negative":     origin + "\n-1\n" + hash + "\n",
		"plus sign":    origin + "\n+1\n" + hash + "\n",
		"overflow":     origin + "\n99999999999999999999\n" + hash + "\n",
		"short hash":   origin + "\n1\nAAEC\n",
		"url base64":   origin + "\n1\n" + strings.ReplaceAll(hash, "+", "-") + "_\n",
		"empty origin": "\n1\n" + hash + "\n",
		"empty ext":    origin + "\n1\n" + hash + "\n\n",
		"no padding":   origin + "\n1\n" + strings.TrimSuffix(hash, "=") + "\n",
	} {
		if _, err := rng.ParseCheckpoint([]byte(body)); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: ParseCheckpoint = %v, want EINVALID", name, err)
		}
	}
}

func TestOpenCheckpoint(t *testing.T) {
	key := newKey(t, origin)
	c := rng.Checkpoint{Origin: origin, Size: 7, Hash: tlog.RecordHash([]byte("x"))}
	signed, err := rng.SignCheckpoint(c, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rng.OpenCheckpoint(signed, verifierOf(t, key))
	if err != nil || got != c {
		t.Fatalf("OpenCheckpoint = %+v, %v", got, err)
	}

	// Signed by another key, even one with the same name: rejected.
	other := newKey(t, origin)
	forged, err := rng.SignCheckpoint(c, other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = rng.OpenCheckpoint(forged, verifierOf(t, key))
	if buzzer.ErrorCode(err) != buzzer.EFORBIDDEN || buzzer.ErrorReason(err) != "checkpoint_signature" {
		t.Fatalf("checkpoint signed by another key: %v, want forbidden/checkpoint_signature", err)
	}

	// A valid signature moved onto other text: rejected.
	c2 := c
	c2.Size = 8
	sig := signed[bytes.Index(signed, []byte("\n\n"))+1:]
	moved := append(c2.Body(), sig...)
	if _, err := rng.OpenCheckpoint(moved, verifierOf(t, key)); buzzer.ErrorCode(err) != buzzer.EFORBIDDEN {
		t.Fatalf("signature moved to another body: %v, want forbidden", err)
	}

	// A key whose name differs from the origin line: rejected.
	named := newKey(t, "another.origin")
	c3 := c
	c3.Origin = origin
	wrongName, _ := rng.SignCheckpoint(c3, named)
	if _, err := rng.OpenCheckpoint(wrongName, verifierOf(t, named)); buzzer.ErrorCode(err) != buzzer.EFORBIDDEN {
		t.Fatalf("origin differing from key name: %v, want forbidden", err)
	}
}

// FuzzOpenCheckpoint: signed checkpoints come from servers being verified.
func FuzzOpenCheckpoint(f *testing.F) {
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		f.Fatal(err)
	}
	signer, _ := note.NewSigner(skey)
	v, _ := note.NewVerifier(vkey)
	good, _ := rng.SignCheckpoint(rng.Checkpoint{Origin: origin, Size: 3}, signer)
	f.Add(good)
	f.Add([]byte(origin + "\n1\nAAAA\n\n— x y\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := rng.OpenCheckpoint(msg, v)
		if err != nil {
			return
		}
		if c.Origin != origin || c.Size < 0 {
			t.Fatalf("accepted a checkpoint with origin %q size %d", c.Origin, c.Size)
		}
	})
}

func FuzzParseCheckpoint(f *testing.F) {
	f.Add([]byte(origin + "\n1234\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"))
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next\n"))
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := rng.ParseCheckpoint(body)
		if err != nil {
			return
		}
		// An accepted body without extensions re-formats to itself.
		if bytes.Count(body, []byte("\n")) == 3 && !bytes.Equal(c.Body(), body) {
			t.Fatalf("Body() = %q, want %q", c.Body(), body)
		}
	})
}

func TestLoadOrCreateKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys", "rng.key")
	s1, err := rng.LoadOrCreateKeyFile(path, origin)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode = %v, %v; want 0600", st.Mode(), err)
	}
	s2, err := rng.LoadOrCreateKeyFile(path, origin)
	if err != nil {
		t.Fatal(err)
	}
	if s1.VerifierKey() != s2.VerifierKey() || s1.KeyHash() != s2.KeyHash() {
		t.Fatal("reloading the key file gave another key")
	}
	if !strings.HasPrefix(s1.VerifierKey(), origin+"+") {
		t.Fatalf("verifier key %q is not named %q", s1.VerifierKey(), origin)
	}
	// The reloaded signer's signatures verify with the first verifier key.
	signed, err := rng.SignCheckpoint(rng.Checkpoint{Origin: origin, Size: 1}, s2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rng.OpenCheckpoint(signed, verifierOf(t, s1)); err != nil {
		t.Fatal(err)
	}
	if _, err := rng.LoadOrCreateKeyFile(path, "other.origin"); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("loading a key under another origin: %v, want EINVALID", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("not a key"), 0o600)
	if _, err := rng.LoadOrCreateKeyFile(bad, origin); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("loading a malformed key: %v, want EINVALID", err)
	}
}
