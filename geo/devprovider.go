package geo

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer/internal/jwkfile"
)

// DevIssuer is the iss the dev provider puts in its tokens.
const DevIssuer = "buzzer-dev-geolocation"

// Files the dev provider keeps under dataDir/keys/.
const (
	devKeyFile  = "geo-provider.jwk"       // private Ed25519 JWK, mode 0600
	devJWKSFile = "geo-provider.jwks.json" // public JWKS, for anyone to read
)

// DevProvider stands in for a geolocation provider in dev mode: it holds an
// Ed25519 signing key under dataDir/keys/ and signs tokens with it, and it
// is the KeySource that `buzzer serve` trusts in dev mode. It must never be
// wired outside dev mode.
type DevProvider struct {
	kid  string
	priv ed25519.PrivateKey
	keys *ProviderKeys
	jwks []byte
}

// OpenDevProvider loads the dev provider key from dataDir/keys/, creating
// it (from rand) and its public JWKS if absent.
func OpenDevProvider(dataDir string, rand io.Reader) (*DevProvider, error) {
	dir := filepath.Join(dataDir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("geo dev provider: %w", err)
	}
	keyPath := filepath.Join(dir, devKeyFile)
	key, err := jwkfile.Open(keyPath, rand, jwkfile.Prefixed("dev-"))
	if err != nil {
		return nil, fmt.Errorf("geo dev provider: %w", err)
	}
	jwks, err := key.JWKS()
	if err != nil {
		return nil, err
	}
	keys, err := ParseJWKS(jwks)
	if err != nil {
		return nil, fmt.Errorf("geo dev provider: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, devJWKSFile), append(jwks, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("geo dev provider: %w", err)
	}
	return &DevProvider{kid: key.ID, priv: key.Private, keys: keys, jwks: jwks}, nil
}

// KeyID returns the kid of the dev key.
func (p *DevProvider) KeyID() string { return p.kid }

// JWKS returns the public JWKS document.
func (p *DevProvider) JWKS() []byte { return append([]byte(nil), p.jwks...) }

// ProviderKeys implements KeySource with the dev public key.
func (p *DevProvider) ProviderKeys(context.Context) (*ProviderKeys, error) { return p.keys, nil }

// Sign returns a compact geolocation token for c, signed with EdDSA. An
// empty c.Issuer becomes DevIssuer.
func (p *DevProvider) Sign(c Claims) (string, error) {
	if c.Issuer == "" {
		c.Issuer = DevIssuer
	}
	return signClaims(c, jose.SigningKey{Algorithm: jose.EdDSA, Key: p.priv}, p.kid)
}

func signClaims(c Claims, key jose.SigningKey, kid string) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{}).WithType(TokenType).WithHeader("kid", kid)
	signer, err := jose.NewSigner(key, opts)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
