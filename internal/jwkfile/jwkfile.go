// Package jwkfile keeps an Ed25519 signing key as a private JWK file: created
// once (through keyfile, so a crash or two processes starting together never
// leave two keys), read back on every start, and published as a public JWKS.
// The dev token keys, the dev location provider and the gateway's decision
// signer all keep their keys this way.
package jwkfile

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/keyfile"
)

// Key is an Ed25519 signing key and the kid it is published under.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// KeyID names a new key from its public half.
type KeyID func(ed25519.PublicKey) (string, error)

// Thumbprint names a key by its RFC 7638 thumbprint: stable and unique.
func Thumbprint(pub ed25519.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// Prefixed names a key prefix + a short hash of its public half, so that a
// kid says whose key it is.
func Prefixed(prefix string) KeyID {
	return func(pub ed25519.PublicKey) (string, error) {
		sum := sha256.Sum256(pub)
		return prefix + base64.RawURLEncoding.EncodeToString(sum[:9]), nil
	}
}

// Open reads the private JWK at path, first creating it from rand and
// naming it with kid if there is none. If another process creates it at the
// same moment, both use the key that was linked into place first. The
// file's directory must exist.
func Open(path string, rand io.Reader, kid KeyID) (Key, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		data, err = create(path, rand, kid)
	}
	if err != nil {
		return Key{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read or create the key file %s", path)
	}
	var jwk jose.JSONWebKey
	if err := json.Unmarshal(data, &jwk); err != nil {
		return Key{}, buzzer.Wrap(err, buzzer.EINVALID, "key file %s is not a JWK", path)
	}
	priv, ok := jwk.Key.(ed25519.PrivateKey)
	if !ok || jwk.KeyID == "" || jwk.Algorithm != string(jose.EdDSA) {
		return Key{}, buzzer.Errorf(buzzer.EINVALID, "key file %s is not an EdDSA private JWK with a kid", path)
	}
	return Key{ID: jwk.KeyID, Private: priv}, nil
}

func create(path string, rand io.Reader, kid KeyID) ([]byte, error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, err
	}
	id, err := kid(pub)
	if err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(jose.JSONWebKey{Key: priv, KeyID: id, Algorithm: string(jose.EdDSA), Use: "sig"}, "", "  ")
	if err != nil {
		return nil, err
	}
	cur, _, err := keyfile.Create(path, data)
	return cur, err
}

// JWKS is the public key set that verifiers of k's signatures trust, as
// indented JSON.
func (k Key) JWKS() ([]byte, error) {
	pub := jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(jose.EdDSA), Use: "sig"}
	data, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}, "", "  ")
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the public JWKS of key %s", k.ID)
	}
	return data, nil
}
