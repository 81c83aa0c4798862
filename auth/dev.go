package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/jwkfile"
)

// Dev-mode identity: the issuer and audiences of the tokens DevKeys signs.
const (
	DevIssuer      = "buzzer-dev"
	PlayerAudience = "buzzer"
	AdminAudience  = "buzzer-admin"
	// OperatorRole is the role admin tokens carry and the admin verifier
	// requires.
	OperatorRole = "operator"
)

// DevKeys are the dev-mode signing keys under DATA_DIR/keys/: one Ed25519
// key for players and a separate one for operators, each with the public
// JWKS a verifier trusts. They are created once and reused, so tokens stay
// valid across restarts. Never use them in production.
type DevKeys struct {
	PlayerJWKSPath, AdminJWKSPath string
	player, admin                 devKey
}

type devKey struct {
	kid  string
	priv ed25519.PrivateKey
}

// LoadOrCreateDevKeys loads the dev keys under dataDir/keys, creating any
// that are missing. Concurrent callers (a serve and a `dev token`) agree on
// one key: creation is an exclusive link, and the loser reads the winner's.
func LoadOrCreateDevKeys(dataDir string) (*DevKeys, error) {
	if dataDir == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "data dir must be set")
	}
	dir := filepath.Join(dataDir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create the dev key directory %s", dir)
	}
	k := &DevKeys{
		PlayerJWKSPath: filepath.Join(dir, "player.jwks.json"),
		AdminJWKSPath:  filepath.Join(dir, "admin.jwks.json"),
	}
	var err error
	if k.player, err = loadOrCreateKey(filepath.Join(dir, "player.jwk"), k.PlayerJWKSPath); err != nil {
		return nil, err
	}
	if k.admin, err = loadOrCreateKey(filepath.Join(dir, "admin.jwk"), k.AdminJWKSPath); err != nil {
		return nil, err
	}
	return k, nil
}

func loadOrCreateKey(privPath, jwksPath string) (devKey, error) {
	key, err := jwkfile.Open(privPath, rand.Reader, jwkfile.Thumbprint)
	if err != nil {
		return devKey{}, err
	}
	if err := ensureJWKS(jwksPath, key); err != nil {
		return devKey{}, err
	}
	return devKey{kid: key.ID, priv: key.Private}, nil
}

// ensureJWKS writes the public JWKS of key unless the file already holds it.
func ensureJWKS(path string, key jwkfile.Key) error {
	data, err := key.JWKS()
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, data) {
		return nil
	}
	tmp, err := writeTemp(filepath.Dir(path), data, 0o644)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot write dev JWKS %s", path)
	}
	return nil
}

// writeTemp writes data to a new file in dir with mode perm, synced.
func writeTemp(dir string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot write in %s", dir)
	}
	name := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot write in %s", dir)
	}
	return name, nil
}

// PlayerToken signs a player token for the player verifier of a dev-mode
// serve on the same data dir.
func (k *DevKeys) PlayerToken(playerID, jurisdiction string, ttl time.Duration, now time.Time) (string, error) {
	if playerID == "" {
		return "", buzzer.Errorf(buzzer.EINVALID, "player id must be set")
	}
	return k.player.sign(PlayerAudience, playerID, jurisdiction, nil, ttl, now)
}

// AdminToken signs an operator token (roles ["operator"]) for the admin
// verifier of a dev-mode serve on the same data dir.
func (k *DevKeys) AdminToken(operator string, ttl time.Duration, now time.Time) (string, error) {
	if operator == "" {
		return "", buzzer.Errorf(buzzer.EINVALID, "operator id must be set")
	}
	return k.admin.sign(AdminAudience, operator, "", []string{OperatorRole}, ttl, now)
}

func (d devKey) sign(aud, sub, jurisdiction string, roles []string, ttl time.Duration, now time.Time) (string, error) {
	if ttl <= 0 {
		return "", buzzer.Errorf(buzzer.EINVALID, "token lifetime must be positive")
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot generate a token id")
	}
	payload, err := json.Marshal(struct {
		Iss          string   `json:"iss"`
		Sub          string   `json:"sub"`
		Aud          string   `json:"aud"`
		Exp          int64    `json:"exp"`
		Nbf          int64    `json:"nbf"`
		Iat          int64    `json:"iat"`
		Jti          string   `json:"jti"`
		Jurisdiction string   `json:"jurisdiction,omitempty"`
		Roles        []string `json:"roles,omitempty"`
	}{DevIssuer, sub, aud, now.Add(ttl).Unix(), now.Unix(), now.Unix(), hex.EncodeToString(jti[:]), jurisdiction, roles})
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode token claims")
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", d.kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: d.priv}, opts)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot build the token signer")
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot sign the token")
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the token")
	}
	return tok, nil
}

// DevPlayerConfig is the player verifier's configuration in dev mode.
func DevPlayerConfig(k *DevKeys) Config {
	c := DefaultConfig()
	c.Issuer, c.Audience, c.JWKSFile = DevIssuer, PlayerAudience, k.PlayerJWKSPath
	return c
}

// DevAdminConfig is the admin verifier's configuration in dev mode: another
// key, another audience, and the operator role required.
func DevAdminConfig(k *DevKeys) Config {
	c := DefaultConfig()
	c.Issuer, c.Audience, c.JWKSFile = DevIssuer, AdminAudience, k.AdminJWKSPath
	c.RequiredRole = OperatorRole
	return c
}
