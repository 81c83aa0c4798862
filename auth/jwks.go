package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// The only algorithms a key may be pinned to: asymmetric signatures
// (RFC 8725 §3.1). HMAC and "none" are absent on purpose.
var allowedAlgs = map[string]jose.SignatureAlgorithm{
	"RS256": jose.RS256,
	"PS256": jose.PS256,
	"ES256": jose.ES256,
	"EdDSA": jose.EdDSA,
}

const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 256
	maxKidBytes  = 256
	minRSABits   = 2048
)

// verifyKey is one trusted key, pinned to the one algorithm its JWK names.
type verifyKey struct {
	kid string
	alg jose.SignatureAlgorithm
	pub crypto.PublicKey
}

func (k *verifyKey) same(o *verifyKey) bool {
	if k.alg != o.alg {
		return false
	}
	eq, ok := k.pub.(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(o.pub)
}

// keySet is an immutable snapshot of the trusted keys.
type keySet struct {
	keys      map[string]*verifyKey
	fetchedAt time.Time
}

// rawJWK holds the members checked before the key material is parsed.
type rawJWK struct {
	Kty    string   `json:"kty"`
	Kid    string   `json:"kid"`
	Alg    string   `json:"alg"`
	Use    string   `json:"use"`
	KeyOps []string `json:"key_ops"`
	// Private or symmetric members: a JWKS that carries them is published by
	// mistake, and its key is not used.
	D    json.RawMessage `json:"d"`
	P    json.RawMessage `json:"p"`
	Q    json.RawMessage `json:"q"`
	DP   json.RawMessage `json:"dp"`
	DQ   json.RawMessage `json:"dq"`
	QI   json.RawMessage `json:"qi"`
	K    json.RawMessage `json:"k"`
	Priv json.RawMessage `json:"priv"`
}

// parseJWKS returns the usable signing keys of a JWKS document. Keys that are
// not for signatures, name no (or a disallowed) alg, or whose material does
// not fit their alg are skipped; a kid that appears twice is dropped as
// ambiguous. A document with no usable key is an error, so a broken
// publication never replaces working keys.
func parseJWKS(data []byte) (map[string]*verifyKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("jwks: not a JWK set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("jwks: no keys member")
	}
	if len(doc.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("jwks: %d keys, more than %d", len(doc.Keys), maxJWKSKeys)
	}
	keys := make(map[string]*verifyKey, len(doc.Keys))
	dup := map[string]bool{}
	for _, raw := range doc.Keys {
		k, ok := parseJWK(raw)
		if !ok {
			continue
		}
		if _, seen := keys[k.kid]; seen || dup[k.kid] {
			delete(keys, k.kid)
			dup[k.kid] = true
			continue
		}
		keys[k.kid] = k
	}
	if len(keys) == 0 {
		return nil, errors.New("jwks: no usable signing key")
	}
	return keys, nil
}

func parseJWK(raw json.RawMessage) (*verifyKey, bool) {
	var r rawJWK
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, false
	}
	alg, ok := allowedAlgs[r.Alg]
	if !ok || r.Kid == "" || len(r.Kid) > maxKidBytes {
		return nil, false
	}
	if r.Use != "" && r.Use != "sig" {
		return nil, false
	}
	if r.KeyOps != nil && !slices.Contains(r.KeyOps, "verify") {
		return nil, false
	}
	for _, m := range []json.RawMessage{r.D, r.P, r.Q, r.DP, r.DQ, r.QI, r.K, r.Priv} {
		if m != nil {
			return nil, false
		}
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil || !jwk.Valid() || !jwk.IsPublic() {
		return nil, false
	}
	if !keyFitsAlg(jwk.Key, alg) {
		return nil, false
	}
	return &verifyKey{kid: r.Kid, alg: alg, pub: jwk.Key}, true
}

// keyFitsAlg pins key types to algorithms, so an RSA key can never be used
// as an HMAC secret or an EC key with another curve's algorithm.
func keyFitsAlg(key any, alg jose.SignatureAlgorithm) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (alg == jose.RS256 || alg == jose.PS256) && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return alg == jose.ES256 && k.Curve == elliptic.P256()
	case ed25519.PublicKey:
		return alg == jose.EdDSA && len(k) == ed25519.PublicKeySize
	default:
		return false
	}
}

// loadJWKS reads the configured JWKS once.
func (v *Verifier) loadJWKS(ctx context.Context) (map[string]*verifyKey, error) {
	var data []byte
	if v.cfg.JWKSFile != "" {
		f, err := os.Open(v.cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks file: %w", err)
		}
		defer f.Close()
		data, err = io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
		if err != nil {
			return nil, fmt.Errorf("jwks file: %w", err)
		}
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
		if err != nil {
			return nil, fmt.Errorf("jwks url: %w", err)
		}
		req.Header.Set("Accept", "application/jwk-set+json, application/json")
		resp, err := v.client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("jwks fetch: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			return nil, fmt.Errorf("jwks fetch: status %d", resp.StatusCode)
		}
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
		if err != nil {
			return nil, fmt.Errorf("jwks fetch: %w", err)
		}
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks: larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(data)
}
