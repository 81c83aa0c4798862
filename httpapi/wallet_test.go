package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// noQuotes refuses every price: these tests place no bet that gets that far.
type noQuotes struct{}

func (noQuotes) Quote(context.Context, string, string, string) (wallet.Quote, error) {
	return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "no prices in this test")
}

var walletPlayers = rngTokens{
	"alice": {Subject: "alice", Jurisdiction: "NJ", TokenID: "a1"},
	"bob":   {Subject: "bob", Jurisdiction: "PA", TokenID: "b1"},
}

// walletServer mounts the real wallet routes, on a real wallet over SQLite,
// behind a real location gate of an NJ node.
func walletServer(t *testing.T) (http.Handler, *wallet.Service, *geoEnv) {
	t.Helper()
	env := newGeoEnv(t, "NJ")
	wcfg := wallet.DefaultConfig()
	wcfg.Jurisdiction = "NJ"
	svc, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(enginetest.SQLite(t)), Prices: noQuotes{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpapi.DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := httpapi.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), walletPlayers, rngTokens{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	srv.MountWallet(svc, env.gate)
	return srv.PlayerHandler(), svc, env
}

func send(t *testing.T, h http.Handler, method, path, bearer, geoToken, key, body string) (*httptest.ResponseRecorder, httpapi.Problem) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	if geoToken != "" {
		req.Header.Set(httpapi.GeoTokenHeader, geoToken)
	}
	if key != "" {
		req.Header.Set(httpapi.IdempotencyHeader, key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var p httpapi.Problem
	if rec.Code >= 400 {
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
	}
	return rec, p
}

// Deposits, withdrawals and bets move money only with an allowed location
// decision, which is stored with the transaction; reads need only the
// player token.
func TestWalletMovesMoneyOnlyWithALocation(t *testing.T) {
	h, svc, env := walletServer(t)
	ctx := context.Background()
	alice := walletPlayers["alice"]
	entries := func(player string) []wallet.Entry {
		t.Helper()
		es, _, err := svc.Entries(ctx, player, "", 50)
		if err != nil {
			t.Fatal(err)
		}
		return es
	}
	const dep = `{"amount":10000,"currency":"USD"}`
	bet := `{"stake":100,"currency":"USD","price_change":"any","legs":[{"event_id":"e","market_id":"m","selection_id":"s","price":"2.00"}]}`

	for _, tc := range []struct {
		name, method, path, bearer, body string
		geo                              func() string
		status                           int
		reason                           string
	}{
		{"deposit without a token", "POST", "/v1/wallet/deposits", "alice", dep, func() string { return "" }, 403, "geolocation_required"},
		{"withdrawal without a token", "POST", "/v1/wallet/withdrawals", "alice", dep, func() string { return "" }, 403, "geolocation_required"},
		{"bet without a token", "POST", "/v1/bets", "alice", bet, func() string { return "" }, 403, "geolocation_required"},
		{"NJ account located in PA", "POST", "/v1/wallet/deposits", "alice", dep,
			func() string { return env.token(t, "alice", alice, morrisville) }, 403, "jurisdiction_mismatch"},
		{"PA account in PA, on the NJ node", "POST", "/v1/wallet/deposits", "bob", dep,
			func() string { return env.token(t, "bob", walletPlayers["bob"], morrisville) }, 403, "edge_jurisdiction_mismatch"},
		{"tampered token", "POST", "/v1/bets", "alice", bet, func() string { return env.token(t, "alice", alice, trenton) + "x" }, 403, "geotoken_signature"},
	} {
		rec, p := send(t, h, tc.method, tc.path, tc.bearer, tc.geo(), "k-"+tc.name, tc.body)
		if rec.Code != tc.status || p.Reason != tc.reason {
			t.Errorf("%s: %d %s, want %d %s", tc.name, rec.Code, rec.Body, tc.status, tc.reason)
		}
	}
	if n := len(entries("alice")) + len(entries("bob")); n != 0 {
		t.Fatalf("refused requests wrote %d ledger entries", n)
	}
	if bets, _, err := svc.Bets(ctx, "alice", "", "", 10); err != nil || len(bets) != 0 {
		t.Fatalf("refused bets stored: %d %v", len(bets), err)
	}

	// Located in Trenton: the deposit is made and carries the decision.
	tok := env.token(t, "alice", alice, trenton)
	rec, _ := send(t, h, "POST", "/v1/wallet/deposits", "alice", tok, "dep-1", dep)
	if rec.Code != http.StatusCreated {
		t.Fatalf("deposit located in NJ: %d %s", rec.Code, rec.Body)
	}
	// The session's cached decision serves the next movement.
	if rec, _ := send(t, h, "POST", "/v1/wallet/withdrawals", "alice", "", "wd-1", `{"amount":2500,"currency":"USD"}`); rec.Code != http.StatusCreated {
		t.Fatalf("withdrawal on the cached decision: %d %s", rec.Code, rec.Body)
	}
	sum := sha256.Sum256([]byte(tok))
	es := entries("alice")
	if len(es) != 2 {
		t.Fatalf("alice has %d entries, want 2: %+v", len(es), es)
	}
	for _, e := range es {
		d := e.Decision
		if d == nil || d.Jurisdiction != "NJ" || d.TokenHash != hex.EncodeToString(sum[:]) || d.Source != wallet.DecisionEdge || d.DecidedAt.IsZero() {
			t.Fatalf("entry %s carries decision %+v, want NJ, the token's hash, source edge", e.Kind, d)
		}
	}
	// Reads are JWT-only: bob, with no location decision, reads his wallet.
	for _, path := range []string{"/v1/wallet", "/v1/wallet/transactions", "/v1/bets"} {
		if rec, _ := send(t, h, "GET", path, "bob", "", "", ""); rec.Code != http.StatusOK {
			t.Errorf("GET %s without a location: %d %s", path, rec.Code, rec.Body)
		}
	}
}

// A gate that cannot decide fails closed, and so does a wallet mounted
// with no gate at all.
func TestWalletFailsClosedWithoutAGate(t *testing.T) {
	wcfg := wallet.DefaultConfig()
	wcfg.Jurisdiction = "NJ"
	svc, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(enginetest.SQLite(t)), Prices: noQuotes{}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := httpapi.DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	for name, gate := range map[string]httpapi.GeoGate{"nil gate": nil, "gate without a service": httpapi.LocalGeo{Jurisdiction: "NJ"}} {
		srv, err := httpapi.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), walletPlayers, rngTokens{}, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		srv.MountWallet(svc, gate)
		rec, p := send(t, srv.PlayerHandler(), "POST", "/v1/wallet/deposits", "alice", "x.y.z", "k-"+name, `{"amount":1,"currency":"USD"}`)
		if rec.Code != http.StatusServiceUnavailable || p.Reason != geo.ReasonUnavailable {
			t.Errorf("%s: %d %s, want 503 compliance_unavailable", name, rec.Code, rec.Body)
		}
	}
	if es, _, err := svc.Entries(context.Background(), "alice", "", 10); err != nil || len(es) != 0 {
		t.Fatalf("entries after fail-closed refusals: %d %v", len(es), err)
	}
}
