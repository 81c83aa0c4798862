package geo

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TokenType is the JWS "typ" header every geolocation token must carry
// (explicit typing, RFC 8725 §3.11), so no other JWT can stand in for one.
const TokenType = "geo+jwt"

// Claims is the payload of a geolocation token: the signals the provider's
// SDK harvested on the device, and whom and what the fix was made for.
type Claims struct {
	Issuer    string `json:"iss,omitempty"`
	PlayerID  string `json:"player_id"`
	SessionID string `json:"session_id"`
	// Challenge is the one-time value the service issued for this player
	// session (Service.IssueChallenge).
	Challenge string `json:"challenge"`
	IssuedAt  int64  `json:"iat"` // seconds since the Unix epoch
	Expiry    int64  `json:"exp"` // seconds since the Unix epoch

	GPS        GPSFix      `json:"gps"`
	CellTowers []CellTower `json:"cell_towers,omitempty"`
	WiFiBSSIDs []string    `json:"wifi_bssids,omitempty"`
	IP         string      `json:"ip"`
	Risk       RiskFlags   `json:"risk"`
}

// GPSFix is the device's satellite fix; AccuracyM is its horizontal
// accuracy radius in metres.
type GPSFix struct {
	Lat       float64 `json:"lat"`
	Lon       float64 `json:"lon"`
	AccuracyM float64 `json:"accuracy_m"`
}

// CellTower identifies a serving or neighbouring cell. MCC and MNC are
// digit strings because leading zeros in an MNC are significant.
type CellTower struct {
	MCC string `json:"mcc"`
	MNC string `json:"mnc"`
	LAC int64  `json:"lac"`
	CID int64  `json:"cid"`
}

// RiskFlags are the provider's detections on the device; any true flag
// denies.
type RiskFlags struct {
	VPN           bool `json:"vpn"`
	Proxy         bool `json:"proxy"`
	Emulator      bool `json:"emulator"`
	RemoteDesktop bool `json:"remote_desktop"`
	SpoofingTool  bool `json:"spoofing_tool"`
}

// raised returns the deny reason of the first raised flag, or "".
func (r RiskFlags) raised() string {
	switch {
	case r.VPN:
		return "risk_vpn"
	case r.Proxy:
		return "risk_proxy"
	case r.Emulator:
		return "risk_emulator"
	case r.RemoteDesktop:
		return "risk_remote_desktop"
	case r.SpoofingTool:
		return "risk_spoofing_tool"
	}
	return ""
}

// Limits on outside input; a token past them is malformed.
const (
	maxIDLen      = 128
	maxCellTowers = 64
	maxBSSIDs     = 128
)

// ParseClaims decodes and validates a token payload. It checks shape and
// ranges only; signature, time, identity and location checks belong to
// Service.Check.
func ParseClaims(payload []byte) (Claims, error) {
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return Claims{}, fmt.Errorf("decode claims: %w", err)
	}
	if dec.More() {
		return Claims{}, errors.New("trailing data after claims")
	}
	if err := c.validate(); err != nil {
		return Claims{}, err
	}
	return c, nil
}

func (c *Claims) validate() error {
	for name, v := range map[string]string{"player_id": c.PlayerID, "session_id": c.SessionID, "challenge": c.Challenge} {
		if v == "" || len(v) > maxIDLen {
			return fmt.Errorf("%s missing or longer than %d bytes", name, maxIDLen)
		}
	}
	if len(c.Issuer) > maxIDLen {
		return errors.New("iss too long")
	}
	if c.IssuedAt <= 0 || c.Expiry <= 0 {
		return errors.New("iat and exp are required")
	}
	if err := (Point{Lat: c.GPS.Lat, Lon: c.GPS.Lon}).validate(); err != nil {
		return fmt.Errorf("gps: %w", err)
	}
	if c.GPS.Lat == 0 && c.GPS.Lon == 0 {
		return errors.New("gps fix missing")
	}
	if !(c.GPS.AccuracyM > 0) || math.IsInf(c.GPS.AccuracyM, 0) {
		return errors.New("gps accuracy_m must be positive")
	}
	if len(c.CellTowers) > maxCellTowers {
		return fmt.Errorf("more than %d cell towers", maxCellTowers)
	}
	for i, t := range c.CellTowers {
		if !digits(t.MCC, 3, 3) || !digits(t.MNC, 2, 3) || t.LAC < 0 || t.CID < 0 || t.LAC > 1<<32 || t.CID > 1<<40 {
			return fmt.Errorf("cell tower %d malformed", i)
		}
	}
	if len(c.WiFiBSSIDs) > maxBSSIDs {
		return fmt.Errorf("more than %d Wi-Fi BSSIDs", maxBSSIDs)
	}
	for i, b := range c.WiFiBSSIDs {
		if !isBSSID(b) {
			return fmt.Errorf("wifi bssid %d malformed", i)
		}
	}
	if _, err := c.DeviceIP(); err != nil {
		return err
	}
	return nil
}

// DeviceIP returns the device's IP address from the claims.
func (c *Claims) DeviceIP() (netip.Addr, error) {
	ip, err := netip.ParseAddr(c.IP)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, errors.New("ip malformed")
	}
	return ip.Unmap(), nil
}

// isBSSID reports whether s is a 48-bit MAC address written as six pairs
// of hex digits separated by ':' or '-'.
func isBSSID(s string) bool {
	if len(s) != 17 {
		return false
	}
	for i := 0; i < 17; i++ {
		c := s[i]
		if i%3 == 2 {
			if c != ':' && c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func digits(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// KeySource yields the geolocation provider's current verification keys.
// Implementations fetch and cache the provider's JWKS; a failure means the
// keys cannot be had right now.
type KeySource interface {
	ProviderKeys(ctx context.Context) (*ProviderKeys, error)
}

// ProviderKeys is a validated set of provider verification keys, each
// pinned to the one algorithm its key type allows (ES256 for P-256 EC keys,
// EdDSA for Ed25519 keys).
type ProviderKeys struct {
	byKID map[string]providerKey
}

type providerKey struct {
	alg jose.SignatureAlgorithm
	key any
}

// StaticKeys is a KeySource with a fixed key set (a JWKS file the operator
// configured, or the dev provider's key).
type StaticKeys struct{ Keys *ProviderKeys }

// ProviderKeys returns the fixed set.
func (s StaticKeys) ProviderKeys(context.Context) (*ProviderKeys, error) {
	if s.Keys == nil {
		return nil, errors.New("geo: no provider keys configured")
	}
	return s.Keys, nil
}

// ParseJWKS parses a provider's JWKS document. Keys with a type this
// package does not verify with (RSA, symmetric, other curves) or with a use
// other than "sig" are skipped; a private key, a key without a kid, a
// duplicate kid, or a declared alg that does not match the key type is an
// error, as is a set with no usable key.
func ParseJWKS(data []byte) (*ProviderKeys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	return NewProviderKeys(set)
}

// NewProviderKeys validates set as ParseJWKS does.
func NewProviderKeys(set jose.JSONWebKeySet) (*ProviderKeys, error) {
	pk := &ProviderKeys{byKID: map[string]providerKey{}}
	for i, k := range set.Keys {
		if k.KeyID == "" {
			return nil, fmt.Errorf("jwks key %d has no kid", i)
		}
		if _, dup := pk.byKID[k.KeyID]; dup {
			return nil, fmt.Errorf("jwks kid %q appears twice", k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		var alg jose.SignatureAlgorithm
		switch key := k.Key.(type) {
		case *ecdsa.PublicKey:
			if key.Curve != elliptic.P256() {
				continue
			}
			alg = jose.ES256
		case ed25519.PublicKey:
			alg = jose.EdDSA
		case *ecdsa.PrivateKey, ed25519.PrivateKey:
			return nil, fmt.Errorf("jwks kid %q holds a private key", k.KeyID)
		default:
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			return nil, fmt.Errorf("jwks kid %q declares alg %q for a key that verifies only %s", k.KeyID, k.Algorithm, alg)
		}
		pk.byKID[k.KeyID] = providerKey{alg: alg, key: k.Key}
	}
	if len(pk.byKID) == 0 {
		return nil, errors.New("jwks has no ES256 or EdDSA signing key")
	}
	return pk, nil
}

// Len returns the number of usable keys.
func (p *ProviderKeys) Len() int { return len(p.byKID) }

var allowedAlgs = []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}

// errSignature marks every failure to establish that the provider signed
// the token; callers deny without saying which check failed.
var errSignature = errors.New("geolocation token signature not verified")

// parsedToken is a compact JWS whose header passed the structural checks
// but whose signature is not yet verified.
type parsedToken struct {
	jws *jose.JSONWebSignature
	kid string
	alg string
}

// parseCompact parses a compact JWS and checks its protected header: only
// ES256/EdDSA, a kid, typ geo+jwt, and none of the header parameters that
// could point verification at attacker-chosen keys or change how the
// payload is read (jwk, jku, x5u, x5c, crit, b64).
func parseCompact(raw string) (*parsedToken, error) {
	if strings.Count(raw, ".") != 2 {
		return nil, errors.New("not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(raw, allowedAlgs)
	if err != nil {
		return nil, err
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if h.KeyID == "" {
		return nil, errors.New("no kid")
	}
	if h.JSONWebKey != nil {
		return nil, errors.New("embedded jwk not accepted")
	}
	for _, forbidden := range []jose.HeaderKey{"jku", "x5u", "x5c", "crit", "b64"} {
		if _, ok := h.ExtraHeaders[forbidden]; ok {
			return nil, fmt.Errorf("header %s not accepted", forbidden)
		}
	}
	typ, _ := h.ExtraHeaders[jose.HeaderType].(string)
	if t := strings.ToLower(typ); t != TokenType && t != "application/"+TokenType {
		return nil, fmt.Errorf("typ %q is not %s", typ, TokenType)
	}
	return &parsedToken{jws: jws, kid: h.KeyID, alg: h.Algorithm}, nil
}

// verify checks the signature with the key the kid names, requiring the
// header alg to be the one pinned to that key, and returns the payload.
func (t *parsedToken) verify(keys *ProviderKeys) ([]byte, error) {
	k, ok := keys.byKID[t.kid]
	if !ok || string(k.alg) != t.alg {
		return nil, errSignature
	}
	payload, err := t.jws.Verify(k.key)
	if err != nil {
		return nil, errSignature
	}
	return payload, nil
}

// unixTime converts NumericDate seconds.
func unixTime(s int64) time.Time { return time.Unix(s, 0) }
