package archive

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/keyfile"
)

// LoadOrCreateKey reads the Ed25519 seal key from path (PEM "PRIVATE KEY",
// PKCS #8), creating it with mode 0600 if the file does not exist. Creation
// writes a temporary file, fsyncs it, links it into place only if no key
// appeared meanwhile, and fsyncs the directory, so two starters never end up
// with different keys. The key belongs in the data directory, outside the
// archive directory that is shipped elsewhere.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return ParsePrivateKey(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit seal key %s", path)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot generate the audit seal key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the audit seal key")
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create %s", dir)
	}
	_, created, err := keyfile.Create(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot install the audit seal key %s", path)
	}
	if !created {
		return LoadOrCreateKey(path) // another starter won; use its key
	}
	return priv, nil
}

// ParsePrivateKey decodes a PEM PKCS #8 Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	bad := buzzer.Errorf(buzzer.EINVALID, "the audit seal key is not a PEM PKCS #8 Ed25519 private key")
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, bad
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, bad
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, bad
	}
	return priv, nil
}

// MarshalPublicKey encodes the seal verification key as PEM "PUBLIC KEY"
// (PKIX), the form `buzzer audit key` prints and `audit verify --pubkey`
// reads.
func MarshalPublicKey(pub ed25519.PublicKey) []byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		panic(err) // only for a malformed key, which ed25519 types cannot be
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// ParsePublicKey decodes a PEM PKIX Ed25519 public key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	bad := buzzer.Errorf(buzzer.EINVALID, "the public key is not a PEM PKIX Ed25519 public key")
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "PUBLIC KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, bad
	}
	k, err := x509.ParsePKIXPublicKey(b.Bytes)
	if err != nil {
		return nil, bad
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, bad
	}
	return pub, nil
}
