package gateway

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/internal/jwkfile"
)

// DecisionHeader carries the gateway's signed geolocation decision to the
// edge. The gateway removes any value a client sent and sets its own; an
// edge accepts it only with a valid gateway signature.
const DecisionHeader = "Buzzer-Geo-Decision"

// decisionType is the JWS typ of a forwarded decision, so no other token
// signed with the same key could stand in for one.
const decisionType = "geo-decision+jwt"

// decisionIssuer is the iss of every forwarded decision.
const decisionIssuer = "buzzer-gateway"

// MaxDecisionLifetime bounds a forwarded decision: it covers one proxied
// request, not a session.
const MaxDecisionLifetime = 30 * time.Second

// maxDecisionBytes bounds the header before parsing.
const maxDecisionBytes = 4096

// Dev key files under DATA_DIR/keys.
const (
	signerKeyFile  = "gateway.jwk"
	signerJWKSFile = "gateway.jwks.json"
)

// KeyFile and JWKSFile are where the gateway's signing key and its public
// JWKS live under a data dir; an edge trusts the JWKS file.
func KeyFile(dataDir string) string  { return filepath.Join(dataDir, "keys", signerKeyFile) }
func JWKSFile(dataDir string) string { return filepath.Join(dataDir, "keys", signerJWKSFile) }

// decisionClaims is the payload of a forwarded decision. It binds the
// decision to the player session and to the one request it was made for.
type decisionClaims struct {
	Issuer       string           `json:"iss"`
	Player       string           `json:"sub"`
	Session      string           `json:"sid"`
	Jurisdiction geo.Jurisdiction `json:"jurisdiction"`
	TokenSHA256  string           `json:"geo_token_sha256"`
	DecidedAt    time.Time        `json:"decided_at"`
	ValidUntil   time.Time        `json:"valid_until"`
	Request      string           `json:"req"` // "METHOD /path"
	Idempotency  string           `json:"idk"` // the Idempotency-Key header, "" if none
	IssuedAt     int64            `json:"iat"`
	Expiry       int64            `json:"exp"`
}

// Signer signs forwarded decisions with the gateway's Ed25519 key.
type Signer struct {
	kid  string
	priv ed25519.PrivateKey
	jwks []byte
	sig  jose.Signer
}

// OpenSigner loads the Ed25519 private JWK at keyFile, creating it from rand
// if absent (never replacing one a concurrent process created), and writes
// the public JWKS next to it as gateway.jwks.json for the edges to trust.
func OpenSigner(keyFile string, rand io.Reader) (*Signer, error) {
	if err := os.MkdirAll(filepath.Dir(keyFile), 0o700); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create the gateway key directory")
	}
	key, err := jwkfile.Open(keyFile, rand, jwkfile.Prefixed("gw-"))
	if err != nil {
		return nil, err
	}
	jwks, err := key.JWKS()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(keyFile), signerJWKSFile), append(jwks, '\n'), 0o644); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot write the gateway JWKS")
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key.Private},
		(&jose.SignerOptions{}).WithType(decisionType).WithHeader("kid", key.ID))
	if err != nil {
		return nil, err
	}
	return &Signer{kid: key.ID, priv: key.Private, jwks: jwks, sig: sig}, nil
}

// JWKS returns the public key set edges trust.
func (s *Signer) JWKS() []byte { return bytes.Clone(s.jwks) }

// Sign returns the forwarded form of an allowed decision for request r.
func (s *Signer) Sign(d geo.Decision, r *http.Request, now time.Time) (string, error) {
	exp := now.Add(MaxDecisionLifetime)
	if d.ValidUntil.Before(exp) {
		exp = d.ValidUntil
	}
	c := decisionClaims{
		Issuer: decisionIssuer, Player: d.PlayerID, Session: d.SessionID, Jurisdiction: d.Jurisdiction,
		TokenSHA256: d.TokenSHA256, DecidedAt: d.DecidedAt.UTC(), ValidUntil: d.ValidUntil.UTC(),
		Request: r.Method + " " + r.URL.Path, Idempotency: r.Header.Get(httpapi.IdempotencyHeader),
		IssuedAt: now.Unix(), Expiry: exp.Unix(),
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := s.sig.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// Verifier is the edge's GeoGate behind a gateway: it admits a request only
// with a forwarded decision signed by a trusted gateway key, made for this
// player session and this very request, unexpired, and for this edge's own
// jurisdiction. Fallback, when set, decides requests that carry no
// forwarded decision (a node that also verifies tokens itself); when nil
// they are refused.
type Verifier struct {
	keys         map[string]ed25519.PublicKey
	jurisdiction geo.Jurisdiction
	clock        buzzer.Clock
	Fallback     httpapi.GeoGate
}

var _ httpapi.GeoGate = (*Verifier)(nil)

// LoadVerifier reads the gateway's public JWKS file (Ed25519 keys only).
// jurisdiction is the edge's own and is required.
func LoadVerifier(jwksFile string, jurisdiction geo.Jurisdiction, clock buzzer.Clock) (*Verifier, error) {
	data, err := os.ReadFile(jwksFile)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "cannot read the gateway JWKS %s", jwksFile)
	}
	return NewVerifier(data, jurisdiction, clock)
}

// NewVerifier is LoadVerifier from the JWKS document itself.
func NewVerifier(jwks []byte, jurisdiction geo.Jurisdiction, clock buzzer.Clock) (*Verifier, error) {
	if !validJurisdiction(string(jurisdiction)) {
		return nil, buzzer.Errorf(buzzer.EINVALID, "gateway verifier: the edge's jurisdiction is required")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwks, &set); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "gateway JWKS is not a JWK set")
	}
	v := &Verifier{keys: map[string]ed25519.PublicKey{}, jurisdiction: jurisdiction, clock: clock}
	if v.clock == nil {
		v.clock = buzzer.SystemClock{}
	}
	for _, k := range set.Keys {
		pub, ok := k.Key.(ed25519.PublicKey)
		if !ok || k.KeyID == "" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		v.keys[k.KeyID] = pub
	}
	if len(v.keys) == 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "gateway JWKS holds no Ed25519 signing key with a kid")
	}
	return v, nil
}

func refuse(reason, msg string) error {
	return buzzer.Errorf(buzzer.EFORBIDDEN, "%s", msg).WithReason(reason)
}

// Decide implements httpapi.GeoGate.
func (v *Verifier) Decide(r *http.Request, p auth.Principal) (geo.Decision, error) {
	raw := r.Header.Get(DecisionHeader)
	if raw == "" {
		if v.Fallback != nil {
			return v.Fallback.Decide(r, p)
		}
		return geo.Decision{}, refuse("geolocation_required", "This service accepts regulated requests only through the gateway.")
	}
	c, err := v.parse(raw)
	if err != nil {
		return geo.Decision{}, refuse("gateway_decision_invalid", "The forwarded location decision is not valid.")
	}
	now := v.clock.Now()
	const skew = 2 * time.Second
	switch {
	case c.Issuer != decisionIssuer || c.Expiry < c.IssuedAt || time.Duration(c.Expiry-c.IssuedAt)*time.Second > MaxDecisionLifetime:
		return geo.Decision{}, refuse("gateway_decision_invalid", "The forwarded location decision is not valid.")
	case !now.Before(time.Unix(c.Expiry, 0).Add(skew)):
		return geo.Decision{}, refuse("gateway_decision_expired", "The forwarded location decision has expired.")
	case c.Player != p.Subject || c.Session != httpapi.SessionID(r, p):
		return geo.Decision{}, refuse("gateway_decision_mismatch", "The forwarded location decision is for another player session.")
	case c.Request != r.Method+" "+r.URL.Path || c.Idempotency != r.Header.Get(httpapi.IdempotencyHeader):
		return geo.Decision{}, refuse("gateway_decision_mismatch", "The forwarded location decision is for another request.")
	}
	d := geo.Decision{
		Allowed: true, PlayerID: c.Player, SessionID: c.Session, Jurisdiction: c.Jurisdiction,
		TokenSHA256: c.TokenSHA256, DecidedAt: c.DecidedAt, ValidUntil: c.ValidUntil, Reason: "verified",
		BoundaryDistanceM: -1, Source: geo.SourceGateway,
	}
	return d, httpapi.CheckResidency(d, p, v.jurisdiction)
}

func (v *Verifier) parse(raw string) (decisionClaims, error) {
	if len(raw) > maxDecisionBytes {
		return decisionClaims{}, errors.New("decision too large")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		return decisionClaims{}, err
	}
	if len(jws.Signatures) != 1 {
		return decisionClaims{}, errors.New("want one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != decisionType {
		return decisionClaims{}, fmt.Errorf("typ %q", typ)
	}
	key, ok := v.keys[h.KeyID]
	if !ok || h.JSONWebKey != nil {
		return decisionClaims{}, errors.New("unknown kid")
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return decisionClaims{}, err
	}
	return parseDecisionClaims(payload)
}

// parseDecisionClaims decodes a verified payload strictly.
func parseDecisionClaims(payload []byte) (decisionClaims, error) {
	var c decisionClaims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return decisionClaims{}, err
	}
	if dec.More() {
		return decisionClaims{}, errors.New("trailing data")
	}
	if c.Player == "" || c.Session == "" || !validJurisdiction(string(c.Jurisdiction)) || c.TokenSHA256 == "" {
		return decisionClaims{}, errors.New("decision lacks a field")
	}
	return c, nil
}
