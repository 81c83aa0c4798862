package gateway_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/gateway/limitertest"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

var (
	trenton     = geo.Point{Lat: 40.2222, Lon: -74.7656}
	morrisville = geo.Point{Lat: 40.2111, Lon: -74.7875}
)

var states struct {
	once sync.Once
	b    *geo.Boundaries
	err  error
}

// usStates loads the boundary data once for all tests; it is read-only.
func usStates(t testing.TB) *geo.Boundaries {
	states.once.Do(func() { states.b, states.err = geo.USStates() })
	if states.err != nil {
		t.Fatal(states.err)
	}
	return states.b
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// noPrices is a price source for edges that only move money in these
// tests; a bet would be refused.
type noPrices struct{}

func (noPrices) Quote(context.Context, string, string, string) (wallet.Quote, error) {
	return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "no prices in this test")
}

// edge is one jurisdiction's regulated service: the real wallet routes
// (httpapi.MountWallet) on their own SQLite store, admitting money only with
// a decision forwarded by the gateway (gateway.Verifier).
type edge struct {
	j      geo.Jurisdiction
	db     *sqlite.DB
	wallet *wallet.Service
	srv    *httptest.Server
	hold   chan struct{} // when set, admitted requests wait on it
	hits   atomic.Int64
	last   atomic.Value // geo.Decision
}

// recordingGate is the edge's gateway.Verifier, counting and keeping the
// decisions it admits (and holding them when the test asks).
type recordingGate struct {
	gate httpapi.GeoGate
	e    *edge
}

func (g recordingGate) Decide(r *http.Request, p auth.Principal) (geo.Decision, error) {
	d, err := g.gate.Decide(r, p)
	if err != nil {
		return d, err
	}
	g.e.hits.Add(1)
	g.e.last.Store(d)
	if g.e.hold != nil {
		<-g.e.hold
	}
	return d, nil
}

func newEdge(t *testing.T, j geo.Jurisdiction, keys *auth.DevKeys, gatewayJWKS []byte) *edge {
	t.Helper()
	e := &edge{j: j, db: enginetest.SQLite(t)}
	wcfg := wallet.DefaultConfig()
	wcfg.Jurisdiction = string(j)
	svc, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(e.db), Prices: noPrices{}})
	if err != nil {
		t.Fatal(err)
	}
	players, err := auth.NewVerifier(auth.DevPlayerConfig(keys), buzzer.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(players.Close)
	cfg := httpapi.DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, err := httpapi.New(cfg, quiet(), players, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	gate, err := gateway.NewVerifier(gatewayJWKS, j, buzzer.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	e.wallet = svc
	s.MountWallet(svc, recordingGate{gate: gate, e: e})
	e.srv = httptest.NewServer(s.PlayerHandler())
	t.Cleanup(e.srv.Close)
	return e
}

// transactions counts the edge store's ledger transactions.
func (e *edge) transactions(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.db.InTx(context.Background(), func(tx *sql.Tx) error {
		return tx.QueryRowContext(context.Background(), "SELECT count(*) FROM wallet_transactions").Scan(&n)
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// switchable dependencies let a test take a compliance dependency down.
type switchKeys struct {
	up   geo.KeySource
	down atomic.Pointer[geo.KeySource]
}

func (s *switchKeys) ProviderKeys(ctx context.Context) (*geo.ProviderKeys, error) {
	if d := s.down.Load(); d != nil {
		return (*d).ProviderKeys(ctx)
	}
	return s.up.ProviderKeys(ctx)
}

type switchRegistry struct {
	up   geo.Registry
	down atomic.Pointer[geo.Registry]
}

func (s *switchRegistry) PlayerStatus(ctx context.Context, p string, j geo.Jurisdiction) (geo.PlayerStatus, error) {
	if d := s.down.Load(); d != nil {
		return (*d).PlayerStatus(ctx, p, j)
	}
	return s.up.PlayerStatus(ctx, p, j)
}

type harness struct {
	t        *testing.T
	keys     *auth.DevKeys
	provider *geo.DevProvider
	geoKeys  *switchKeys
	registry *switchRegistry
	clock    *limitertest.Clock
	metrics  *prometheus.Registry
	edges    map[geo.Jurisdiction]*edge
	gw       *httptest.Server
	client   *http.Client
}

type harnessOpts struct {
	cfg    func(*gateway.Config)
	parent http.Handler // unregulated routes, when set
	hold   bool         // NJ edge deposits wait on its hold channel
	// sharedPlayers builds the shared player limiter on the harness clock.
	sharedPlayers func(c *limitertest.Clock) gateway.Limiter
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	dir := t.TempDir()
	keys, err := auth.LoadOrCreateDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	prov, err := geo.OpenDevProvider(dir, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gateway.OpenSigner(gateway.KeyFile(dir), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, keys: keys, provider: prov, clock: limitertest.NewClockAt(time.Now()), metrics: prometheus.NewRegistry(),
		edges: map[geo.Jurisdiction]*edge{}, client: &http.Client{Timeout: 30 * time.Second}}
	h.geoKeys = &switchKeys{up: prov}
	h.registry = &switchRegistry{up: geo.NewDevRegistry()}
	topo := gateway.Topology{Edges: map[geo.Jurisdiction]*url.URL{}}
	for _, j := range []geo.Jurisdiction{"NJ", "PA"} {
		e := newEdge(t, j, keys, signer.JWKS())
		if o.hold && j == "NJ" {
			e.hold = make(chan struct{})
		}
		h.edges[j] = e
		topo.Edges[j], _ = url.Parse(e.srv.URL)
	}
	if o.parent != nil {
		ps := httptest.NewServer(o.parent)
		t.Cleanup(ps.Close)
		topo.Parent, _ = url.Parse(ps.URL)
	}
	svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ", "PA"}, Issuer: geo.DevIssuer}, geo.Deps{
		Boundaries: usStates(t), Keys: h.geoKeys, Registry: h.registry,
		IPs: geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{
			netip.MustParsePrefix("127.0.0.0/8"): {Point: trenton, Country: "US", Subdivision: "NJ"},
		}),
		Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader,
	})
	if err != nil {
		t.Fatal(err)
	}
	players, err := auth.NewVerifier(auth.DevPlayerConfig(keys), buzzer.SystemClock{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(players.Close)
	cfg := gateway.DefaultConfig()
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	deps := gateway.Deps{Topology: topo, Players: players, Geo: svc, Signer: signer, Registerer: h.metrics, Log: quiet(), Clock: h.clock}
	if o.sharedPlayers != nil {
		deps.SharedPlayers = o.sharedPlayers(h.clock)
	}
	gw, err := gateway.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	hcfg := httpapi.DefaultConfig()
	hcfg.HTTPAddr, hcfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, err := httpapi.New(hcfg, quiet(), players, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	s.MountGeo(svc)
	gw.Mount(s)
	h.gw = httptest.NewServer(s.PlayerHandler())
	t.Cleanup(h.gw.Close)
	return h
}

func (h *harness) token(player, jurisdiction string) string {
	h.t.Helper()
	tok, err := h.keys.PlayerToken(player, jurisdiction, time.Hour, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

type response struct {
	status  int
	header  http.Header
	body    []byte
	problem httpapi.Problem
}

func (h *harness) do(method, path, bearer string, hdr map[string]string, body string) response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.gw.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: b}
	if resp.StatusCode >= 400 {
		_ = json.Unmarshal(b, &r.problem)
	}
	return r
}

// geotoken fetches a challenge through the gateway for bearer's session and
// returns a dev-provider token located at p.
func (h *harness) geotoken(bearer string, p geo.Point, mutate func(*geo.Claims)) string {
	h.t.Helper()
	r := h.do(http.MethodPost, "/v1/geo/challenges", bearer, nil, "")
	if r.status != http.StatusCreated {
		h.t.Fatalf("challenge: %d %s", r.status, r.body)
	}
	var c struct {
		Challenge string `json:"challenge"`
		PlayerID  string `json:"player_id"`
		SessionID string `json:"session_id"`
	}
	if err := json.Unmarshal(r.body, &c); err != nil {
		h.t.Fatal(err)
	}
	now := time.Now().Unix()
	cl := geo.Claims{PlayerID: c.PlayerID, SessionID: c.SessionID, Challenge: c.Challenge, IssuedAt: now, Expiry: now + 120,
		GPS: geo.GPSFix{Lat: p.Lat, Lon: p.Lon, AccuracyM: 10}, IP: "127.0.0.1",
		CellTowers: []geo.CellTower{{MCC: "310", MNC: "410", LAC: 7, CID: 9}}}
	if mutate != nil {
		mutate(&cl)
	}
	tok, err := h.provider.Sign(cl)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

var keySeq atomic.Int64

func (h *harness) deposit(bearer, geoToken string) response {
	h.t.Helper()
	hdr := map[string]string{"Idempotency-Key": "dep-" + time.Now().Format("150405.000000000") + "-" + string(rune('a'+keySeq.Add(1)%26))}
	if geoToken != "" {
		hdr[httpapi.GeoTokenHeader] = geoToken
	}
	return h.do(http.MethodPost, "/v1/wallet/deposits", bearer, hdr, `{"amount":10000,"currency":"USD"}`)
}

func (h *harness) counts() (nj, pa int) {
	return h.edges["NJ"].transactions(h.t), h.edges["PA"].transactions(h.t)
}

func wantProblem(t *testing.T, r response, status int, code, reason string) {
	t.Helper()
	if r.status != status || r.problem.Code != code || r.problem.Reason != reason {
		t.Fatalf("got %d %s, want %d %s/%s", r.status, r.body, status, code, reason)
	}
	if r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
	if (status == 429 || status == 503) && r.header.Get("Retry-After") == "" {
		t.Fatalf("%d without Retry-After", status)
	}
}
