package gateway_test

import (
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
)

// handlerTransport answers the gateway's downstream calls with an
// in-process edge handler and measures each call, as the gateway's own
// integration timer does, so total - integration is the gateway's work.
type handlerTransport struct {
	h       http.Handler
	mu      sync.Mutex
	elapsed map[*http.Request]time.Duration
}

func (t *handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	d := time.Since(start)
	t.mu.Lock()
	t.elapsed[r] = d
	t.mu.Unlock()
	return resp, nil
}

// BenchmarkGatewayOverhead measures the gateway's own time per regulated
// request with cached JWT and geolocation decisions: IP and player token
// buckets, concurrency slot, JWT verification (cache hit), geolocation
// decision (cache hit), residency check, signing the forwarded decision,
// proxying, and metrics. The edge is an in-process handler whose time is
// subtracted. It reports overhead p50/p99 in microseconds.
func BenchmarkGatewayOverhead(b *testing.B) {
	dir := b.TempDir()
	keys, err := auth.LoadOrCreateDevKeys(dir)
	if err != nil {
		b.Fatal(err)
	}
	prov, _ := geo.OpenDevProvider(dir, rand.Reader)
	signer, _ := gateway.OpenSigner(gateway.KeyFile(dir), rand.Reader)
	svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ", "PA"}, Issuer: geo.DevIssuer}, geo.Deps{
		Boundaries: usStates(b), Keys: prov, Registry: geo.NewDevRegistry(),
		IPs:        geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{netip.MustParsePrefix("127.0.0.0/8"): {Point: trenton}}),
		Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader,
	})
	if err != nil {
		b.Fatal(err)
	}
	players, _ := auth.NewVerifier(auth.DevPlayerConfig(keys), buzzer.SystemClock{}, nil)
	defer players.Close()
	edge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"id":"t-1","status":"ok"}`))
	})
	tr := &handlerTransport{h: edge, elapsed: map[*http.Request]time.Duration{}}
	u, _ := url.Parse("http://nj-edge.invalid")
	pu, _ := url.Parse("http://pa-edge.invalid")
	cfg := gateway.DefaultConfig()
	cfg.PlayerRate = gateway.Rate{PerSecond: 1e6, Burst: 1_000_000}
	cfg.IPRate = cfg.PlayerRate
	gw, err := gateway.New(cfg, gateway.Deps{Topology: gateway.Topology{Edges: map[geo.Jurisdiction]*url.URL{"NJ": u, "PA": pu}},
		Players: players, Geo: svc, Signer: signer, Registerer: prometheus.NewRegistry(), Log: quiet(), Transport: tr})
	if err != nil {
		b.Fatal(err)
	}
	hcfg := httpapi.DefaultConfig()
	hcfg.HTTPAddr, hcfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, _ := httpapi.New(hcfg, quiet(), players, nil, prometheus.NewRegistry())
	s.MountGeo(svc)
	gw.Mount(s)
	h := s.PlayerHandler()

	const sessions = 64
	bearers := make([]string, sessions)
	for i := range bearers {
		bearers[i], _ = keys.PlayerToken("p"+strings.Repeat("x", i%3)+string(rune('a'+i%26))+string(rune('a'+i/26)), "NJ", time.Hour, time.Now())
		// Verify once through the gateway with a fresh geolocation token, so
		// the measured requests hit both caches.
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodPost, "/v1/geo/challenges", nil)
		req.Header.Set("Authorization", "Bearer "+bearers[i])
		h.ServeHTTP(rec, req)
		var c struct{ Challenge, PlayerID, SessionID string }
		_ = json.Unmarshal(rec.Body.Bytes(), &struct {
			C *string `json:"challenge"`
			P *string `json:"player_id"`
			S *string `json:"session_id"`
		}{&c.Challenge, &c.PlayerID, &c.SessionID})
		now := time.Now().Unix()
		tok, _ := prov.Sign(geo.Claims{PlayerID: c.PlayerID, SessionID: c.SessionID, Challenge: c.Challenge, IssuedAt: now, Expiry: now + 600,
			GPS: geo.GPSFix{Lat: trenton.Lat, Lon: trenton.Lon, AccuracyM: 10}, IP: "127.0.0.1"})
		rec = httptest.NewRecorder()
		req = httptest.NewRequest(http.MethodPost, "/v1/wallet/deposits", strings.NewReader(`{"amount":100,"currency":"USD"}`))
		req.Header.Set("Authorization", "Bearer "+bearers[i])
		req.Header.Set(httpapi.GeoTokenHeader, tok)
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			b.Fatalf("warm-up request: %d %s", rec.Code, rec.Body)
		}
	}

	one := func(i int) time.Duration {
		req := httptest.NewRequest(http.MethodPost, "/v1/wallet/deposits", strings.NewReader(`{"amount":100,"currency":"USD"}`))
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+bearers[i%sessions])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "k")
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		total := time.Since(start)
		if rec.Code != http.StatusCreated {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
		// The outbound request is a clone; find its measured time.
		var inner time.Duration
		tr.mu.Lock()
		for r, d := range tr.elapsed {
			inner = d
			delete(tr.elapsed, r)
		}
		tr.mu.Unlock()
		return total - inner
	}
	b.ReportAllocs()
	b.ResetTimer()
	overhead := make([]time.Duration, 0, b.N)
	for i := 0; i < b.N; i++ {
		overhead = append(overhead, one(i))
	}
	b.StopTimer()
	slices.Sort(overhead)
	pct := func(p float64) float64 {
		return float64(overhead[min(len(overhead)-1, int(p*float64(len(overhead))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "overhead-p50-µs")
	b.ReportMetric(pct(0.99), "overhead-p99-µs")
}
