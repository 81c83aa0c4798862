package geo

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
)

// seededRand is a deterministic io.Reader for keys and challenges.
type seededRand struct{ r *rand.ChaCha8 }

func newRand(seed byte) *seededRand {
	var s [32]byte
	s[0] = seed
	return &seededRand{r: rand.NewChaCha8(s)}
}

func (s *seededRand) Read(p []byte) (int, error) { return s.r.Read(p) }

var (
	trentonIP = netip.MustParseAddr("203.0.113.7")
	phillyIP  = netip.MustParseAddr("203.0.114.9")
	laIP      = netip.MustParseAddr("198.51.100.4")
	unknownIP = netip.MustParseAddr("192.0.2.1")
)

// failingKeys, failingRegistry and stallingLocator stand in for a provider
// JWKS endpoint that is down, a registry that is down, and a locator that
// never answers within its deadline.
type failingKeys struct{}

func (failingKeys) ProviderKeys(context.Context) (*ProviderKeys, error) {
	return nil, errors.New("jwks endpoint: connection refused")
}

type failingRegistry struct{}

func (failingRegistry) PlayerStatus(context.Context, string, Jurisdiction) (PlayerStatus, error) {
	return PlayerStatus{}, errors.New("registry: 502 bad gateway")
}

type stallingLocator struct{}

func (stallingLocator) LocateIP(ctx context.Context, _ netip.Addr) (IPLocation, error) {
	<-ctx.Done()
	return IPLocation{}, ctx.Err()
}

// switchable wraps a dependency so a test can take it down mid-way.
type switchable[T any] struct {
	mu   sync.Mutex
	up   T
	down T
	off  bool
}

func (s *switchable[T]) get() T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.off {
		return s.down
	}
	return s.up
}

func (s *switchable[T]) setDown(v bool) { s.mu.Lock(); s.off = v; s.mu.Unlock() }

type switchKeys struct{ *switchable[KeySource] }

func (s switchKeys) ProviderKeys(ctx context.Context) (*ProviderKeys, error) {
	return s.get().ProviderKeys(ctx)
}

type switchRegistry struct{ *switchable[Registry] }

func (s switchRegistry) PlayerStatus(ctx context.Context, p string, j Jurisdiction) (PlayerStatus, error) {
	return s.get().PlayerStatus(ctx, p, j)
}

type switchLocator struct{ *switchable[IPLocator] }

func (s switchLocator) LocateIP(ctx context.Context, ip netip.Addr) (IPLocation, error) {
	return s.get().LocateIP(ctx, ip)
}

type fixture struct {
	t        testing.TB
	clock    *buzzer.FixedClock
	provider *DevProvider
	registry *DevRegistry
	keys     *switchable[KeySource]
	reg      *switchable[Registry]
	ips      *switchable[IPLocator]
	svc      *Service
}

const (
	player  = "player-1"
	session = "session-1"
)

func tokenHash(raw string) string {
	h := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(h[:])
}

func newFixture(t testing.TB, mutate func(*Config)) *fixture {
	t.Helper()
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	prov, err := OpenDevProvider(t.TempDir(), newRand(1))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, clock: clock, provider: prov, registry: NewDevRegistry("excluded-player")}
	f.keys = &switchable[KeySource]{up: prov, down: failingKeys{}}
	f.reg = &switchable[Registry]{up: f.registry, down: failingRegistry{}}
	f.ips = &switchable[IPLocator]{up: NewStaticIPLocator(map[netip.Prefix]IPLocation{
		netip.MustParsePrefix("203.0.113.0/24"):  {Point: Point{Lat: 40.2171, Lon: -74.7429}, Country: "US", Subdivision: "NJ"},
		netip.MustParsePrefix("203.0.114.0/24"):  {Point: philadelphia, Country: "US", Subdivision: "PA"},
		netip.MustParsePrefix("198.51.100.0/24"): {Point: losAngeles, Country: "US", Subdivision: "CA"},
	}), down: stallingLocator{}}
	cfg := Config{Jurisdictions: []Jurisdiction{"NJ", "PA"}, Issuer: DevIssuer, IPLocatorTimeout: 20 * time.Millisecond}
	if mutate != nil {
		mutate(&cfg)
	}
	f.svc, err = NewService(cfg, Deps{
		Boundaries: mustUSStates(t),
		Keys:       switchKeys{f.keys},
		Registry:   switchRegistry{f.reg},
		IPs:        switchLocator{f.ips},
		Challenges: NewMemoryChallenges(0, 0),
		Clock:      clock,
		Rand:       newRand(2),
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// claims returns valid claims for a fresh challenge of the default player
// session, located at p.
func (f *fixture) claims(p Point) Claims {
	f.t.Helper()
	ch, err := f.svc.IssueChallenge(context.Background(), player, session)
	if err != nil {
		f.t.Fatal(err)
	}
	now := f.clock.Now().Unix()
	return Claims{
		Issuer: DevIssuer, PlayerID: player, SessionID: session, Challenge: ch.Value,
		IssuedAt: now, Expiry: now + 300,
		GPS:        GPSFix{Lat: p.Lat, Lon: p.Lon, AccuracyM: 15},
		CellTowers: []CellTower{{MCC: "310", MNC: "410", LAC: 21000, CID: 123456}},
		WiFiBSSIDs: []string{"a4:2b:b0:11:22:33"},
		IP:         trentonIP.String(),
	}
}

func (f *fixture) sign(c Claims) string {
	f.t.Helper()
	tok, err := f.provider.Sign(c)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *fixture) check(tok string) (Decision, error) {
	return f.svc.Check(context.Background(), CheckInput{PlayerID: player, SessionID: session, Token: tok})
}

func wantDenied(t *testing.T, err error, code, reason string) {
	t.Helper()
	if buzzer.ErrorCode(err) != code || buzzer.ErrorReason(err) != reason {
		t.Fatalf("err = %v; want code %s reason %s", err, code, reason)
	}
}

func TestCheckAllowsTrentonAsNJAndMorrisvilleAsPA(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.sign(f.claims(trenton))
	d, err := f.check(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Jurisdiction != "NJ" || d.Reason != "verified" || d.Cached {
		t.Fatalf("decision %+v", d)
	}
	if d.TokenSHA256 != tokenHash(tok) || len(d.TokenSHA256) != 64 || !d.DecidedAt.Equal(f.clock.Now()) {
		t.Fatalf("record %+v", d.Record())
	}

	c := f.claims(morrisville)
	c.IP = phillyIP.String()
	d, err = f.check(f.sign(c))
	if err != nil {
		t.Fatal(err)
	}
	if d.Jurisdiction != "PA" {
		t.Fatalf("Morrisville resolved to %q", d.Jurisdiction)
	}
}

func TestCheckDenials(t *testing.T) {
	otherKey := func(f *fixture) string {
		_, priv, _ := ed25519.GenerateKey(newRand(9))
		tok, err := signClaims(f.claims(trenton), jose.SigningKey{Algorithm: jose.EdDSA, Key: priv}, f.provider.KeyID())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name   string
		token  func(f *fixture) string
		code   string
		reason string
	}{
		{"near boundary", func(f *fixture) string { return f.sign(f.claims(nearRiver)) }, buzzer.EFORBIDDEN, ReasonRecheck},
		{"vpn", func(f *fixture) string { c := f.claims(trenton); c.Risk.VPN = true; return f.sign(c) }, buzzer.EFORBIDDEN, "risk_vpn"},
		{"proxy", func(f *fixture) string { c := f.claims(trenton); c.Risk.Proxy = true; return f.sign(c) }, buzzer.EFORBIDDEN, "risk_proxy"},
		{"emulator", func(f *fixture) string { c := f.claims(trenton); c.Risk.Emulator = true; return f.sign(c) }, buzzer.EFORBIDDEN, "risk_emulator"},
		{"remote desktop", func(f *fixture) string { c := f.claims(trenton); c.Risk.RemoteDesktop = true; return f.sign(c) }, buzzer.EFORBIDDEN, "risk_remote_desktop"},
		{"spoofing tool", func(f *fixture) string { c := f.claims(trenton); c.Risk.SpoofingTool = true; return f.sign(c) }, buzzer.EFORBIDDEN, "risk_spoofing_tool"},
		{"expired", func(f *fixture) string {
			c := f.claims(trenton)
			c.IssuedAt -= 100
			c.Expiry = f.clock.Now().Unix() - 10
			return f.sign(c)
		}, buzzer.EFORBIDDEN, "geotoken_expired"},
		{"stale", func(f *fixture) string { c := f.claims(trenton); c.IssuedAt -= 200; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_stale"},
		{"issued in future", func(f *fixture) string { c := f.claims(trenton); c.IssuedAt += 60; c.Expiry += 60; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_not_yet_valid"},
		{"lifetime too long", func(f *fixture) string { c := f.claims(trenton); c.Expiry = c.IssuedAt + 3600; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_lifetime"},
		{"forged with another key", otherKey, buzzer.EFORBIDDEN, "geotoken_signature"},
		{"wrong issuer", func(f *fixture) string { c := f.claims(trenton); c.Issuer = "someone-else"; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_issuer"},
		{"other player", func(f *fixture) string { c := f.claims(trenton); c.PlayerID = "player-2"; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_player_mismatch"},
		{"other session", func(f *fixture) string { c := f.claims(trenton); c.SessionID = "session-2"; return f.sign(c) }, buzzer.EFORBIDDEN, "geotoken_session_mismatch"},
		{"unknown challenge", func(f *fixture) string { c := f.claims(trenton); c.Challenge = "made-up"; return f.sign(c) }, buzzer.EFORBIDDEN, "challenge_unknown"},
		{"challenge of another session", func(f *fixture) string {
			c := f.claims(trenton)
			other, err := f.svc.IssueChallenge(context.Background(), player, "session-2")
			if err != nil {
				t.Fatal(err)
			}
			c.Challenge = other.Value
			return f.sign(c)
		}, buzzer.EFORBIDDEN, "challenge_unknown"},
		{"expired challenge", func(f *fixture) string {
			c := f.claims(trenton)
			f.clock.Advance(MaxChallengeTTL)
			now := f.clock.Now().Unix()
			c.IssuedAt, c.Expiry = now, now+300
			return f.sign(c)
		}, buzzer.EFORBIDDEN, "challenge_expired"},
		{"ip far from gps", func(f *fixture) string { c := f.claims(trenton); c.IP = laIP.String(); return f.sign(c) }, buzzer.EFORBIDDEN, "ip_gps_mismatch"},
		{"ip not locatable", func(f *fixture) string { c := f.claims(trenton); c.IP = unknownIP.String(); return f.sign(c) }, buzzer.EFORBIDDEN, "ip_unlocated"},
		{"inaccurate gps", func(f *fixture) string { c := f.claims(trenton); c.GPS.AccuracyM = 2000; return f.sign(c) }, buzzer.EFORBIDDEN, "gps_inaccurate"},
		{"foreign cell towers", func(f *fixture) string {
			c := f.claims(trenton)
			c.CellTowers = []CellTower{{MCC: "302", MNC: "720", LAC: 1, CID: 2}}
			return f.sign(c)
		}, buzzer.EFORBIDDEN, "cell_mismatch"},
		{"state not served", func(f *fixture) string { c := f.claims(manhattan); return f.sign(c) }, buzzer.EFORBIDDEN, "jurisdiction_not_served"},
		{"at sea", func(f *fixture) string { c := f.claims(atlantic); c.CellTowers = nil; return f.sign(c) }, buzzer.EFORBIDDEN, "outside_jurisdiction"},
		{"garbage", func(f *fixture) string { return "not.a.token" }, buzzer.EINVALID, "geotoken_malformed"},
		{"too large", func(f *fixture) string { return strings.Repeat("a", 9000) }, buzzer.EINVALID, "geotoken_malformed"},
		{"alg none", func(f *fixture) string {
			tok := f.sign(f.claims(trenton))
			parts := strings.Split(tok, ".")
			return "eyJhbGciOiJub25lIiwia2lkIjoieCIsInR5cCI6Imdlbytqd3QifQ." + parts[1] + "."
		}, buzzer.EINVALID, "geotoken_malformed"},
		{"alg HS256", func(f *fixture) string {
			tok, err := signClaims(f.claims(trenton), jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, f.provider.KeyID())
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}, buzzer.EINVALID, "geotoken_malformed"},
		{"missing typ", func(f *fixture) string {
			payload, _ := jsonMarshal(f.claims(trenton))
			signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: f.provider.priv}, (&jose.SignerOptions{}).WithHeader("kid", f.provider.KeyID()))
			jws, _ := signer.Sign(payload)
			tok, _ := jws.CompactSerialize()
			return tok
		}, buzzer.EINVALID, "geotoken_malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			d, err := f.check(tt.token(f))
			wantDenied(t, err, tt.code, tt.reason)
			if d.Allowed || d.Reason != tt.reason {
				t.Fatalf("decision %+v", d)
			}
		})
	}
}

func TestCheckDeniesRegistryOutcomes(t *testing.T) {
	f := newFixture(t, nil)
	f.registry.SetConsent(player, false)
	_, err := f.check(f.sign(f.claims(trenton)))
	wantDenied(t, err, buzzer.EFORBIDDEN, "consent_missing")
	f.registry.SetConsent(player, true)
	f.registry.SetSelfExcluded(player, true)
	_, err = f.check(f.sign(f.claims(trenton)))
	wantDenied(t, err, buzzer.EFORBIDDEN, "self_excluded")
	f.registry.SetSelfExcluded(player, false)
	if _, err := f.check(f.sign(f.claims(trenton))); err != nil {
		t.Fatal(err)
	}
}

func TestCheckRejectsAlgorithmNotPinnedToKey(t *testing.T) {
	// The JWKS holds an ES256 key under kid "ec"; a token claiming that kid
	// but signed EdDSA must fail even though EdDSA is an allowed algorithm.
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), newRand(5))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := NewProviderKeys(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ecPriv.PublicKey, KeyID: "ec", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil)
	f.keys.up = StaticKeys{Keys: keys}
	tok, err := signClaims(f.claims(trenton), jose.SigningKey{Algorithm: jose.EdDSA, Key: f.provider.priv}, "ec")
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.check(tok)
	wantDenied(t, err, buzzer.EFORBIDDEN, "geotoken_signature")

	// The same key signing ES256 verifies.
	tok, err = signClaims(f.claims(trenton), jose.SigningKey{Algorithm: jose.ES256, Key: ecPriv}, "ec")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.check(tok); err != nil {
		t.Fatal(err)
	}
}

func TestCheckReplayedChallenge(t *testing.T) {
	f := newFixture(t, nil)
	c := f.claims(trenton)
	if _, err := f.check(f.sign(c)); err != nil {
		t.Fatal(err)
	}
	// A second token (different fix, so a different hash) reusing the
	// spent challenge is a replay.
	c.GPS.AccuracyM = 16
	_, err := f.check(f.sign(c))
	wantDenied(t, err, buzzer.EFORBIDDEN, "challenge_replayed")
}

func TestCheckSameTokenFromAnotherSessionIsDenied(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.sign(f.claims(trenton))
	if _, err := f.check(tok); err != nil {
		t.Fatal(err)
	}
	_, err := f.svc.Check(context.Background(), CheckInput{PlayerID: player, SessionID: "stolen-session", Token: tok})
	wantDenied(t, err, buzzer.EFORBIDDEN, "geotoken_session_mismatch")
	_, err = f.svc.Check(context.Background(), CheckInput{PlayerID: "player-2", SessionID: session, Token: tok})
	wantDenied(t, err, buzzer.EFORBIDDEN, "geotoken_player_mismatch")
}

func TestFailClosedWithoutCachedDecision(t *testing.T) {
	for _, dep := range []string{"registry", "keys", "ip locator"} {
		t.Run(dep, func(t *testing.T) {
			f := newFixture(t, nil)
			switch dep {
			case "registry":
				f.reg.setDown(true)
			case "keys":
				f.keys.setDown(true)
			case "ip locator":
				f.ips.setDown(true)
			}
			d, err := f.check(f.sign(f.claims(trenton)))
			wantDenied(t, err, buzzer.EUNAVAILABLE, ReasonUnavailable)
			if d.Allowed {
				t.Fatalf("decision %+v", d)
			}
			// Nothing was cached: a header-less request is still denied.
			_, err = f.check("")
			wantDenied(t, err, buzzer.EFORBIDDEN, "geolocation_required")
		})
	}
}

func TestOutageServesStillValidCachedDecision(t *testing.T) {
	f := newFixture(t, nil)
	first := f.sign(f.claims(trenton))
	if _, err := f.check(first); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Minute)
	f.reg.setDown(true)
	d, err := f.check(f.sign(f.claims(trenton)))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Cached || d.TokenSHA256 != tokenHash(first) {
		t.Fatalf("want the earlier cached decision, got %+v", d)
	}
	// Once that decision's bound passes, the outage denies.
	f.clock.Advance(5 * time.Minute)
	_, err = f.check(f.sign(f.claims(trenton)))
	wantDenied(t, err, buzzer.EUNAVAILABLE, ReasonUnavailable)
}

func TestCachedDecisionBoundAndInvalidation(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.DecisionTTL = 2 * time.Minute })
	tok := f.sign(f.claims(trenton))
	d, err := f.check(tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.clock.Now().Add(2 * time.Minute); !d.ValidUntil.Equal(want) {
		t.Fatalf("ValidUntil %v, want %v", d.ValidUntil, want)
	}
	// Served from cache — with the same token or with none — even though
	// the dependencies are now down, until the bound.
	f.keys.setDown(true)
	f.reg.setDown(true)
	f.clock.Advance(2*time.Minute - time.Second)
	for _, tk := range []string{tok, ""} {
		d, err := f.check(tk)
		if err != nil || !d.Cached || d.Jurisdiction != "NJ" {
			t.Fatalf("cached check (token sent: %v): %+v, %v", tk != "", d, err)
		}
	}
	f.clock.Advance(time.Second)
	_, err = f.check("")
	wantDenied(t, err, buzzer.EFORBIDDEN, "geolocation_required")
	_, err = f.check(tok) // its challenge is spent and its decision expired
	wantDenied(t, err, buzzer.EUNAVAILABLE, ReasonUnavailable)

	// A newer token replaces the decision...
	f.keys.setDown(false)
	f.reg.setDown(false)
	if _, err := f.check(f.sign(f.claims(trenton))); err != nil {
		t.Fatal(err)
	}
	c := f.claims(morrisville)
	c.IP = phillyIP.String()
	newer := f.sign(c)
	d, err = f.check(newer)
	if err != nil || d.Jurisdiction != "PA" {
		t.Fatalf("newer token: %+v, %v", d, err)
	}
	if d, err := f.check(""); err != nil || d.Jurisdiction != "PA" || d.TokenSHA256 != tokenHash(newer) {
		t.Fatalf("cache after newer token: %+v, %v", d, err)
	}
	// ...and a newer token that is denied drops it.
	c = f.claims(trenton)
	c.Risk.VPN = true
	_, err = f.check(f.sign(c))
	wantDenied(t, err, buzzer.EFORBIDDEN, "risk_vpn")
	_, err = f.check("")
	wantDenied(t, err, buzzer.EFORBIDDEN, "geolocation_required")
}

func TestDecisionNeverOutlivesTokenExpiry(t *testing.T) {
	f := newFixture(t, nil)
	c := f.claims(trenton)
	c.Expiry = c.IssuedAt + 60
	d, err := f.check(f.sign(c))
	if err != nil {
		t.Fatal(err)
	}
	if !d.ValidUntil.Equal(time.Unix(c.Expiry, 0)) {
		t.Fatalf("ValidUntil %v, want token exp", d.ValidUntil)
	}
}

func TestConcurrentRequestsWithOneNewTokenShareOneVerification(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.sign(f.claims(trenton))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = f.check(tok)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
}

func TestIssueChallenge(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.ChallengeTTL = time.Minute })
	ch, err := f.svc.IssueChallenge(context.Background(), player, session)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Value) != 43 || !ch.ExpiresAt.Equal(f.clock.Now().Add(time.Minute)) {
		t.Fatalf("challenge %+v", ch)
	}
	if _, err := f.svc.IssueChallenge(context.Background(), "", session); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("empty player: %v", err)
	}
	for i := 0; i < 15; i++ {
		if _, err := f.svc.IssueChallenge(context.Background(), player, session); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.svc.IssueChallenge(context.Background(), player, session); buzzer.ErrorCode(err) != buzzer.ETOOMANY {
		t.Fatalf("17th outstanding challenge: %v", err)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.svc.IssueChallenge(context.Background(), player, session); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	b := mustUSStates(t)
	deps := Deps{Boundaries: b, Keys: StaticKeys{}, Registry: NewDevRegistry(), IPs: NewStaticIPLocator(nil), Challenges: NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: newRand(1)}
	for name, cfg := range map[string]Config{
		"no jurisdictions":   {},
		"unknown":            {Jurisdictions: []Jurisdiction{"ZZ"}},
		"challenge too long": {Jurisdictions: []Jurisdiction{"NJ"}, ChallengeTTL: 6 * time.Minute},
		"negative buffer":    {Jurisdictions: []Jurisdiction{"NJ"}, BoundaryBufferM: -1},
		"bad mcc":            {Jurisdictions: []Jurisdiction{"NJ"}, HomeMCCs: []string{"31"}},
		"huge skew":          {Jurisdictions: []Jurisdiction{"NJ"}, ClockSkew: time.Hour},
	} {
		if _, err := NewService(cfg, deps); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
	if _, err := NewService(Config{Jurisdictions: []Jurisdiction{"NJ"}}, Deps{Boundaries: b}); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Errorf("missing deps: %v", err)
	}
	svc, err := NewService(Config{Jurisdictions: []Jurisdiction{"NJ"}}, deps)
	if err != nil {
		t.Fatal(err)
	}
	got := svc.Config()
	if got.BoundaryBufferM != 500 || got.MaxGPSAccuracyM != 100 || got.MaxIPDistanceM != 150_000 || got.ChallengeTTL != 5*time.Minute || got.DecisionTTL != 5*time.Minute || got.KeyTimeout != time.Second {
		t.Fatalf("defaults %+v", got)
	}
}
