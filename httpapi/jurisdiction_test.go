package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// twoJurisdictions is a server holding NJ and PA through jurisdiction views,
// each part answering with its own name, as serve mounts wallets and tables.
func twoJurisdictions(t *testing.T) (*Server, map[string]*prometheus.Registry) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	players := tokenTable{
		"nj": {Subject: "p-nj", Jurisdiction: "NJ"}, "pa": {Subject: "p-pa", Jurisdiction: "PA"},
		"ny": {Subject: "p-ny", Jurisdiction: "NY"}, "none": {Subject: "p-none"},
	}
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), players,
		tokenTable{"op": {Subject: "op", Roles: []string{"operator"}}}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	regs := map[string]*prometheus.Registry{}
	for _, j := range []string{"NJ", "PA"} {
		regs[j] = prometheus.NewRegistry()
		v := s.Jurisdiction(j, regs[j])
		answer := func(w http.ResponseWriter, r *http.Request) error {
			p, _ := PlayerFrom(r.Context())
			return WriteJSON(w, http.StatusOK, map[string]string{"served_by": j, "player": p.Subject})
		}
		v.Player("GET /v1/wallet", Player, answer)
		v.Player("GET /v1/rng/checkpoint", Public, answer)
		v.Admin("GET /admin/v1/ledger/check", answer)
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_part_total", Help: "a part's counter"})
		regs[j].MustRegister(c)
		c.Add(map[string]float64{"NJ": 1, "PA": 2}[j])
		v.AddReadyCheck("store", func(context.Context) error {
			if j == "PA" {
				return errors.New("PA store down")
			}
			return nil
		})
	}
	// PA alone has draws: with one jurisdiction a public route needs no name.
	s.Jurisdiction("PA", prometheus.NewRegistry()).Player("GET /v1/rng/key", Public, func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, map[string]string{"served_by": "PA"})
	})
	return s, regs
}

func TestJurisdictionDispatch(t *testing.T) {
	s, _ := twoJurisdictions(t)
	ph, ah := s.PlayerHandler(), s.AdminHandler()
	for _, tc := range []struct {
		name, method, path, token string
		h                         http.Handler
		status                    int
		servedBy, reason          string
	}{
		{"NJ account reaches NJ", "GET", "/v1/wallet", "nj", ph, 200, "NJ", ""},
		{"PA account reaches PA", "GET", "/v1/wallet", "pa", ph, 200, "PA", ""},
		{"the query never overrides the account", "GET", "/v1/wallet?jurisdiction=NJ", "pa", ph, 200, "PA", ""},
		{"account of an unserved jurisdiction", "GET", "/v1/wallet", "ny", ph, 403, "", "jurisdiction_not_served"},
		{"account without jurisdiction", "GET", "/v1/wallet", "none", ph, 403, "", "account_jurisdiction_missing"},
		{"no token", "GET", "/v1/wallet", "", ph, 401, "", "missing_token"},
		{"public route names its jurisdiction", "GET", "/v1/rng/checkpoint?jurisdiction=PA", "", ph, 200, "PA", ""},
		{"public route without a name", "GET", "/v1/rng/checkpoint", "", ph, 400, "", "jurisdiction_required"},
		{"public route, unserved name", "GET", "/v1/rng/checkpoint?jurisdiction=NY", "", ph, 400, "", "jurisdiction_not_served"},
		{"public route held by one jurisdiction", "GET", "/v1/rng/key", "", ph, 200, "PA", ""},
		{"admin route names its jurisdiction", "GET", "/admin/v1/ledger/check?jurisdiction=NJ", "op", ah, 200, "NJ", ""},
		{"admin route without a name", "GET", "/admin/v1/ledger/check", "op", ah, 400, "", "jurisdiction_required"},
		{"admin route needs the admin credential", "GET", "/admin/v1/ledger/check?jurisdiction=NJ", "nj", ah, 401, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, p := do(t, tc.h, tc.method, tc.path, tc.token, "")
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body.String())
			}
			if tc.servedBy != "" && !strings.Contains(rec.Body.String(), `"served_by":"`+tc.servedBy+`"`) {
				t.Fatalf("served by the wrong jurisdiction: %s", rec.Body.String())
			}
			if tc.reason != "" && p.Reason != tc.reason {
				t.Fatalf("reason %q, want %q (%s)", p.Reason, tc.reason, rec.Body.String())
			}
		})
	}
	// Every shared route is listed once, for the BOLA sweep.
	seen := map[string]int{}
	for _, r := range s.PlayerRoutes() {
		seen[r.Pattern]++
	}
	if seen["GET /v1/wallet"] != 1 || seen["GET /v1/rng/checkpoint"] != 1 {
		t.Fatalf("routes listed %v", seen)
	}
}

func TestJurisdictionMetricsAndReadiness(t *testing.T) {
	s, _ := twoJurisdictions(t)
	rec, _ := do(t, s.AdminHandler(), "GET", "/metrics", "", "")
	body := rec.Body.String()
	for _, want := range []string{`test_part_total{jurisdiction="NJ"} 1`, `test_part_total{jurisdiction="PA"} 2`, "buzzer_http_requests_in_flight"} {
		if !strings.Contains(body, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, body)
		}
	}
	s.SetReady(true)
	rec, _ = do(t, s.PlayerHandler(), "GET", "/readyz", "", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "PA store") {
		t.Fatalf("readyz with PA's store down: %d %s", rec.Code, rec.Body.String())
	}
}

func TestJurisdictionRouteTwiceIsAProgrammingError(t *testing.T) {
	s, _ := twoJurisdictions(t)
	defer func() {
		if recover() == nil {
			t.Fatal("a second NJ handler for one route was accepted")
		}
	}()
	s.Jurisdiction("NJ", prometheus.NewRegistry()).Player("GET /v1/wallet", Player, func(http.ResponseWriter, *http.Request) error { return nil })
}
