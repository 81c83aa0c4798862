package auth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
)

// newURLFixture is a verifier whose JWKS comes from an httptest server, the
// stand-in for the third-party identity provider.
func newURLFixture(t *testing.T, keys ...testKey) (*fixture, *jwksServer) {
	t.Helper()
	f := newFixture(t, nil)
	if len(keys) == 0 {
		keys = []testKey{f.ed}
	}
	srv := newJWKSServer(t, jwksJSON(t, keys...))
	cfg := f.cfg
	cfg.JWKSFile, cfg.JWKSURL = "", srv.URL+"/.well-known/jwks.json"
	v, err := NewVerifier(cfg, f.clock, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	f.cfg, f.v = cfg, v
	return f, srv
}

func TestKeyRotationRefreshesOnce(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("warm fetched %d times, want 1", got)
	}
	old := f.good(t)
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	// The provider publishes a new key and starts signing with it.
	next := testKey{"ed-2", "EdDSA", edOtherKey}
	srv.set(jwksJSON(t, f.ed, next))
	f.clock.Advance(f.cfg.RefreshMinInterval)
	tok := f.token(t, next, f.claims())
	for i := 0; i < 5; i++ {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatalf("rotated key, try %d: %v", i, err)
		}
	}
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("JWKS fetched %d times, want exactly 2 (warm + one refresh)", got)
	}
	// The old key's tokens keep verifying, still from the cache: an
	// unchanged key keeps its identity across the refresh.
	if _, err := f.v.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := f.v.Stats().CacheHits; got != 5 {
		t.Fatalf("cache hits %d, want 5 (4 repeats of the new token, 1 of the old)", got)
	}
}

func TestUnknownKidStormIsRateLimited(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	storm := func() {
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 4; j++ {
					tok := craft(t, with(f.header(f.ed), "kid", "forged-"+itoa(int64(i*4+j))), f.claims(),
						func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
					_, err := f.v.Verify(ctx, tok)
					wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonUnknownKey)
				}
			}()
		}
		wg.Wait()
	}
	// Inside the window that started with warm-up: no fetch at all.
	storm()
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("storm inside the window fetched: %d requests, want 1", got)
	}
	// A new window: 256 unknown kids from 64 goroutines cause one fetch.
	f.clock.Advance(f.cfg.RefreshMinInterval)
	storm()
	if got := srv.requests.Load(); got != 2 {
		t.Fatalf("storm in a new window: %d requests, want 2", got)
	}
	if _, err := f.v.Verify(ctx, f.good(t)); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSDownServesCachedKeysUntilMaxStale(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	cached := f.token(t, f.ed, with(f.claims(), "exp", f.clock.Now().Add(3*time.Hour).Unix()))
	if _, err := f.v.Verify(ctx, cached); err != nil {
		t.Fatal(err)
	}
	srv.down.Store(true)
	start := f.clock.Now()

	// Keys age past RefreshInterval: a background refresh fails, requests
	// keep verifying with the keys they have.
	f.clock.Advance(f.cfg.RefreshInterval)
	fresh := f.token(t, f.ed, with(f.claims(), "exp", f.clock.Now().Add(3*time.Hour).Unix()))
	if _, err := f.v.Verify(ctx, fresh); err != nil {
		t.Fatalf("within max stale: %v", err)
	}
	f.v.wg.Wait() // the background refresh has finished
	if s := f.v.Stats(); s.FetchFailures != 1 {
		t.Fatalf("stats %+v, want one failed fetch", s)
	}
	if err := f.v.Warm(ctx); err != nil {
		t.Fatalf("warm within max stale must report usable keys: %v", err)
	}

	// Up to KeysMaxStale after the last good fetch, still serving.
	f.clock.Set(start.Add(f.cfg.KeysMaxStale))
	if _, err := f.v.Verify(ctx, cached); err != nil {
		t.Fatalf("at max stale: %v", err)
	}
	f.v.wg.Wait()

	// Beyond: fail closed, cached tokens included.
	f.clock.Advance(time.Second)
	for _, tok := range []string{cached, fresh} {
		_, err := f.v.Verify(ctx, tok)
		wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
	}
	if err := f.v.Warm(ctx); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("warm with stale keys: %v", err)
	}
	// The failing provider is not hammered: one attempt per window.
	before := srv.requests.Load()
	for i := 0; i < 20; i++ {
		_, _ = f.v.Verify(ctx, cached)
	}
	if got := srv.requests.Load(); got != before {
		t.Fatalf("%d fetches inside one window while down", got-before)
	}

	// The provider comes back: the next window's fetch restores service.
	srv.down.Store(false)
	f.clock.Advance(f.cfg.RefreshMinInterval)
	if _, err := f.v.Verify(ctx, cached); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestRemovedKeyStopsVerifyingCachedTokens(t *testing.T) {
	fixtureKeys(t)
	f, srv := newURLFixture(t, testKey{"ed-1", "EdDSA", edKey}, testKey{"ed-2", "EdDSA", edOtherKey})
	ctx := context.Background()
	tok := f.good(t)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	// The provider revokes ed-1; the next periodic refresh drops it.
	srv.set(jwksJSON(t, testKey{"ed-2", "EdDSA", edOtherKey}))
	f.clock.Advance(f.cfg.RefreshInterval)
	_, _ = f.v.Verify(ctx, tok) // triggers the background refresh
	f.v.wg.Wait()
	_, err := f.v.Verify(ctx, tok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonUnknownKey)
}

func TestReplacedKeyMaterialUnderSameKid(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	tok := f.good(t)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	srv.set(jwksJSON(t, f.edOther)) // same kid "ed-1", another key
	f.clock.Advance(f.cfg.RefreshInterval)
	_, _ = f.v.Verify(ctx, tok)
	f.v.wg.Wait()
	_, err := f.v.Verify(ctx, tok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonBadSignature)
	if _, err := f.v.Verify(ctx, f.token(t, f.edOther, f.claims())); err != nil {
		t.Fatal(err)
	}
}

func TestBrokenJWKSPublicationKeepsWorkingKeys(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	srv.set([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"ed-1","alg":"HS256"}]}`))
	f.clock.Advance(f.cfg.RefreshInterval)
	_, _ = f.v.Verify(ctx, f.good(t))
	f.v.wg.Wait()
	if _, err := f.v.Verify(ctx, f.good(t)); err != nil {
		t.Fatalf("a JWKS with no usable key replaced working keys: %v", err)
	}
	if s := f.v.Stats(); s.FetchFailures != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestVerifyWithoutWarmLoadsKeys(t *testing.T) {
	f, srv := newURLFixture(t)
	if _, err := f.v.Verify(context.Background(), f.good(t)); err != nil {
		t.Fatal(err)
	}
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("requests %d", got)
	}
}

func TestWarmFailsClosedWhenProviderDown(t *testing.T) {
	f, srv := newURLFixture(t)
	srv.down.Store(true)
	err := f.v.Warm(context.Background())
	wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
	_, err = f.v.Verify(context.Background(), f.good(t))
	wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
}

func TestFetchHonoursTimeout(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // a provider that accepts the connection and never answers
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := f.cfg
	cfg.JWKSFile, cfg.JWKSURL, cfg.FetchTimeout = "", srv.URL, 50*time.Millisecond
	v, err := NewVerifier(cfg, f.clock, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	err = v.Warm(context.Background())
	wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the fetch deadline as cause, got %v", err)
	}
}

func TestCallerContextBoundsTheWait(t *testing.T) {
	f := newFixture(t, nil)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := f.cfg
	cfg.JWKSFile, cfg.JWKSURL, cfg.FetchTimeout = "", srv.URL, time.Minute
	v, err := NewVerifier(cfg, f.clock, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = v.Verify(ctx, f.good(t))
	wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
	v.Close() // cancels the fetch still waiting on the provider, and waits for it
}

func TestCloseStopsBackgroundRefresh(t *testing.T) {
	f, srv := newURLFixture(t)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	f.v.Close()
	f.clock.Advance(f.cfg.RefreshInterval)
	// Verification goes on with the loaded keys; no new fetch starts.
	if _, err := f.v.Verify(ctx, f.good(t)); err != nil {
		t.Fatal(err)
	}
	f.v.wg.Wait()
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("fetch after Close: %d requests", got)
	}
}

func TestParseJWKS(t *testing.T) {
	fixtureKeys(t)
	ed := testKey{"ed-1", "EdDSA", edKey}
	good, err := json.Marshal(ed.jwk())
	if err != nil {
		t.Fatal(err)
	}
	small, p384 := rsaKey1024, ecKeyP384
	jwk := func(k jose.JSONWebKey) string {
		b, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// edit rewrites one member of the good JWK.
	edit := func(member, value string) string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		if value == "" {
			delete(m, member)
		} else {
			m[member] = json.RawMessage(value)
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	priv, _ := json.Marshal(jose.JSONWebKey{Key: edKey, KeyID: "ed-p", Algorithm: "EdDSA", Use: "sig"})
	cases := []struct {
		name string
		doc  string
		kids []string // usable kids; nil means the document is refused
	}{
		{"good", `{"keys":[` + string(good) + `]}`, []string{"ed-1"}},
		{"no alg: skipped", `{"keys":[` + string(good) + `,` + strings.Replace(edit("alg", ""), `"ed-1"`, `"ed-2"`, 1) + `]}`, []string{"ed-1"}},
		{"use enc: skipped", `{"keys":[` + edit("use", `"enc"`) + `]}`, nil},
		{"key_ops without verify: skipped", `{"keys":[` + edit("key_ops", `["encrypt"]`) + `]}`, nil},
		{"key_ops verify: used", `{"keys":[` + edit("key_ops", `["verify"]`) + `]}`, []string{"ed-1"}},
		{"no use: used", `{"keys":[` + edit("use", "") + `]}`, []string{"ed-1"}},
		{"HS256 alg: skipped", `{"keys":[` + edit("alg", `"HS256"`) + `]}`, nil},
		{"none alg: skipped", `{"keys":[` + edit("alg", `"none"`) + `]}`, nil},
		{"alg not fitting key type: skipped", `{"keys":[` + edit("alg", `"RS256"`) + `]}`, nil},
		{"no kid: skipped", `{"keys":[` + edit("kid", "") + `]}`, nil},
		{"oct key: skipped", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","kid":"h","alg":"HS256"}]}`, nil},
		{"private key published: skipped", `{"keys":[` + string(priv) + `]}`, nil},
		{"RSA 1024: skipped", `{"keys":[` + jwk(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "r", Algorithm: "RS256"}) + `]}`, nil},
		{"ES256 on P-384: skipped", `{"keys":[` + jwk(jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "e", Algorithm: "ES256"}) + `]}`, nil},
		{"duplicate kid: dropped", `{"keys":[` + string(good) + `,` + string(good) + `,` + strings.Replace(string(good), `"ed-1"`, `"ed-3"`, 1) + `]}`, []string{"ed-3"}},
		{"empty set", `{"keys":[]}`, nil},
		{"no keys member", `{}`, nil},
		{"not JSON", `<html>`, nil},
		{"keys not an array", `{"keys":{}}`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := parseJWKS([]byte(tc.doc))
			if tc.kids == nil {
				if err == nil {
					t.Fatalf("accepted: %v", keys)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) != len(tc.kids) {
				t.Fatalf("kids %v, want %v", keys, tc.kids)
			}
			for _, kid := range tc.kids {
				if keys[kid] == nil {
					t.Fatalf("kid %s missing from %v", kid, keys)
				}
			}
		})
	}
}

func TestConfigValidateNamesTheBadField(t *testing.T) {
	ok := DefaultConfig()
	ok.Issuer, ok.Audience, ok.JWKSURL = "i", "a", "https://idp.example/jwks"
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field  string
		mutate func(*Config)
	}{
		{"issuer", func(c *Config) { c.Issuer = "" }},
		{"audience", func(c *Config) { c.Audience = "" }},
		{"jwks_file and jwks_url", func(c *Config) { c.JWKSFile = "/x" }},
		{"jwks_file and jwks_url", func(c *Config) { c.JWKSURL = "" }},
		{"jwks_url", func(c *Config) { c.JWKSURL = "http://idp.example/jwks" }},
		{"jwks_url", func(c *Config) { c.JWKSURL = "file:///etc/jwks" }},
		{"jwks_url", func(c *Config) { c.JWKSURL = "https://u:p@idp.example/jwks" }},
		{"jwks_url", func(c *Config) { c.JWKSURL = "/relative" }},
		{"leeway", func(c *Config) { c.Leeway = -time.Second }},
		{"leeway", func(c *Config) { c.Leeway = time.Hour }},
		{"refresh_min_interval", func(c *Config) { c.RefreshMinInterval = 0 }},
		{"refresh_interval", func(c *Config) { c.RefreshInterval = time.Second }},
		{"fetch_timeout", func(c *Config) { c.FetchTimeout = 0 }},
		{"keys_max_stale", func(c *Config) { c.KeysMaxStale = time.Minute }},
		{"max_token_bytes", func(c *Config) { c.MaxTokenBytes = 10 }},
		{"max_token_bytes", func(c *Config) { c.MaxTokenBytes = 1 << 20 }},
		{"cache_size", func(c *Config) { c.CacheSize = -1 }},
		{"allowed_types", func(c *Config) { c.AllowedTypes = nil }},
		{"allowed_types", func(c *Config) { c.AllowedTypes = []string{"JWT", ""} }},
	}
	for _, tc := range cases {
		c := ok
		tc.mutate(&c)
		err := c.Validate()
		if buzzer.ErrorCode(err) != buzzer.EINVALID || !strings.Contains(buzzer.ErrorMessage(err), tc.field) {
			t.Errorf("%s: got %v", tc.field, err)
		}
		if _, err := NewVerifier(c, nil, nil); err == nil {
			t.Errorf("%s: NewVerifier accepted an invalid config", tc.field)
		}
	}
	loop := ok
	loop.JWKSURL = "http://127.0.0.1:8081/jwks"
	if err := loop.Validate(); err != nil {
		t.Fatalf("loopback http refused: %v", err)
	}
}

func TestFileJWKSRotation(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	next := testKey{"ed-2", "EdDSA", edOtherKey}
	tok := f.token(t, next, f.claims())
	writeJWKS(t, f.jwksPath, f.ed, next) // the operator drops in the new JWKS
	_, err := f.v.Verify(ctx, tok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonUnknownKey) // inside the refresh window
	f.clock.Advance(f.cfg.RefreshMinInterval)
	if _, err := f.v.Verify(ctx, tok); err != nil {
		t.Fatalf("after the window: %v", err)
	}
	if s := f.v.Stats(); s.Fetches != 2 {
		t.Fatalf("stats %+v, want 2 loads", s)
	}
}

func TestDefaultClientRefusesPlainRedirect(t *testing.T) {
	f := newFixture(t, nil)
	target := newJWKSServer(t, jwksJSON(t, f.ed))
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	defer redirect.Close()
	cfg := f.cfg
	cfg.JWKSFile, cfg.JWKSURL = "", redirect.URL
	v, err := NewVerifier(cfg, f.clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	err = v.Warm(context.Background())
	wantReject(t, err, buzzer.EUNAVAILABLE, ReasonJWKSUnavailable)
	if got := target.requests.Load(); got != 0 {
		t.Fatalf("redirect followed: %d requests at the target", got)
	}
}
