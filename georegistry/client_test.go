package georegistry

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

// fakeRegistry simulates an operator registry: a table of players and the
// documented endpoint, checking the bearer token like the real one would.
type fakeRegistry struct {
	mu       sync.Mutex
	excluded map[string]bool
	tamper   func(m map[string]any) // optional: corrupt the answer
	status   int                    // optional: forced status code
	stall    chan struct{}          // optional: block until closed
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.stall != nil {
		select {
		case <-f.stall:
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/players/")
	player, ok2 := strings.CutSuffix(rest, "/status")
	if !ok || !ok2 || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	m := map[string]any{"player_id": player, "jurisdiction": r.URL.Query().Get("jurisdiction"), "self_excluded": f.excluded[player], "consented": true}
	if f.tamper != nil {
		f.tamper(m)
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(m)
}

func newClient(t *testing.T, h http.Handler) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/api", BearerToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientPlayerStatus(t *testing.T) {
	reg := &fakeRegistry{excluded: map[string]bool{"bad/actor": true}}
	c := newClient(t, reg)
	ctx := context.Background()
	st, err := c.PlayerStatus(ctx, "p-1", "NJ")
	if err != nil || st != (geo.PlayerStatus{Consented: true}) {
		t.Fatalf("p-1: %+v, %v", st, err)
	}
	// Path escaping keeps an odd player id one path segment.
	st, err = c.PlayerStatus(ctx, "bad/actor", "PA")
	if err != nil || !st.SelfExcluded {
		t.Fatalf("excluded player: %+v, %v", st, err)
	}
}

func TestClientErrorsAreNeverPermissive(t *testing.T) {
	ctx := context.Background()
	for name, reg := range map[string]*fakeRegistry{
		"server error":       {status: http.StatusInternalServerError},
		"not found":          {status: http.StatusNotFound},
		"other player":       {tamper: func(m map[string]any) { m["player_id"] = "someone-else" }},
		"other jurisdiction": {tamper: func(m map[string]any) { m["jurisdiction"] = "NV" }},
		"missing field":      {tamper: func(m map[string]any) { delete(m, "self_excluded") }},
		"unknown field":      {tamper: func(m map[string]any) { m["override"] = true }},
		"wrong type":         {tamper: func(m map[string]any) { m["self_excluded"] = "no" }},
	} {
		t.Run(name, func(t *testing.T) {
			c := newClient(t, reg)
			if st, err := c.PlayerStatus(ctx, "p-1", "NJ"); err == nil {
				t.Fatalf("accepted %+v", st)
			}
		})
	}
	t.Run("wrong token", func(t *testing.T) {
		srv := httptest.NewServer(&fakeRegistry{})
		defer srv.Close()
		c, _ := New(Config{BaseURL: srv.URL + "/api", BearerToken: "guess"})
		if _, err := c.PlayerStatus(ctx, "p-1", "NJ"); err == nil {
			t.Fatal("unauthorized answer accepted")
		}
	})
	t.Run("registry down", func(t *testing.T) {
		srv := httptest.NewServer(&fakeRegistry{})
		c, _ := New(Config{BaseURL: srv.URL + "/api", BearerToken: "s3cret"})
		srv.Close()
		if _, err := c.PlayerStatus(ctx, "p-1", "NJ"); err == nil {
			t.Fatal("closed server answered")
		}
	})
	t.Run("registry stalls past the deadline", func(t *testing.T) {
		reg := &fakeRegistry{stall: make(chan struct{})}
		c := newClient(t, reg)
		defer close(reg.stall)
		dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if _, err := c.PlayerStatus(dctx, "p-1", "NJ"); err == nil {
			t.Fatal("stalled registry answered")
		}
	})
}

func TestNewRejectsUnsafeURLs(t *testing.T) {
	for _, u := range []string{"", "registry.example", "http://registry.example/api", "ftp://x/"} {
		if _, err := New(Config{BaseURL: u}); err == nil {
			t.Errorf("accepted %q", u)
		}
	}
	for _, u := range []string{"https://registry.example/api", "http://127.0.0.1:8080", "http://localhost:1/"} {
		if _, err := New(Config{BaseURL: u}); err != nil {
			t.Errorf("%q: %v", u, err)
		}
	}
}

// TestServiceFailsClosedWhenRegistryDown wires the HTTP client into a
// geo.Service: with the registry answering, a Trenton fix is allowed;
// with it down and no cached decision, the answer is compliance_unavailable.
func TestServiceFailsClosedWhenRegistryDown(t *testing.T) {
	reg := &fakeRegistry{}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	client, err := New(Config{BaseURL: srv.URL + "/api", BearerToken: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	svc, prov, clock := newService(t, client)
	check := func(session string) error {
		ch, err := svc.IssueChallenge(context.Background(), "p-1", session)
		if err != nil {
			t.Fatal(err)
		}
		now := clock.Now().Unix()
		tok, err := prov.Sign(geo.Claims{
			PlayerID: "p-1", SessionID: session, Challenge: ch.Value, IssuedAt: now, Expiry: now + 120,
			GPS: geo.GPSFix{Lat: 40.2222, Lon: -74.7656, AccuracyM: 10}, IP: "203.0.113.7",
		})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.Check(context.Background(), geo.CheckInput{PlayerID: "p-1", SessionID: session, Token: tok})
		return err
	}
	if err := check("s-1"); err != nil {
		t.Fatal(err)
	}
	reg.mu.Lock()
	reg.status = http.StatusServiceUnavailable
	reg.mu.Unlock()
	err = check("s-2")
	if buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE || buzzer.ErrorReason(err) != geo.ReasonUnavailable {
		t.Fatalf("registry down: %v", err)
	}
}

type counting struct {
	n atomic.Int64
	h http.Handler
}

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.n.Add(1); c.h.ServeHTTP(w, r) }
