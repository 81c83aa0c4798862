package jwkfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
)

// TestOpenCreatesOnceAndReadsBack: the first Open creates the key, later
// ones (in this or another process) read the same key back, and processes
// starting at once all end up with the one key that was linked first.
func TestOpenCreatesOnceAndReadsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signer.jwk")
	keys := make([]Key, 16)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := Open(path, rand.Reader, Prefixed("gw-"))
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k.ID != keys[0].ID || !k.Private.Equal(keys[0].Private) {
			t.Fatalf("concurrent opens disagree: %s and %s", keys[0].ID, k.ID)
		}
	}
	if !strings.HasPrefix(keys[0].ID, "gw-") {
		t.Errorf("kid %q lacks its prefix", keys[0].ID)
	}
	again, err := Open(path, rand.Reader, Prefixed("other-"))
	if err != nil || again.ID != keys[0].ID {
		t.Fatalf("reopen: %v, kid %q, want %q", err, again.ID, keys[0].ID)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", fi.Mode(), err)
	}

	// The published set verifies what the key signs, under its kid.
	jwks, err := keys[0].JWKS()
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil || len(set.Key(keys[0].ID)) != 1 {
		t.Fatalf("JWKS %s: %v", jwks, err)
	}
	pub, ok := set.Key(keys[0].ID)[0].Key.(ed25519.PublicKey)
	if !ok || !ed25519.Verify(pub, []byte("m"), ed25519.Sign(keys[0].Private, []byte("m"))) {
		t.Fatal("the JWKS does not hold the key's public half")
	}
	if strings.Contains(string(jwks), `"d"`) {
		t.Fatal("the JWKS leaks the private key")
	}
}

func TestThumbprintKeyID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "player.jwk")
	k, err := Open(path, rand.Reader, Thumbprint)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := Thumbprint(k.Private.Public().(ed25519.PublicKey))
	if err != nil || tp != k.ID || len(tp) != 43 {
		t.Fatalf("kid %q, thumbprint %q (%v)", k.ID, tp, err)
	}
}

// TestOpenRefusesOtherKeys: a file that is not an EdDSA private JWK with a
// kid is refused as invalid and left as it is.
func TestOpenRefusesOtherKeys(t *testing.T) {
	dir := t.TempDir()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	pubOnly, _ := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: "k", Algorithm: string(jose.EdDSA)})
	noKid, _ := json.Marshal(jose.JSONWebKey{Key: priv, Algorithm: string(jose.EdDSA)})
	for name, data := range map[string][]byte{
		"not JSON":    []byte("-----BEGIN PRIVATE KEY-----"),
		"public only": pubOnly,
		"no kid":      noKid,
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(path, rand.Reader, Thumbprint); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: %v, want invalid", name, err)
		}
		if cur, _ := os.ReadFile(path); string(cur) != string(data) {
			t.Errorf("%s: the file was changed", name)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing", "k.jwk"), rand.Reader, Thumbprint); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Errorf("no directory: %v, want unavailable", err)
	}
}
