package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
)

// testClock is a clock safe to read from the verifier's background refresh
// while the test moves it.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

const (
	testIssuer   = "https://idp.example.test/"
	testAudience = "buzzer"
)

// testKey is a signing key with the kid and alg its JWK publishes.
type testKey struct {
	kid  string
	alg  string
	priv crypto.Signer
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// sign produces the JWS signature of input for alg with priv.
func signWith(t testing.TB, alg string, priv crypto.Signer, input []byte) []byte {
	t.Helper()
	h := sha256.Sum256(input)
	var (
		sig []byte
		err error
	)
	switch alg {
	case "EdDSA":
		sig = ed25519.Sign(priv.(ed25519.PrivateKey), input)
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, h[:])
	case "PS256":
		sig, err = rsa.SignPSS(rand.Reader, priv.(*rsa.PrivateKey), crypto.SHA256, h[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "ES256":
		var r, s *big.Int
		r, s, err = ecdsa.Sign(rand.Reader, priv.(*ecdsa.PrivateKey), h[:])
		if err == nil {
			sig = make([]byte, 64)
			r.FillBytes(sig[:32])
			s.FillBytes(sig[32:])
		}
	default:
		t.Fatalf("signWith: unsupported alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

func seg(t testing.TB, v any) string {
	t.Helper()
	if s, ok := v.(string); ok {
		return base64.RawURLEncoding.EncodeToString([]byte(s)) // raw JSON text
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// craft assembles a compact JWS from a header and claims (maps, or raw JSON
// strings) signed by sign over the signing input.
func craft(t testing.TB, hdr, claims any, sign func(input []byte) []byte) string {
	t.Helper()
	input := seg(t, hdr) + "." + seg(t, claims)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

// fixture is a verifier over a JWKS of several keys, with a fixed clock.
type fixture struct {
	clock            *testClock
	ed, rsa, ps, ec  testKey
	edOther, rsaAsEd testKey // not in the JWKS
	jwksPath         string
	cfg              Config
	v                *Verifier
}

// The fixture keys are fixed test-only keys under testdata/ (generated once
// with openssl genpkey), so every run — and every fuzz worker — signs the
// same tokens and no test pays for RSA key generation.
var (
	rsaKeyA, rsaKeyB, rsaKeyC, rsaKey1024 *rsa.PrivateKey
	ecKey, ecKeyP384                      *ecdsa.PrivateKey
	edKey, edOtherKey                     ed25519.PrivateKey
)

func fixtureKeys(t testing.TB) {
	t.Helper()
	load := func(name string) crypto.Signer {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return k.(crypto.Signer)
	}
	rsaKeyA = load("rsa_a.pem").(*rsa.PrivateKey)
	rsaKeyB = load("rsa_b.pem").(*rsa.PrivateKey)
	rsaKeyC = load("rsa_c.pem").(*rsa.PrivateKey)
	rsaKey1024 = load("rsa_1024.pem").(*rsa.PrivateKey)
	ecKey = load("ec.pem").(*ecdsa.PrivateKey)
	ecKeyP384 = load("ec_p384.pem").(*ecdsa.PrivateKey)
	edKey = load("ed_a.pem").(ed25519.PrivateKey)
	edOtherKey = load("ed_b.pem").(ed25519.PrivateKey)
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	fixtureKeys(t)
	f := &fixture{
		clock:   newTestClock(),
		ed:      testKey{"ed-1", "EdDSA", edKey},
		rsa:     testKey{"rsa-1", "RS256", rsaKeyA},
		ps:      testKey{"ps-1", "PS256", rsaKeyB},
		ec:      testKey{"ec-1", "ES256", ecKey},
		edOther: testKey{"ed-1", "EdDSA", edOtherKey},
		rsaAsEd: testKey{"ed-1", "RS256", rsaKeyC},
	}
	f.jwksPath = filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, f.jwksPath, f.ed, f.rsa, f.ps, f.ec)
	f.cfg = DefaultConfig()
	f.cfg.Issuer, f.cfg.Audience, f.cfg.JWKSFile = testIssuer, testAudience, f.jwksPath
	if mutate != nil {
		mutate(&f.cfg)
	}
	v, err := NewVerifier(f.cfg, f.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	f.v = v
	return f
}

func jwksJSON(t testing.TB, keys ...testKey) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeJWKS(t testing.TB, path string, keys ...testKey) {
	t.Helper()
	if err := os.WriteFile(path, jwksJSON(t, keys...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// claims returns valid claims for now, which tests then spoil.
func (f *fixture) claims() map[string]any {
	now := f.clock.Now().Unix()
	return map[string]any{
		"iss": testIssuer, "aud": testAudience, "sub": "player-7",
		"exp": now + 3600, "nbf": now, "iat": now, "jti": "t-1",
		"jurisdiction": "NJ", "roles": []string{"player"},
	}
}

func (f *fixture) header(k testKey) map[string]any {
	return map[string]any{"alg": k.alg, "kid": k.kid, "typ": "JWT"}
}

// token signs claims with k under a header for k.
func (f *fixture) token(t testing.TB, k testKey, claims map[string]any) string {
	t.Helper()
	return craft(t, f.header(k), claims, func(in []byte) []byte { return signWith(t, k.alg, k.priv, in) })
}

// good is the fixture's one valid token.
func (f *fixture) good(t testing.TB) string { return f.token(t, f.ed, f.claims()) }

// jwksServer stands in for the third-party identity provider: it serves
// whatever JWKS the test sets, or fails while down, and counts requests.
type jwksServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     []byte
	down     atomic.Bool
	requests atomic.Int64
}

func newJWKSServer(t testing.TB, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		if s.down.Load() {
			http.Error(w, "identity provider down", http.StatusServiceUnavailable)
			return
		}
		s.mu.Lock()
		b := s.body
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body []byte) {
	s.mu.Lock()
	s.body = body
	s.mu.Unlock()
}

// wantReject asserts err is a *buzzer.Error with code and reason.
func wantReject(t testing.TB, err error, code, reason string) {
	t.Helper()
	var be *buzzer.Error
	if !errors.As(err, &be) {
		t.Fatalf("want *buzzer.Error %s/%s, got %v", code, reason, err)
	}
	if be.Code != code || be.Reason != reason {
		t.Fatalf("want %s/%s, got %s/%s (%v)", code, reason, be.Code, be.Reason, err)
	}
}
