package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
)

// tokenTable is a Verifier over a fixed table of tokens: the handler tests
// exercise the middleware, not JWT verification (auth's own tests do that
// against real signed tokens).
type tokenTable map[string]auth.Principal

func (tt tokenTable) Verify(_ context.Context, tok string) (auth.Principal, error) {
	if tok == "down" {
		return auth.Principal{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "keys unreachable")
	}
	p, ok := tt[tok]
	if !ok {
		return auth.Principal{}, buzzer.Errorf(buzzer.EUNAUTHORIZED, "bad token")
	}
	return p, nil
}

func newTestServer(t *testing.T) *Server {
	t.Helper()
	cfg := DefaultConfig()
	cfg.MaxBodyBytes = 1024
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	s, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)),
		tokenTable{"alice": {Subject: "alice", Jurisdiction: "NJ"}},
		tokenTable{"op": {Subject: "op", Roles: []string{"operator"}}}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	type body struct {
		Amount int64  `json:"amount"`
		Note   string `json:"note"`
	}
	s.Player("POST /v1/echo", Player, func(w http.ResponseWriter, r *http.Request) error {
		var b body
		if err := DecodeJSON(r, &b); err != nil {
			return err
		}
		p, _ := PlayerFrom(r.Context())
		return WriteJSON(w, 200, map[string]any{"player": p.Subject, "amount": b.Amount})
	})
	s.Player("GET /v1/boom", Public, func(w http.ResponseWriter, r *http.Request) error {
		return buzzer.Wrap(io.ErrUnexpectedEOF, buzzer.EINTERNAL, "secret internal detail")
	})
	s.Player("GET /v1/panic", Public, func(w http.ResponseWriter, r *http.Request) error { panic("kaboom") })
	s.Admin("GET /admin/v1/ping", func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		return WriteJSON(w, 200, map[string]string{"operator": p.Subject})
	})
	return s
}

func do(t *testing.T, h http.Handler, method, path, token, body string) (*httptest.ResponseRecorder, Problem) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var p Problem
	if rec.Header().Get("Content-Type") == "application/problem+json" {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatalf("problem body %q: %v", rec.Body.String(), err)
		}
	}
	return rec, p
}

func TestRequests(t *testing.T) {
	s := newTestServer(t)
	ph, ah := s.PlayerHandler(), s.AdminHandler()
	tests := []struct {
		name       string
		h          http.Handler
		method     string
		path       string
		token      string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"ok", ph, "POST", "/v1/echo", "alice", `{"amount":5}`, 200, ""},
		{"no token", ph, "POST", "/v1/echo", "", `{"amount":5}`, 401, buzzer.EUNAUTHORIZED},
		{"bad token", ph, "POST", "/v1/echo", "mallory", `{"amount":5}`, 401, buzzer.EUNAUTHORIZED},
		{"keys down fails closed", ph, "POST", "/v1/echo", "down", `{"amount":5}`, 503, buzzer.EUNAVAILABLE},
		{"unknown field", ph, "POST", "/v1/echo", "alice", `{"amount":5,"player_id":"bob"}`, 400, buzzer.EINVALID},
		{"trailing data", ph, "POST", "/v1/echo", "alice", `{"amount":5}{"amount":6}`, 400, buzzer.EINVALID},
		{"trailing garbage", ph, "POST", "/v1/echo", "alice", `{"amount":5} x`, 400, buzzer.EINVALID},
		{"wrong type", ph, "POST", "/v1/echo", "alice", `{"amount":"5"}`, 400, buzzer.EINVALID},
		{"empty body", ph, "POST", "/v1/echo", "alice", ``, 400, buzzer.EINVALID},
		{"not json", ph, "POST", "/v1/echo", "alice", `amount=5`, 400, buzzer.EINVALID},
		{"too large", ph, "POST", "/v1/echo", "alice", `{"note":"` + strings.Repeat("x", 2000) + `"}`, 413, buzzer.ETOOLARGE},
		{"internal hides detail", ph, "GET", "/v1/boom", "", "", 500, buzzer.EINTERNAL},
		{"panic recovered", ph, "GET", "/v1/panic", "", "", 500, buzzer.EINTERNAL},
		{"unknown route", ph, "GET", "/nope", "", "", 404, buzzer.ENOTFOUND},
		{"metrics not on player listener", ph, "GET", "/metrics", "", "", 404, buzzer.ENOTFOUND},
		{"admin route not on player listener", ph, "GET", "/admin/v1/ping", "op", "", 404, buzzer.ENOTFOUND},
		{"admin with player token", ah, "GET", "/admin/v1/ping", "alice", "", 401, buzzer.EUNAUTHORIZED},
		{"admin ok", ah, "GET", "/admin/v1/ping", "op", "", 200, ""},
		{"wrong method", ph, "GET", "/v1/echo", "alice", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, p := do(t, tt.h, tt.method, tt.path, tt.token, tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode != "" && (p.Code != tt.wantCode || p.Status != tt.wantStatus) {
				t.Fatalf("problem %+v, want code %s", p, tt.wantCode)
			}
			if strings.Contains(rec.Body.String(), "secret internal detail") || strings.Contains(rec.Body.String(), "kaboom") {
				t.Fatalf("internal detail leaked: %s", rec.Body.String())
			}
		})
	}
}

func TestRequestIDEchoedOrGenerated(t *testing.T) {
	s := newTestServer(t)
	req := httptest.NewRequest("GET", "/v1/boom", nil)
	req.Header.Set("X-Request-Id", "abc-123")
	rec := httptest.NewRecorder()
	s.PlayerHandler().ServeHTTP(rec, req)
	if rec.Header().Get("X-Request-Id") != "abc-123" {
		t.Fatalf("caller's request id not echoed: %q", rec.Header().Get("X-Request-Id"))
	}
	rec, p := do(t, s.PlayerHandler(), "GET", "/v1/boom", "", "")
	if len(rec.Header().Get("X-Request-Id")) != 24 {
		t.Fatalf("generated id %q", rec.Header().Get("X-Request-Id"))
	}
	// The problem body must not vary per request: a stored refusal replays
	// byte for byte.
	rec2, _ := do(t, s.PlayerHandler(), "GET", "/v1/boom", "", "")
	if p.Code == "" || rec.Body.String() != rec2.Body.String() {
		t.Fatalf("problem bodies differ between two identical requests:\n%s\n%s", rec.Body.String(), rec2.Body.String())
	}
	req = httptest.NewRequest("GET", "/v1/boom", nil)
	req.Header.Set("X-Request-Id", "bad id with spaces\n")
	rec = httptest.NewRecorder()
	s.PlayerHandler().ServeHTTP(rec, req)
	if strings.Contains(rec.Header().Get("X-Request-Id"), " ") {
		t.Fatal("unsafe request id echoed")
	}
}

func TestReadiness(t *testing.T) {
	s := newTestServer(t)
	if rec, _ := do(t, s.PlayerHandler(), "GET", "/readyz", "", ""); rec.Code != 503 {
		t.Fatalf("ready before warm-up: %d", rec.Code)
	}
	failing := true
	s.AddReadyCheck("store", func(context.Context) error {
		if failing {
			return buzzer.Errorf(buzzer.EUNAVAILABLE, "down")
		}
		return nil
	})
	s.SetReady(true)
	if rec, _ := do(t, s.PlayerHandler(), "GET", "/readyz", "", ""); rec.Code != 503 {
		t.Fatalf("ready with a failing dependency: %d", rec.Code)
	}
	failing = false
	if rec, _ := do(t, s.AdminHandler(), "GET", "/readyz", "", ""); rec.Code != 200 {
		t.Fatalf("not ready after warm-up: %d", rec.Code)
	}
}

// Shutdown waits for an in-flight request to finish before returning.
func TestShutdownDrainsInFlight(t *testing.T) {
	s := newTestServer(t)
	started, release := make(chan struct{}), make(chan struct{})
	s.Player("GET /v1/slow", Public, func(w http.ResponseWriter, r *http.Request) error {
		close(started)
		<-release
		return WriteJSON(w, 200, map[string]string{"done": "yes"})
	})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	s.Serve()
	player, _ := s.Addrs()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + player + "/v1/slow")
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(bytes.TrimSpace(b))
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("shutdown returned (%v) before the in-flight request finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if body := <-got; body != `{"done":"yes"}` {
		t.Fatalf("in-flight request got %q", body)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + player + "/healthz"); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

func TestStatusOfUnknownCodeIs500(t *testing.T) {
	if StatusOf(buzzer.Errorf("made_up", "x")) != 500 || StatusOf(io.EOF) != 500 {
		t.Fatal("unknown codes must map to 500")
	}
}
