package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
)

type badToken struct {
	name   string
	reason string
	token  func(t testing.TB, f *fixture) string
}

// without returns a copy of m without key.
func without(m map[string]any, key string) map[string]any {
	c := map[string]any{}
	for k, v := range m {
		if k != key {
			c[k] = v
		}
	}
	return c
}

// with returns a copy of m with key set to v.
func with(m map[string]any, key string, v any) map[string]any {
	c := without(m, key)
	c[key] = v
	return c
}

func hs256(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// badCorpus is the crafted-token corpus; every entry must be rejected with
// its reason. It also seeds FuzzVerify.
var badCorpus = []badToken{
	{"alg none, empty signature", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		return seg(t, with(f.header(f.ed), "alg", "none")) + "." + seg(t, f.claims()) + "."
	}},
	{"alg none, garbage signature", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		return seg(t, with(f.header(f.ed), "alg", "none")) + "." + seg(t, f.claims()) + ".AAAA"
	}},
	{"alg NONE (case games)", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		return seg(t, with(f.header(f.ed), "alg", "nOnE")) + "." + seg(t, f.claims()) + "."
	}},
	{"HS256 with the RSA public key PEM as HMAC secret", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		der, err := x509.MarshalPKIXPublicKey(f.rsa.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		return craft(t, with(f.header(f.rsa), "alg", "HS256"), f.claims(), hs256(secret))
	}},
	{"HS256 with the Ed25519 public key bytes as HMAC secret", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "alg", "HS256"), f.claims(), hs256([]byte(f.ed.priv.Public().(ed25519.PublicKey))))
	}},
	{"RS256 token against the EdDSA key", ReasonAlgMismatch, func(t testing.TB, f *fixture) string {
		return f.token(t, f.rsaAsEd, f.claims())
	}},
	{"ES256 header on the RSA key", ReasonAlgMismatch, func(t testing.TB, f *fixture) string {
		h := with(f.header(f.rsa), "alg", "ES256")
		return craft(t, h, f.claims(), func(in []byte) []byte { return signWith(t, "ES256", f.ec.priv, in) })
	}},
	{"RS384 (not allowed)", ReasonAlgNotAllowed, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.rsa), "alg", "RS384"), f.claims(), func(in []byte) []byte { return signWith(t, "RS256", f.rsa.priv, in) })
	}},
	{"alg missing", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return craft(t, without(f.header(f.ed), "alg"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"wrong aud", ReasonBadAudience, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "aud", "buzzer-admin"))
	}},
	{"aud array without ours", ReasonBadAudience, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "aud", []string{"a", "buzzerx"}))
	}},
	{"aud missing", ReasonBadAudience, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, without(f.claims(), "aud"))
	}},
	{"aud case differs", ReasonBadAudience, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "aud", "Buzzer"))
	}},
	{"wrong iss", ReasonBadIssuer, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "iss", "https://evil.example/"))
	}},
	{"iss missing", ReasonBadIssuer, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, without(f.claims(), "iss"))
	}},
	{"wrong typ", ReasonBadType, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "typ", "dpop+jwt"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"typ missing", ReasonBadType, func(t testing.TB, f *fixture) string {
		return craft(t, without(f.header(f.ed), "typ"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"typ not a string", ReasonBadType, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "typ", 1), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"expired", ReasonExpired, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "exp", f.clock.Now().Add(-time.Hour).Unix()))
	}},
	{"expired just beyond the leeway", ReasonExpired, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "exp", f.clock.Now().Add(-f.cfg.Leeway).Unix()))
	}},
	{"not yet valid (nbf)", ReasonNotYetValid, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "nbf", f.clock.Now().Add(time.Hour).Unix()))
	}},
	{"issued in the future (iat)", ReasonNotYetValid, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "iat", f.clock.Now().Add(f.cfg.Leeway+time.Second).Unix()))
	}},
	{"missing exp", ReasonMissingExp, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, without(f.claims(), "exp"))
	}},
	{"exp as a string", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "exp", "9999999999"))
	}},
	{"exp negative", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "exp", -1))
	}},
	{"exp beyond year 5000", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "exp", 1e300))
	}},
	{"roles not an array", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "roles", "operator"))
	}},
	{"duplicate claim", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		raw := `{"iss":"` + testIssuer + `","aud":"buzzer","sub":"player-7","sub":"player-8","exp":` + itoa(f.clock.Now().Unix()+60) + `}`
		return craft(t, f.header(f.ed), raw, func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"payload not JSON", ReasonMalformedClaims, func(t testing.TB, f *fixture) string {
		return craft(t, f.header(f.ed), "not json", func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"sub missing", ReasonMissingSubject, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, without(f.claims(), "sub"))
	}},
	{"unknown kid", ReasonUnknownKey, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", "ed-2"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"injected kid: path traversal", ReasonUnknownKey, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", "../../../../etc/passwd"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"injected kid: SQL", ReasonUnknownKey, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", "x' UNION SELECT 'secret' --"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"injected kid: jwks path", ReasonUnknownKey, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", f.jwksPath), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"injected kid: huge", ReasonUnknownKey, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", strings.Repeat("k", 2000)), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"kid missing", ReasonMissingKeyID, func(t testing.TB, f *fixture) string {
		return craft(t, without(f.header(f.ed), "kid"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"kid empty", ReasonMissingKeyID, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", ""), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"kid a number", ReasonMissingKeyID, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "kid", 1), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"jku header", ReasonForbiddenHeader, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "jku", "https://evil.example/jwks.json"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"x5u header", ReasonForbiddenHeader, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "x5u", "https://evil.example/cert.pem"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"embedded jwk header (attacker's own key)", ReasonForbiddenHeader, func(t testing.TB, f *fixture) string {
		h := with(f.header(f.edOther), "jwk", f.edOther.jwk())
		return craft(t, h, f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.edOther.priv, in) })
	}},
	{"x5c header", ReasonForbiddenHeader, func(t testing.TB, f *fixture) string {
		return craft(t, with(f.header(f.ed), "x5c", []string{"MIIB"}), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"crit header", ReasonForbiddenHeader, func(t testing.TB, f *fixture) string {
		h := with(with(f.header(f.ed), "crit", []string{"b64"}), "b64", false)
		return craft(t, h, f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"duplicate alg in header", ReasonMalformed, func(t testing.TB, f *fixture) string {
		raw := `{"alg":"EdDSA","kid":"ed-1","typ":"JWT","alg":"none"}`
		return craft(t, raw, f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"header not an object", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return craft(t, `["EdDSA"]`, f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"header trailing data", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return craft(t, `{"alg":"EdDSA","kid":"ed-1","typ":"JWT"}{}`, f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) })
	}},
	{"truncated signature", ReasonBadSignature, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		return g[:len(g)-10] // 86 base64 chars become 76: decodes, does not verify
	}},
	{"truncated to two segments", ReasonMalformed, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		return g[:strings.LastIndexByte(g, '.')]
	}},
	{"truncated inside the payload", ReasonMalformed, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		return g[:strings.IndexByte(g, '.')+5]
	}},
	{"truncated inside the header", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return f.good(t)[:7]
	}},
	{"oversized", ReasonTooLarge, func(t testing.TB, f *fixture) string {
		return f.token(t, f.ed, with(f.claims(), "pad", strings.Repeat("x", f.cfg.MaxTokenBytes)))
	}},
	{"empty", ReasonMalformed, func(t testing.TB, f *fixture) string { return "" }},
	{"five segments (JWE shape)", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return f.good(t) + ".AAAA.AAAA"
	}},
	{"bad base64 in header", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return "eyJ!" + f.good(t)[4:]
	}},
	{"padded base64 signature", ReasonMalformed, func(t testing.TB, f *fixture) string {
		return f.good(t) + "=="
	}},
	{"standard-alphabet base64 in signature", ReasonMalformed, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		return g[:len(g)-1] + "+"
	}},
	{"non-canonical trailing bits in signature", ReasonMalformed, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		i := strings.LastIndexByte(g, '.')
		sig, _ := base64.RawURLEncoding.DecodeString(g[i+1:])
		enc := base64.RawURLEncoding.EncodeToString(sig)
		last := enc[len(enc)-1]
		// 64 bytes encode to 86 chars; the last carries 4 unused bits.
		alt := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", last) + 1
		return g[:i+1] + enc[:len(enc)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[alt%64])
	}},
	{"whitespace inside", ReasonMalformed, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		return g[:20] + " " + g[20:]
	}},
	{"tampered payload", ReasonBadSignature, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		parts := strings.Split(g, ".")
		return parts[0] + "." + seg(t, with(f.claims(), "sub", "player-8")) + "." + parts[2]
	}},
	{"tampered header (typ swapped)", ReasonBadSignature, func(t testing.TB, f *fixture) string {
		g := f.good(t)
		parts := strings.Split(g, ".")
		return seg(t, with(f.header(f.ed), "typ", "at+jwt")) + "." + parts[1] + "." + parts[2]
	}},
	{"signature from another key with the same kid", ReasonBadSignature, func(t testing.TB, f *fixture) string {
		return f.token(t, f.edOther, f.claims())
	}},
	{"RS256 signature from another RSA key under the RSA kid", ReasonBadSignature, func(t testing.TB, f *fixture) string {
		h := f.header(f.rsa)
		return craft(t, h, f.claims(), func(in []byte) []byte { return signWith(t, "RS256", rsaKeyC, in) })
	}},
	{"PS256 signature under the RS256-pinned key", ReasonAlgMismatch, func(t testing.TB, f *fixture) string {
		h := with(f.header(f.rsa), "alg", "PS256")
		return craft(t, h, f.claims(), func(in []byte) []byte { return signWith(t, "PS256", f.rsa.priv, in) })
	}},
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestVerifyRejectsBadTokenCorpus(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	// Load keys once; the corpus must not depend on the order of its cases.
	if err := f.v.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	good := f.good(t)
	for _, tc := range badCorpus {
		t.Run(tc.name, func(t *testing.T) {
			tok := tc.token(t, f)
			if tok == good {
				t.Fatal("corpus entry equals the good token")
			}
			p, err := f.v.Verify(ctx, tok)
			if err == nil {
				t.Fatalf("accepted: %+v", p)
			}
			wantReject(t, err, buzzer.EUNAUTHORIZED, tc.reason)
			// The message is for the caller: nothing from the token in it.
			msg := buzzer.ErrorMessage(err)
			for _, leak := range []string{"player-7", "ed-1", "passwd", "UNION", "evil", f.jwksPath, testIssuer} {
				if strings.Contains(msg, leak) {
					t.Fatalf("message %q leaks %q", msg, leak)
				}
			}
			// A rejection is never cached: asking again gives the same answer.
			_, err2 := f.v.Verify(ctx, tok)
			wantReject(t, err2, buzzer.EUNAUTHORIZED, tc.reason)
		})
	}
	if _, err := f.v.Verify(ctx, good); err != nil {
		t.Fatalf("good token rejected after the corpus: %v", err)
	}
}

func TestVerifyAcceptsEachPinnedAlgorithm(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, k := range []testKey{f.ed, f.rsa, f.ps, f.ec} {
		t.Run(k.alg, func(t *testing.T) {
			p, err := f.v.Verify(ctx, f.token(t, k, f.claims()))
			if err != nil {
				t.Fatal(err)
			}
			want := Principal{Subject: "player-7", Jurisdiction: "NJ", Roles: []string{"player"}, TokenID: "t-1",
				ExpiresAt: time.Unix(f.clock.Now().Unix()+3600, 0)}
			if p.Subject != want.Subject || p.Jurisdiction != want.Jurisdiction || p.TokenID != want.TokenID ||
				!p.ExpiresAt.Equal(want.ExpiresAt) || len(p.Roles) != 1 || p.Roles[0] != "player" {
				t.Fatalf("principal %+v, want %+v", p, want)
			}
		})
	}
}

func TestVerifyAcceptsWithinRules(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	now := f.clock.Now()
	cases := map[string]string{
		"at+jwt typ":                craft(t, with(f.header(f.ed), "typ", "at+jwt"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) }),
		"application/jwt typ":       craft(t, with(f.header(f.ed), "typ", "application/JWT"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) }),
		"aud array containing ours": f.token(t, f.ed, with(f.claims(), "aud", []string{"other", testAudience})),
		"expired within leeway":     f.token(t, f.ed, with(f.claims(), "exp", now.Add(-f.cfg.Leeway+time.Second).Unix())),
		"nbf within leeway":         f.token(t, f.ed, with(f.claims(), "nbf", now.Add(f.cfg.Leeway-time.Second).Unix())),
		"fractional exp":            f.token(t, f.ed, with(f.claims(), "exp", float64(now.Unix())+60.5)),
		"no nbf, iat, jti, roles":   f.token(t, f.ed, without(without(without(without(f.claims(), "nbf"), "iat"), "jti"), "roles")),
		"use absent in header":      f.token(t, f.ec, f.claims()),
		"unknown harmless header":   craft(t, with(f.header(f.ed), "cty", "x"), f.claims(), func(in []byte) []byte { return signWith(t, "EdDSA", f.ed.priv, in) }),
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := f.v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestVerifyRequiredRole(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.RequiredRole = "operator" })
	ctx := context.Background()
	_, err := f.v.Verify(ctx, f.good(t))
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonMissingRole)
	p, err := f.v.Verify(ctx, f.token(t, f.ed, with(f.claims(), "roles", []string{"operator"})))
	if err != nil || !p.HasRole("operator") {
		t.Fatalf("operator token: %+v %v", p, err)
	}
}

func TestVerifyCachesUntilExpiry(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	tok := f.token(t, f.ed, with(f.claims(), "exp", f.clock.Now().Add(time.Minute).Unix()))
	p1, err := f.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if f.v.Stats().CacheHits != 0 || f.v.cache.len() != 1 {
		t.Fatalf("after first verify: %+v, cache %d", f.v.Stats(), f.v.cache.len())
	}
	p1.Roles[0] = "mutated by caller"
	p2, err := f.v.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.v.Stats().CacheHits; got != 1 {
		t.Fatalf("cache hits %d, want 1", got)
	}
	if p2.Subject != "player-7" || p2.Roles[0] != "player" {
		t.Fatalf("cached principal %+v", p2)
	}
	// Past exp+leeway the cache no longer answers and the full check rejects.
	f.clock.Advance(time.Minute + f.cfg.Leeway)
	_, err = f.v.Verify(ctx, tok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonExpired)
	if got := f.v.Stats().CacheHits; got != 1 {
		t.Fatalf("expired token answered from cache (hits %d)", got)
	}
}

func TestVerifyCacheIsBounded(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheSize = 40 })
	ctx := context.Background()
	var toks []string
	for i := 0; i < 200; i++ {
		tok := f.token(t, f.ed, with(f.claims(), "jti", itoa(int64(i))))
		toks = append(toks, tok)
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
		if n := f.v.cache.len(); n > 40 {
			t.Fatalf("cache holds %d entries, bound 40", n)
		}
	}
	// Evicted tokens still verify (the slow way).
	for _, tok := range toks[:10] {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyUncachedWhenCacheDisabled(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheSize = 0 })
	ctx := context.Background()
	tok := f.good(t)
	for i := 0; i < 3; i++ {
		if _, err := f.v.Verify(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.v.Stats().CacheHits; got != 0 {
		t.Fatalf("cache hits %d with the cache disabled", got)
	}
}
