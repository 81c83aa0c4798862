package rng

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/keyfile"
	"golang.org/x/mod/sumdb/note"
)

// Signer signs checkpoints: a note.Signer that also knows its public verifier
// key (signed-note verifier format), which the service publishes. The key
// file signer (LoadOrCreateKeyFile) is the default; pkcs11.Signer keeps the
// key in a hardware security module.
type Signer interface {
	note.Signer
	VerifierKey() string
}

// KeySigner is a Signer holding an Ed25519 private key in memory.
type KeySigner struct {
	note.Signer
	vkey string
}

// VerifierKey returns the public verifier key in signed-note format.
func (k *KeySigner) VerifierKey() string { return k.vkey }

// NewKeySigner parses a signed-note private key ("PRIVATE+KEY+name+hash+key").
func NewKeySigner(skey string) (*KeySigner, error) {
	skey = strings.TrimSpace(skey)
	s, err := note.NewSigner(skey)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "malformed signer key")
	}
	// note.NewSigner validated the format: PRIVATE+KEY+name+hash+base64(alg||seed).
	parts := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "signer key must be an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(s.Name(), pub)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "malformed signer key")
	}
	return &KeySigner{Signer: s, vkey: vkey}, nil
}

// LoadOrCreateKeyFile returns the signer whose private key is in path,
// creating a fresh Ed25519 key named origin there (mode 0600) if the file does
// not exist. An existing key with another name is refused, so a log never
// silently changes identity.
func LoadOrCreateKeyFile(path, origin string) (*KeySigner, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKeyFile(path, origin)
	}
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "reading the RNG signing key %s failed", path)
	}
	s, err := NewKeySigner(string(b))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "RNG signing key %s is malformed", path)
	}
	if s.Name() != origin {
		return nil, buzzer.Errorf(buzzer.EINVALID, "RNG signing key %s is named %q, not the log origin %q", path, s.Name(), origin)
	}
	return s, nil
}

func createKeyFile(path, origin string) (*KeySigner, error) {
	skey, _, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "log origin %q is not a valid key name", origin)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "creating the key directory failed")
	}
	// Another process may have created the key meanwhile: then use its key.
	_, created, err := keyfile.Create(path, []byte(skey+"\n"))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "writing the RNG signing key %s failed", path)
	}
	if !created {
		return LoadOrCreateKeyFile(path, origin)
	}
	return NewKeySigner(skey)
}
