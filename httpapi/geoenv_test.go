package httpapi_test

import (
	"context"
	"crypto/rand"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
)

var (
	trenton     = geo.Point{Lat: 40.2222, Lon: -74.7656}
	morrisville = geo.Point{Lat: 40.2111, Lon: -74.7875}
)

// geoEnv is a node's real location gate: httpapi.LocalGeo over a
// geo.Service licensed for NJ and PA (dev provider keys, the real state
// boundaries, loopback addresses located in Trenton).
type geoEnv struct {
	svc  *geo.Service
	prov *geo.DevProvider
	gate httpapi.LocalGeo
}

func newGeoEnv(t testing.TB, node geo.Jurisdiction) *geoEnv {
	t.Helper()
	prov, err := geo.OpenDevProvider(t.TempDir(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	states, err := geo.USStates()
	if err != nil {
		t.Fatal(err)
	}
	svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ", "PA"}, Issuer: geo.DevIssuer}, geo.Deps{
		Boundaries: states, Keys: prov, Registry: geo.NewDevRegistry(),
		IPs: geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{
			netip.MustParsePrefix("127.0.0.0/8"): {Point: trenton, Country: "US", Subdivision: "NJ"},
		}),
		Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &geoEnv{svc: svc, prov: prov, gate: httpapi.LocalGeo{Service: svc, Jurisdiction: node}}
}

// token answers a fresh challenge of the session of bearer (whose verified
// principal is p) with a dev-provider token located at at, as the player's
// device would.
func (e *geoEnv) token(t testing.TB, bearer string, p auth.Principal, at geo.Point) string {
	t.Helper()
	req := httptest.NewRequest("POST", "/", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	c, err := e.svc.IssueChallenge(context.Background(), p.Subject, httpapi.SessionID(req, p))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	tok, err := e.prov.Sign(geo.Claims{
		PlayerID: c.PlayerID, SessionID: c.SessionID, Challenge: c.Value, IssuedAt: now, Expiry: now + 120,
		GPS: geo.GPSFix{Lat: at.Lat, Lon: at.Lon, AccuracyM: 10}, IP: "127.0.0.1",
		CellTowers: []geo.CellTower{{MCC: "310", MNC: "410", LAC: 1, CID: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// admit verifies a token at at for bearer's session, so the session's
// later requests are served from its cached decision.
func (e *geoEnv) admit(t testing.TB, bearer string, p auth.Principal, at geo.Point) {
	t.Helper()
	req := httptest.NewRequest("POST", "/", nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if _, err := e.svc.Check(context.Background(), geo.CheckInput{
		PlayerID: p.Subject, SessionID: httpapi.SessionID(req, p), Token: e.token(t, bearer, p, at),
	}); err != nil {
		t.Fatal(err)
	}
}
