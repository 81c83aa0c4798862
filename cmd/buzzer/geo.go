package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
)

// startGeo builds the gate every regulated route of the node runs behind
// (money, bets, draws, table seats and actions).
//
// `buzzer edge` sits behind a gateway that has already verified the
// location: its gate is gateway.Verifier, which admits a request only with
// a decision the gateway signed for that very request and this edge's own
// jurisdiction. The edge verifies no geolocation token itself (the gateway
// consumed the token's challenge) and serves no challenges.
//
// `buzzer serve` verifies tokens itself: each jurisdiction's gate is
// httpapi.LocalGeo over one geo.Service licensed for the jurisdictions the
// node holds, built exactly as the gateway builds its own (dev mode: the
// data dir's dev provider key and the simulated registry), and
// POST /v1/geo/challenges is mounted beside it. A jurisdiction's gate admits
// only a location in that jurisdiction for an account of it.
func startGeo(ctx context.Context, n *node) (map[string]httpapi.GeoGate, error) {
	j := geo.Jurisdiction(n.cfg.Jurisdiction)
	if n.cfg.Edge {
		file := n.cfg.Geo.GatewayJWKS
		if file == "" {
			file = gateway.JWKSFile(n.cfg.DataDir)
		}
		v, err := gateway.LoadVerifier(file, j, buzzer.SystemClock{})
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "edge: it admits regulated requests only with the gateway's signed decision, and the gateway's keys cannot be loaded (%s)", buzzer.ErrorMessage(err))
		}
		n.log.Info("edge: regulated requests need the gateway's signed location decision", "jurisdiction", j, "gateway_jwks", file)
		return map[string]httpapi.GeoGate{string(j): v}, nil
	}
	held := make([]geo.Jurisdiction, len(n.cfg.Jurisdictions))
	for i, j := range n.cfg.Jurisdictions {
		held[i] = geo.Jurisdiction(j)
	}
	svc, closers, err := newGeoService(n.cfg.Geo, n.cfg.DataDir, n.cfg.Dev, held)
	for _, c := range closers {
		n.onClose(c)
	}
	if err != nil {
		return nil, err
	}
	n.http.MountGeo(svc)
	gates := map[string]httpapi.GeoGate{}
	for _, j := range held {
		gates[string(j)] = httpapi.LocalGeo{Service: svc, Jurisdiction: j}
	}
	return gates, nil
}

// devFixes are the locations dev tools and bench bots report, one per
// jurisdiction: each well inside its state (past the boundary buffer) and
// within the IP-versus-GPS distance of where dev mode places loopback and
// private addresses (Trenton, NJ).
var devFixes = map[string]geo.Point{
	"NJ": {Lat: 40.2222, Lon: -74.7656}, // Trenton
	"PA": {Lat: 40.2111, Lon: -74.7875}, // Morrisville, across the Delaware
	"NY": {Lat: 40.7812, Lon: -73.9665}, // Central Park, Manhattan
	"DE": {Lat: 39.7459, Lon: -75.5466}, // Wilmington
}

// devFix is what a simulated device reports in its geolocation token.
type devFix struct {
	Point     geo.Point
	IP        string        // device address; default 127.0.0.1
	AccuracyM float64       // default 10
	VPN       bool          // raise the VPN risk flag
	TTL       time.Duration // token lifetime; default 2m
}

// devGeolocator plays a player device's geolocation SDK against dev-mode
// targets (gateway or serve): it asks a target for a one-time challenge for
// the bearer's session and signs a token with the data dir's dev provider
// key. `dev geotoken` and the bench bots share it.
type devGeolocator struct {
	prov *geo.DevProvider
	hc   *http.Client
}

// newDevGeolocator opens the dev provider key of dataDir (the key the
// targets trust in dev mode); challenges are fetched with hc (nil: a client
// with a 10 s timeout).
func newDevGeolocator(dataDir string, hc *http.Client) (*devGeolocator, error) {
	prov, err := geo.OpenDevProvider(dataDir, rand.Reader)
	if err != nil {
		return nil, err
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	return &devGeolocator{prov: prov, hc: hc}, nil
}

// parseTarget checks a target base URL.
func parseTarget(target string) (*url.URL, error) {
	base, err := url.Parse(target)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "the target must be an http(s) URL, got %q", target)
	}
	return base, nil
}

// Token fetches a challenge for bearer's session from target and returns a
// token at fix that answers it. The token is good only at target (or a
// node sharing its challenges): challenges are consumed where issued.
func (g *devGeolocator) Token(ctx context.Context, target *url.URL, bearer string, fix devFix) (string, error) {
	ch, err := g.challenge(ctx, target, bearer)
	if err != nil {
		return "", err
	}
	if fix.IP == "" {
		fix.IP = "127.0.0.1"
	}
	if fix.AccuracyM == 0 {
		fix.AccuracyM = 10
	}
	if fix.TTL == 0 {
		fix.TTL = 2 * time.Minute
	}
	now := time.Now()
	return g.prov.Sign(geo.Claims{
		PlayerID: ch.PlayerID, SessionID: ch.SessionID, Challenge: ch.Challenge,
		IssuedAt: now.Unix(), Expiry: now.Add(fix.TTL).Unix(),
		GPS:        geo.GPSFix{Lat: fix.Point.Lat, Lon: fix.Point.Lon, AccuracyM: fix.AccuracyM},
		CellTowers: []geo.CellTower{{MCC: "310", MNC: "410", LAC: 20815, CID: 1048577}},
		IP:         fix.IP,
		Risk:       geo.RiskFlags{VPN: fix.VPN},
	})
}

type challengeResponse struct {
	Challenge string `json:"challenge"`
	PlayerID  string `json:"player_id"`
	SessionID string `json:"session_id"`
}

func (g *devGeolocator) challenge(ctx context.Context, target *url.URL, bearer string) (challengeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.JoinPath(strings.TrimPrefix(httpapi.RouteGeoChallenge, "POST ")).String(), nil)
	if err != nil {
		return challengeResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := g.hc.Do(req)
	if err != nil {
		return challengeResponse{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot reach %s", target.Redacted())
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return challengeResponse{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "reading the challenge")
	}
	if resp.StatusCode != http.StatusCreated {
		return challengeResponse{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "challenge request refused: %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var c challengeResponse
	if err := json.Unmarshal(body, &c); err != nil || c.Challenge == "" || c.PlayerID == "" || c.SessionID == "" {
		return challengeResponse{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "the challenge response is not valid: %s", body)
	}
	return c, nil
}

// devGeoClient returns a copy of c whose regulated requests (every request
// under gateway.RegulatedPrefixes: a gateway needs a location for reads of
// regulated data too, while serve and edges need one for deposits,
// withdrawals, bets, draws, seats and table actions) carry a
// Geolocation-Token for the request's player session, located in
// jurisdiction (see devFixes), as a player's app does. Each session (an
// Authorization header, per target host) fetches one challenge, from the
// host it is about to call, and one token when it first needs them, and
// sends that token until it nears its expiry; the host answers from the
// session's cached decision, so no request waits for a new token. dataDir
// holds the dev provider key the targets trust. The bench bots of every
// part use it.
func devGeoClient(dataDir, jurisdiction string, c *http.Client) (*http.Client, error) {
	p, ok := devFixes[jurisdiction]
	if !ok {
		return nil, buzzer.Errorf(buzzer.EINVALID, "no dev location for jurisdiction %q (have NJ, PA, NY, DE)", jurisdiction)
	}
	if c == nil {
		c = &http.Client{Timeout: 30 * time.Second}
	}
	g, err := newDevGeolocator(dataDir, c)
	if err != nil {
		return nil, err
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	wrapped := *c
	wrapped.Transport = &geoTransport{base: base, g: g, fix: devFix{Point: p}, sessions: map[string]*geoSession{}}
	return &wrapped, nil
}

// geoTransport attaches each session's current geolocation token to its
// regulated requests.
type geoTransport struct {
	base http.RoundTripper
	g    *devGeolocator
	fix  devFix

	mu       sync.Mutex
	sessions map[string]*geoSession // by target host and Authorization header
}

// geoSession is one player session's current token. Its mutex is held
// while a token is fetched, so concurrent requests of one session share it.
type geoSession struct {
	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// geoRenewals are the refusals after which a session needs a new token:
// its decision expired or was dropped, or the token itself is spent, or the
// node no longer knows its challenge (challenges and decisions live in the
// node's memory, so a restarted or upgraded node re-checks each session once).
var geoRenewals = map[string]bool{
	"geolocation_required": true, "challenge_replayed": true, "challenge_expired": true, "challenge_unknown": true,
	"geotoken_expired": true, "geotoken_stale": true,
}

func regulatedPath(r *http.Request) bool {
	for _, p := range gateway.RegulatedPrefixes {
		if r.URL.Path == p || strings.HasPrefix(r.URL.Path, p+"/") {
			return true
		}
	}
	return false
}

func (t *geoTransport) session(key string) *geoSession {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.sessions[key]
	if !ok {
		s = &geoSession{}
		t.sessions[key] = s
	}
	return s
}

// current returns the session's token, fetching a new one when there is
// none, it nears expiry, or it is the stale one a refusal reported.
func (t *geoTransport) current(ctx context.Context, s *geoSession, target *url.URL, bearer, stale string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token != "" && s.token != stale && time.Now().Before(s.renewAt) {
		return s.token, nil
	}
	tok, err := t.g.Token(ctx, target, bearer, t.fix)
	if err != nil {
		return "", err
	}
	ttl := t.fix.TTL
	if ttl == 0 {
		ttl = 2 * time.Minute
	}
	// Renew well before exp: the decision made from it ends there.
	s.token, s.renewAt = tok, time.Now().Add(ttl*3/4)
	return tok, nil
}

// RoundTrip implements http.RoundTripper. A request refused because its
// session needs a new token is sent again with a fresh one, up to twice
// (concurrent requests of one session may race a renewal): a location
// refusal happens before anything else, so nothing was done.
func (t *geoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	auth := r.Header.Get("Authorization")
	bearer, ok := strings.CutPrefix(auth, "Bearer ")
	if !regulatedPath(r) || !ok || bearer == "" || r.Header.Get(httpapi.GeoTokenHeader) != "" {
		return t.base.RoundTrip(r)
	}
	target := &url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host}
	s := t.session(target.Host + " " + auth)
	stale := ""
	for attempt := 0; ; attempt++ {
		tok, err := t.current(r.Context(), s, target, bearer, stale)
		if err != nil {
			if attempt == 0 && r.Body != nil {
				r.Body.Close() // a RoundTripper closes the body, even on error
			}
			return nil, err
		}
		out := r.Clone(r.Context())
		if attempt > 0 && r.Body != nil && r.Body != http.NoBody {
			if out.Body, err = r.GetBody(); err != nil {
				return nil, err
			}
		}
		out.Header.Set(httpapi.GeoTokenHeader, tok)
		resp, err := t.base.RoundTrip(out)
		if err != nil || resp.StatusCode != http.StatusForbidden || attempt >= 2 || (r.Body != nil && r.Body != http.NoBody && r.GetBody == nil) {
			return resp, err
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		var p struct{ Reason string }
		if json.Unmarshal(body, &p) != nil || !geoRenewals[p.Reason] {
			resp.Body = io.NopCloser(bytes.NewReader(body))
			return resp, nil
		}
		stale = tok
	}
}
