package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/geo"
)

var (
	geoTrenton     = geo.Point{Lat: 40.2222, Lon: -74.7656}
	geoMorrisville = geo.Point{Lat: 40.2111, Lon: -74.7875}
)

// downRegistry is a registry that cannot answer.
type downRegistry struct{ down atomic.Bool }

func (d *downRegistry) PlayerStatus(ctx context.Context, p string, j geo.Jurisdiction) (geo.PlayerStatus, error) {
	if d.down.Load() {
		return geo.PlayerStatus{}, errors.New("registry: connection refused")
	}
	return geo.NewDevRegistry().PlayerStatus(ctx, p, j)
}

type geoFixture struct {
	h        http.Handler
	svc      *geo.Service
	provider *geo.DevProvider
	registry *downRegistry
	served   atomic.Int64
	last     atomic.Value // geo.Decision
}

// newGeoFixture serves MountGeo and a money-like route behind RequireGeo
// with a real geo.Service (dev provider keys, real boundaries).
func newGeoFixture(t *testing.T, node geo.Jurisdiction, gateNil bool) *geoFixture {
	t.Helper()
	prov, err := geo.OpenDevProvider(t.TempDir(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	states, err := geo.USStates()
	if err != nil {
		t.Fatal(err)
	}
	f := &geoFixture{provider: prov, registry: &downRegistry{}}
	f.svc, err = geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ", "PA"}, Issuer: geo.DevIssuer}, geo.Deps{
		Boundaries: states, Keys: prov, Registry: f.registry,
		IPs: geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{
			netip.MustParsePrefix("127.0.0.0/8"): {Point: geoTrenton, Country: "US", Subdivision: "NJ"},
		}),
		Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), tokenTable{
		"alice-1": {Subject: "alice", Jurisdiction: "NJ", TokenID: "a1"},
		"alice-2": {Subject: "alice", Jurisdiction: "NJ", TokenID: "a2"},
		"bob":     {Subject: "bob", Jurisdiction: "PA", TokenID: "b1"},
		"nojti":   {Subject: "carol", Jurisdiction: "NJ"},
		"nojur":   {Subject: "dave", TokenID: "d1"},
	}, tokenTable{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s.MountGeo(f.svc)
	var gate GeoGate = LocalGeo{Service: f.svc, Jurisdiction: node}
	if gateNil {
		gate = nil
	}
	s.Player("POST /v1/wallet/deposits", Player, RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
		d, ok := GeoFrom(r.Context())
		if !ok {
			t.Error("handler ran without a decision in its context")
		}
		f.served.Add(1)
		f.last.Store(d)
		return WriteJSON(w, http.StatusCreated, d.Record())
	}))
	f.h = s.PlayerHandler()
	return f
}

func (f *geoFixture) challenge(t *testing.T, bearer string) challengeView {
	t.Helper()
	rec, _ := do(t, f.h, http.MethodPost, "/v1/geo/challenges", bearer, "")
	if rec.Code != http.StatusCreated {
		t.Fatalf("challenge: %d %s", rec.Code, rec.Body)
	}
	var c challengeView
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// token signs a token for a fresh challenge of bearer's session at p.
func (f *geoFixture) token(t *testing.T, bearer string, p geo.Point, mutate func(*geo.Claims)) string {
	t.Helper()
	c := f.challenge(t, bearer)
	now := time.Now().Unix()
	cl := geo.Claims{
		PlayerID: c.PlayerID, SessionID: c.SessionID, Challenge: c.Challenge, IssuedAt: now, Expiry: now + 120,
		GPS: geo.GPSFix{Lat: p.Lat, Lon: p.Lon, AccuracyM: 10}, IP: "127.0.0.1",
		CellTowers: []geo.CellTower{{MCC: "310", MNC: "410", LAC: 1, CID: 2}},
	}
	if mutate != nil {
		mutate(&cl)
	}
	tok, err := f.provider.Sign(cl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *geoFixture) deposit(t *testing.T, bearer, geoToken string) (*httptest.ResponseRecorder, Problem) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/wallet/deposits", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+bearer)
	if geoToken != "" {
		req.Header.Set(GeoTokenHeader, geoToken)
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var p Problem
	if rec.Code >= 400 {
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
	}
	return rec, p
}

func TestGeoChallengeIsBoundToTheVerifiedSession(t *testing.T) {
	f := newGeoFixture(t, "", false)
	c := f.challenge(t, "alice-1")
	if c.PlayerID != "alice" || c.SessionID != "jti:a1" || len(c.Challenge) < 40 {
		t.Fatalf("challenge %+v", c)
	}
	if d := c.ExpiresAt.Sub(c.IssuedAt); d <= 0 || d > geo.MaxChallengeTTL {
		t.Fatalf("challenge lifetime %s", d)
	}
	// A client-chosen Session-Id header does not move the challenge to
	// another session.
	req := httptest.NewRequest(http.MethodPost, "/v1/geo/challenges", nil)
	req.Header.Set("Authorization", "Bearer alice-1")
	req.Header.Set("Session-Id", "attacker-chosen")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"session_id":"jti:a1"`) {
		t.Fatalf("Session-Id header changed the session: %s", rec.Body)
	}
	// Without a jti the session is the hash of the credential.
	nc := f.challenge(t, "nojti")
	if !strings.HasPrefix(nc.SessionID, "tok:") || len(nc.SessionID) != 4+32 {
		t.Fatalf("session without jti: %q", nc.SessionID)
	}
	if rec, p := do(t, f.h, http.MethodPost, "/v1/geo/challenges", "", ""); rec.Code != 401 || p.Code != buzzer.EUNAUTHORIZED {
		t.Fatalf("anonymous challenge: %d %+v", rec.Code, p)
	}
}

func TestRequireGeoAdmitsVerifiedAndCachedDecisions(t *testing.T) {
	f := newGeoFixture(t, "NJ", false)
	tok := f.token(t, "alice-1", geoTrenton, nil)
	rec, p := f.deposit(t, "alice-1", tok)
	if rec.Code != http.StatusCreated {
		t.Fatalf("deposit from Trenton: %d %+v", rec.Code, p)
	}
	d := f.last.Load().(geo.Decision)
	if d.Jurisdiction != "NJ" || !d.Allowed || d.TokenSHA256 == "" || d.SessionID != "jti:a1" {
		t.Fatalf("decision %+v", d)
	}
	var r geo.Record
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil || r.Jurisdiction != "NJ" || r.TokenSHA256 != d.TokenSHA256 || r.Reason != "verified" {
		t.Fatalf("record %s (%v)", rec.Body, err)
	}
	// Next request of the session: the cached decision serves it.
	if rec, p := f.deposit(t, "alice-1", ""); rec.Code != http.StatusCreated {
		t.Fatalf("cached decision: %d %+v", rec.Code, p)
	}
	if !f.last.Load().(geo.Decision).Cached {
		t.Fatal("second request was not served from the cached decision")
	}
	// Another session of the same player has no decision yet, and cannot
	// borrow the first session's token.
	if rec, p := f.deposit(t, "alice-2", ""); rec.Code != 403 || p.Reason != "geolocation_required" {
		t.Fatalf("other session without a token: %d %+v", rec.Code, p)
	}
	if rec, p := f.deposit(t, "alice-2", tok); rec.Code != 403 || p.Reason != "geotoken_session_mismatch" {
		t.Fatalf("token replayed from another session: %d %+v", rec.Code, p)
	}
	if f.served.Load() != 2 {
		t.Fatalf("handler ran %d times, want 2", f.served.Load())
	}
}

func TestRequireGeoRefusals(t *testing.T) {
	f := newGeoFixture(t, "NJ", false)
	cases := []struct {
		name, bearer string
		token        func() string
		status       int
		code, reason string
	}{
		{"NJ account located in PA", "alice-1", func() string { return f.token(t, "alice-1", geoMorrisville, nil) }, 403, buzzer.EFORBIDDEN, "jurisdiction_mismatch"},
		{"PA account at a NJ-only node", "bob", func() string { return f.token(t, "bob", geoMorrisville, nil) }, 403, buzzer.EFORBIDDEN, "edge_jurisdiction_mismatch"},
		{"account without jurisdiction", "nojur", func() string { return f.token(t, "nojur", geoTrenton, nil) }, 403, buzzer.EFORBIDDEN, "account_jurisdiction_missing"},
		{"another player's token", "bob", func() string { return f.token(t, "alice-1", geoTrenton, nil) }, 403, buzzer.EFORBIDDEN, "geotoken_player_mismatch"},
		{"vpn", "alice-1", func() string {
			return f.token(t, "alice-1", geoTrenton, func(c *geo.Claims) { c.Risk.VPN = true })
		}, 403, buzzer.EFORBIDDEN, "risk_vpn"},
		{"expired", "alice-1", func() string {
			return f.token(t, "alice-1", geoTrenton, func(c *geo.Claims) { c.IssuedAt -= 600; c.Expiry = c.IssuedAt + 60 })
		}, 403, buzzer.EFORBIDDEN, "geotoken_expired"},
		{"garbage", "alice-1", func() string { return "not.a.token" }, 400, buzzer.EINVALID, "geotoken_malformed"},
		{"no token, no decision", "alice-1", func() string { return "" }, 403, buzzer.EFORBIDDEN, "geolocation_required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.served.Load()
			rec, p := f.deposit(t, tc.bearer, tc.token())
			if rec.Code != tc.status || p.Code != tc.code || p.Reason != tc.reason {
				t.Fatalf("%d %+v, want %d %s/%s", rec.Code, p, tc.status, tc.code, tc.reason)
			}
			if f.served.Load() != before {
				t.Fatal("the handler ran on a refused request")
			}
		})
	}
}

func TestRequireGeoFailsClosed(t *testing.T) {
	t.Run("registry down", func(t *testing.T) {
		f := newGeoFixture(t, "", false)
		tok := f.token(t, "alice-1", geoTrenton, nil)
		f.registry.down.Store(true)
		rec, p := f.deposit(t, "alice-1", tok)
		if rec.Code != 503 || p.Code != buzzer.EUNAVAILABLE || p.Reason != geo.ReasonUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Fatalf("registry down: %d %+v", rec.Code, p)
		}
		if f.served.Load() != 0 {
			t.Fatal("handler ran while compliance was unavailable")
		}
	})
	t.Run("no gate configured", func(t *testing.T) {
		f := newGeoFixture(t, "", true)
		tok := f.token(t, "alice-1", geoTrenton, nil)
		rec, p := f.deposit(t, "alice-1", tok)
		if rec.Code != 503 || p.Reason != geo.ReasonUnavailable || f.served.Load() != 0 {
			t.Fatalf("nil gate: %d %+v", rec.Code, p)
		}
	})
	t.Run("decision not allowed", func(t *testing.T) {
		err := CheckResidency(geo.Decision{Jurisdiction: "NJ"}, auth.Principal{Subject: "x", Jurisdiction: "NJ"}, "")
		if buzzer.ErrorReason(err) != geo.ReasonUnavailable {
			t.Fatalf("a not-allowed decision passed residency: %v", err)
		}
	})
}
