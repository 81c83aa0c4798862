package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/gateway/limitertest"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/georegistry"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/redis"
	"github.com/buzzer-bet/buzzer/wallet"
)

// Requests go to the edge of the jurisdiction the verified location
// resolves to, and only there; the edge stores the forwarded decision.
func TestRoutesToTheVerifiedJurisdiction(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	alice, bob := h.token("alice", "NJ"), h.token("bob", "PA")

	aliceGeo := h.geotoken(alice, trenton, nil)
	r := h.deposit(alice, aliceGeo)
	if r.status != http.StatusCreated {
		t.Fatalf("NJ deposit: %d %s", r.status, r.body)
	}
	if nj, pa := h.counts(); nj != 1 || pa != 0 {
		t.Fatalf("after a Trenton deposit: NJ %d PA %d transactions, want 1 and 0", nj, pa)
	}
	d := h.edges["NJ"].last.Load().(geo.Decision)
	if d.Jurisdiction != "NJ" || d.PlayerID != "alice" || len(d.TokenSHA256) != 64 || d.Source != geo.SourceGateway {
		t.Fatalf("decision at the NJ edge: %+v", d)
	}
	// The edge stores the forwarded decision with the transaction it
	// authorized: the jurisdiction, the hash of the token the gateway
	// verified, when, and that the gateway decided it.
	sum := sha256.Sum256([]byte(aliceGeo))
	entries, _, err := h.edges["NJ"].wallet.Entries(context.Background(), "alice", "", 10)
	if err != nil || len(entries) != 1 || entries[0].Decision == nil {
		t.Fatalf("alice's NJ entries: %+v %v", entries, err)
	}
	if got := *entries[0].Decision; got.Jurisdiction != "NJ" || got.TokenHash != hex.EncodeToString(sum[:]) || got.Source != wallet.DecisionGateway || got.DecidedAt.IsZero() {
		t.Fatalf("stored decision %+v", got)
	}

	// A client cannot forge the forwarded decision: the gateway replaces it.
	tok := h.geotoken(bob, morrisville, nil)
	r = h.do(http.MethodPost, "/v1/wallet/deposits", bob, map[string]string{
		"Idempotency-Key": "bob-1", "Geolocation-Token": tok, gateway.DecisionHeader: "forged.by.client",
	}, `{"amount":2500,"currency":"USD"}`)
	if r.status != http.StatusCreated {
		t.Fatalf("PA deposit: %d %s", r.status, r.body)
	}
	if nj, pa := h.counts(); nj != 1 || pa != 1 {
		t.Fatalf("after a Morrisville deposit: NJ %d PA %d, want 1 and 1", nj, pa)
	}
	// The session's cached decision serves the next request without a token.
	if r := h.deposit(bob, ""); r.status != http.StatusCreated {
		t.Fatalf("cached PA decision: %d %s", r.status, r.body)
	}
	if nj, pa := h.counts(); nj != 1 || pa != 2 {
		t.Fatalf("after a cached PA deposit: NJ %d PA %d, want 1 and 2", nj, pa)
	}
}

// A player's account belongs to one jurisdiction: a request from another
// is refused and reaches no edge.
func TestRefusesALocationOutsideTheAccountsJurisdiction(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	alice := h.token("alice", "NJ")
	r := h.deposit(alice, h.geotoken(alice, morrisville, nil))
	wantProblem(t, r, 403, buzzer.EFORBIDDEN, "jurisdiction_mismatch")
	if !strings.Contains(r.problem.Detail, "NJ") || !strings.Contains(r.problem.Detail, "PA") {
		t.Fatalf("detail does not name both jurisdictions: %q", r.problem.Detail)
	}
	for _, tc := range []struct {
		name, reason string
		mutate       func(*geo.Claims)
	}{
		{"vpn", "risk_vpn", func(c *geo.Claims) { c.Risk.VPN = true }},
		{"other player", "geotoken_player_mismatch", func(c *geo.Claims) { c.PlayerID = "mallory" }},
	} {
		r := h.deposit(alice, h.geotoken(alice, trenton, tc.mutate))
		wantProblem(t, r, 403, buzzer.EFORBIDDEN, tc.reason)
	}
	if r := h.deposit("", ""); r.status != 401 {
		t.Fatalf("no credentials: %d %s", r.status, r.body)
	}
	if nj, pa := h.counts(); nj != 0 || pa != 0 || h.edges["NJ"].hits.Load()+h.edges["PA"].hits.Load() != 0 {
		t.Fatalf("refused requests reached an edge: NJ %d PA %d rows", nj, pa)
	}
}

type closedRegistry struct{ geo.Registry }

// Every compliance dependency that cannot answer denies: 503
// compliance_unavailable, and no edge stores anything.
func TestFailsClosed(t *testing.T) {
	t.Parallel()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close() // nothing listens here any more

	t.Run("registry down", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		reg, err := georegistry.New(georegistry.Config{BaseURL: closedURL, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var down geo.Registry = reg
		h.registry.down.Store(&down)
		alice := h.token("alice", "NJ")
		wantProblem(t, h.deposit(alice, h.geotoken(alice, trenton, nil)), 503, buzzer.EUNAVAILABLE, geo.ReasonUnavailable)
		if nj, pa := h.counts(); nj+pa != 0 {
			t.Fatalf("rows written: NJ %d PA %d", nj, pa)
		}
	})

	t.Run("provider keys unreachable", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		jwks, err := georegistry.NewJWKS(georegistry.JWKSConfig{URL: closedURL + "/jwks.json", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		var down geo.KeySource = jwks
		h.geoKeys.down.Store(&down)
		alice := h.token("alice", "NJ")
		wantProblem(t, h.deposit(alice, h.geotoken(alice, trenton, nil)), 503, buzzer.EUNAVAILABLE, geo.ReasonUnavailable)
		if nj, pa := h.counts(); nj+pa != 0 {
			t.Fatalf("rows written: NJ %d PA %d", nj, pa)
		}
	})

	t.Run("provider keys expired", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(h.provider.JWKS())
		}))
		clock := &buzzer.FixedClock{T: time.Now()}
		jwks, err := georegistry.NewJWKS(georegistry.JWKSConfig{URL: srv.URL, Clock: clock,
			RefreshInterval: time.Minute, MaxStale: 10 * time.Minute, RetryBackoff: time.Nanosecond})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jwks.ProviderKeys(context.Background()); err != nil {
			t.Fatalf("first fetch: %v", err)
		}
		var ks geo.KeySource = jwks
		h.geoKeys.down.Store(&ks)
		srv.Close()
		clock.Advance(11 * time.Minute) // the fetched set is past MaxStale
		alice := h.token("alice", "NJ")
		wantProblem(t, h.deposit(alice, h.geotoken(alice, trenton, nil)), 503, buzzer.EUNAVAILABLE, geo.ReasonUnavailable)
		if nj, pa := h.counts(); nj+pa != 0 {
			t.Fatalf("rows written: NJ %d PA %d", nj, pa)
		}
	})

	t.Run("edge down", func(t *testing.T) {
		h := newHarness(t, harnessOpts{})
		alice, bob := h.token("alice", "NJ"), h.token("bob", "PA")
		if r := h.deposit(alice, h.geotoken(alice, trenton, nil)); r.status != 201 {
			t.Fatalf("NJ deposit: %d %s", r.status, r.body)
		}
		h.edges["PA"].srv.Close()
		wantProblem(t, h.deposit(bob, h.geotoken(bob, morrisville, nil)), 503, buzzer.EUNAVAILABLE, geo.ReasonUnavailable)
		if nj, pa := h.counts(); nj != 1 || pa != 0 {
			t.Fatalf("with PA down: NJ %d PA %d, want 1 and 0 (never rerouted)", nj, pa)
		}
	})

	t.Run("edge too slow", func(t *testing.T) {
		h := newHarness(t, harnessOpts{hold: true, cfg: func(c *gateway.Config) { c.EdgeTimeout = 200 * time.Millisecond }})
		defer close(h.edges["NJ"].hold)
		alice := h.token("alice", "NJ")
		wantProblem(t, h.deposit(alice, h.geotoken(alice, trenton, nil)), 503, buzzer.EUNAVAILABLE, geo.ReasonUnavailable)
	})
}

func TestRateLimitsPerPlayerAndPerIP(t *testing.T) {
	t.Parallel()
	t.Run("player", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *gateway.Config) { c.PlayerRate = gateway.Rate{PerSecond: 1, Burst: 3} }})
		alice := h.token("alice", "NJ")
		if r := h.deposit(alice, h.geotoken(alice, trenton, nil)); r.status != 201 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for i := 0; i < 2; i++ {
			if r := h.deposit(alice, ""); r.status != 201 {
				t.Fatalf("request %d within the burst: %d %s", i+2, r.status, r.body)
			}
		}
		r := h.deposit(alice, "")
		wantProblem(t, r, 429, buzzer.ETOOMANY, "rate_limited_player")
		if r.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q, want 1 (one token at 1/s)", r.header.Get("Retry-After"))
		}
		// Another player is unaffected; alice gets a token after a second.
		bob := h.token("bob", "PA")
		if r := h.deposit(bob, h.geotoken(bob, morrisville, nil)); r.status != 201 {
			t.Fatalf("bob: %d %s", r.status, r.body)
		}
		h.clock.Advance(time.Second)
		if r := h.deposit(alice, ""); r.status != 201 {
			t.Fatalf("after refill: %d %s", r.status, r.body)
		}
		if nj, _ := h.counts(); nj != 4 {
			t.Fatalf("NJ rows %d, want 4 (the limited request stored nothing)", nj)
		}
	})
	t.Run("ip", func(t *testing.T) {
		h := newHarness(t, harnessOpts{cfg: func(c *gateway.Config) { c.IPRate = gateway.Rate{PerSecond: 0.5, Burst: 2} }})
		alice := h.token("alice", "NJ")
		for i := 0; i < 2; i++ {
			if r := h.do(http.MethodGet, "/v1/wallet", alice, nil, ""); r.status == 429 {
				t.Fatalf("request %d within the IP burst limited", i+1)
			}
		}
		r := h.deposit(alice, "")
		wantProblem(t, r, 429, buzzer.ETOOMANY, "rate_limited_ip")
		if r.header.Get("Retry-After") != "2" {
			t.Fatalf("Retry-After %q, want 2 (one token at 0.5/s)", r.header.Get("Retry-After"))
		}
	})
}

// With every concurrency slot taken, the next request is shed at once with
// 503 and Retry-After instead of waiting in a queue.
func TestShedsLoadAtTheConcurrencyLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{hold: true, cfg: func(c *gateway.Config) { c.MaxInFlight = 1 }})
	alice, bob := h.token("alice", "NJ"), h.token("bob", "PA")
	aliceGeo, bobGeo := h.geotoken(alice, trenton, nil), h.geotoken(bob, morrisville, nil)
	var wg sync.WaitGroup
	var first response
	wg.Add(1)
	go func() { defer wg.Done(); first = h.deposit(alice, aliceGeo) }()
	deadline := time.Now().Add(30 * time.Second) // hang guard only
	for h.edges["NJ"].hits.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("first request never reached the edge")
		}
		time.Sleep(time.Millisecond)
	}
	r := h.deposit(bob, bobGeo)
	wantProblem(t, r, 503, buzzer.EUNAVAILABLE, "overloaded")
	close(h.edges["NJ"].hold)
	wg.Wait()
	if first.status != 201 {
		t.Fatalf("the admitted request: %d %s", first.status, first.body)
	}
	if _, pa := h.counts(); pa != 0 {
		t.Fatalf("the shed request stored %d rows", pa)
	}
	if r := h.deposit(bob, bobGeo); r.status == 503 {
		t.Fatalf("slot not released: %d %s", r.status, r.body)
	}
}

// The gateway records total and downstream time per route, so its own
// overhead (total - integration) is visible.
func TestRecordsTotalAndIntegrationLatency(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	alice := h.token("alice", "NJ")
	if r := h.deposit(alice, h.geotoken(alice, trenton, nil)); r.status != 201 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	h.deposit("", "") // refused before any edge: total only
	mfs, err := h.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string, labels map[string]string) *dto.Histogram {
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
		next:
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
						continue next
					}
				}
				return m.GetHistogram()
			}
		}
		return nil
	}
	total := find("buzzer_gateway_request_duration_seconds", map[string]string{"route": "/v1/wallet/", "jurisdiction": "NJ", "code": "201"})
	integ := find("buzzer_gateway_integration_duration_seconds", map[string]string{"route": "/v1/wallet/", "jurisdiction": "NJ"})
	refused := find("buzzer_gateway_request_duration_seconds", map[string]string{"route": "/v1/wallet/", "jurisdiction": "none", "code": "401"})
	if total == nil || integ == nil || refused == nil {
		t.Fatalf("histograms missing: total=%v integration=%v refused=%v", total, integ, refused)
	}
	if total.GetSampleCount() != 1 || integ.GetSampleCount() != 1 || refused.GetSampleCount() != 1 {
		t.Fatalf("sample counts total %d integration %d refused %d, want 1 each", total.GetSampleCount(), integ.GetSampleCount(), refused.GetSampleCount())
	}
	if !(integ.GetSampleSum() > 0) || integ.GetSampleSum() > total.GetSampleSum() {
		t.Fatalf("integration %v s must be positive and within total %v s", integ.GetSampleSum(), total.GetSampleSum())
	}
}

// The topology decides what is served: a jurisdiction the geolocation
// service is not licensed for cannot be given an edge.
func TestNewRefusesAnEdgeForAnUnlicensedJurisdiction(t *testing.T) {
	topo, err := gateway.ParseTopology([]byte("edges:\n  NJ: http://127.0.0.1:1\n  NY: http://127.0.0.1:2\n"))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ"}}, geo.Deps{
		Boundaries: usStates(t), Keys: geo.StaticKeys{}, Registry: geo.NewDevRegistry(), IPs: geo.NewStaticIPLocator(nil),
		Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader,
	})
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := gateway.OpenSigner(gateway.KeyFile(t.TempDir()), rand.Reader)
	_, err = gateway.New(gateway.DefaultConfig(), gateway.Deps{Topology: topo, Players: nopVerifier{}, Geo: svc, Signer: signer, Registerer: nopRegisterer{}})
	if buzzer.ErrorCode(err) != buzzer.EINVALID || !strings.Contains(buzzer.ErrorMessage(err), "NY") {
		t.Fatalf("edge for unlicensed NY: %v", err)
	}
}

var errNop = errors.New("nop")

// Unregulated routes go to the parent without a location check, and never
// carry a forwarded decision.
func TestUnregulatedRoutesGoToTheParent(t *testing.T) {
	t.Parallel()
	var got http.Header
	var mu sync.Mutex
	h := newHarness(t, harnessOpts{parent: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Header.Clone()
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"events":[]}`))
	})})
	r := h.do(http.MethodGet, "/v1/events", "", map[string]string{gateway.DecisionHeader: "forged", "Geolocation-Token": "x"}, "")
	if r.status != 200 || string(r.body) != `{"events":[]}` {
		t.Fatalf("catalog through the gateway: %d %s", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if got.Get(gateway.DecisionHeader) != "" || got.Get("Geolocation-Token") != "" {
		t.Fatalf("parent received compliance headers: %v", got)
	}
	// Regulated routes still need everything, parent or not.
	if r := h.deposit("", ""); r.status != 401 {
		t.Fatalf("regulated route without credentials: %d %s", r.status, r.body)
	}
}

// With Redis configured the player buckets are shared: tokens another
// gateway spent are gone here too. With Redis down the gateway's own
// buckets still limit.
func TestSharedRateLimitThroughRedis(t *testing.T) {
	t.Parallel()
	client, prefix := enginetest.Redis(t)
	rate := gateway.Rate{PerSecond: 0.01, Burst: 3}
	var other *redis.RateLimiter
	h := newHarness(t, harnessOpts{
		cfg: func(c *gateway.Config) { c.PlayerRate = rate },
		sharedPlayers: func(c *limitertest.Clock) gateway.Limiter {
			l, err := redis.NewRateLimiter(client, prefix, rate, c)
			if err != nil {
				t.Fatal(err)
			}
			other, _ = redis.NewRateLimiter(client, prefix, rate, c) // a second gateway
			return l
		},
	})
	for i := 0; i < 2; i++ {
		if ok, _, err := other.Allow(context.Background(), "player:alice"); err != nil || !ok {
			t.Fatalf("other gateway's take %d: %v %v", i, ok, err)
		}
	}
	alice := h.token("alice", "NJ")
	if r := h.deposit(alice, h.geotoken(alice, trenton, nil)); r.status != 201 {
		t.Fatalf("the one shared token left: %d %s", r.status, r.body)
	}
	wantProblem(t, h.deposit(alice, ""), 429, buzzer.ETOOMANY, "rate_limited_player")

	down := newHarness(t, harnessOpts{
		cfg: func(c *gateway.Config) { c.PlayerRate = rate },
		sharedPlayers: func(c *limitertest.Clock) gateway.Limiter {
			dead := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 20 * time.Millisecond, MaxRetries: -1})
			t.Cleanup(func() { _ = dead.Close() })
			l, _ := redis.NewRateLimiter(dead, "x:", rate, c)
			return l
		},
	})
	bob := down.token("bob", "PA")
	if r := down.deposit(bob, down.geotoken(bob, morrisville, nil)); r.status != 201 {
		t.Fatalf("with redis down, first request: %d %s", r.status, r.body)
	}
	for i := 0; i < 2; i++ {
		if r := down.deposit(bob, ""); r.status != 201 {
			t.Fatalf("with redis down, request %d within the local burst: %d %s", i+2, r.status, r.body)
		}
	}
	wantProblem(t, down.deposit(bob, ""), 429, buzzer.ETOOMANY, "rate_limited_player")
}
