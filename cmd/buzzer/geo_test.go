package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// send posts body with an optional geolocation token and decision header,
// and returns the status, the problem's reason (if any) and the body.
func send(t *testing.T, url, bearer, geoToken, key, body string, hdr ...string) (int, string, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	if geoToken != "" {
		req.Header.Set("Geolocation-Token", geoToken)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var p struct{ Reason string }
	_ = json.Unmarshal(b, &p)
	return resp.StatusCode, p.Reason, b
}

// refusesQuotes is the price source of a wallet opened only to read.
type refusesQuotes struct{}

func (refusesQuotes) Quote(context.Context, string, string, string) (wallet.Quote, error) {
	return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "reading only")
}

// `buzzer serve` verifies locations itself: money, bets and draws without
// an allowed decision are refused before anything is written; with one,
// every stored movement and bet carries it.
func TestServeRequiresAVerifiedLocation(t *testing.T) {
	dataDir := t.TempDir()
	player, _, stop := startServe(t, dataDir) // an NJ node
	alice := devToken(t, dataDir, "--player", "alice")
	leg := openLeg(t, player)
	const dep = `{"amount":10000,"currency":"USD"}`
	bet := `{"stake":500,"currency":"USD","price_change":"any","legs":[` + leg + `]}`
	const draw = `{"purpose":"p","kind":"int","n":6,"count":1}`

	for _, tc := range []struct{ name, path, body, geo, reason string }{
		{"deposit without a token", "/v1/wallet/deposits", dep, "", "geolocation_required"},
		{"withdrawal without a token", "/v1/wallet/withdrawals", dep, "", "geolocation_required"},
		{"bet without a token", "/v1/bets", bet, "", "geolocation_required"},
		{"draw without a token", "/v1/rng/draws", draw, "", "geolocation_required"},
		{"deposit located in Morrisville, PA", "/v1/wallet/deposits", dep, geotoken(t, dataDir, player, alice, morrisvillePA), "jurisdiction_not_served"},
		{"bet located in PA", "/v1/bets", bet, geotoken(t, dataDir, player, alice, morrisvillePA), "jurisdiction_not_served"},
		{"draw behind a VPN", "/v1/rng/draws", draw, geotoken(t, dataDir, player, alice, trentonNJ, "--vpn"), "risk_vpn"},
		{"forged token", "/v1/wallet/deposits", dep, geotoken(t, dataDir, player, alice, trentonNJ) + "A", "geotoken_signature"},
	} {
		code, reason, body := send(t, player+tc.path, alice, tc.geo, "k-"+tc.name, tc.body)
		if code != http.StatusForbidden || reason != tc.reason {
			t.Errorf("%s: %d %s, want 403 %s", tc.name, code, body, tc.reason)
		}
	}
	if _, _, body := get(t, player+"/v1/wallet/transactions", alice); !bytes.Contains(body, []byte(`"transactions":[]`)) {
		t.Fatalf("refused requests left transactions: %s", body)
	}
	if _, _, body := get(t, player+"/v1/bets", alice); !bytes.Contains(body, []byte(`"bets":[]`)) {
		t.Fatalf("refused requests left bets: %s", body)
	}

	// Located in Trenton: the first request carries the token, the next
	// ones ride on the session's cached decision.
	tok := geotoken(t, dataDir, player, alice, trentonNJ)
	if code, _, body := send(t, player+"/v1/wallet/deposits", alice, tok, "dep-1", dep); code != http.StatusCreated {
		t.Fatalf("deposit from Trenton: %d %s", code, body)
	}
	code, _, body := send(t, player+"/v1/bets", alice, "", "bet-1", bet)
	if code != http.StatusCreated {
		t.Fatalf("bet on the cached decision: %d %s", code, body)
	}
	var placed struct{ ID string }
	if err := json.Unmarshal(body, &placed); err != nil || placed.ID == "" {
		t.Fatalf("bet body %s", body)
	}
	if code, _, body := send(t, player+"/v1/rng/draws", alice, "", "", draw); code != http.StatusCreated {
		t.Fatalf("draw on the cached decision: %d %s", code, body)
	}

	sum := sha256.Sum256([]byte(tok))
	want := wallet.Decision{Jurisdiction: "NJ", TokenHash: hex.EncodeToString(sum[:]), Source: wallet.DecisionEdge}
	_, _, body = get(t, player+"/v1/wallet/transactions", alice)
	var hist struct{ Transactions []wallet.Entry }
	if err := json.Unmarshal(body, &hist); err != nil || len(hist.Transactions) != 2 {
		t.Fatalf("alice's transactions: %s (%v)", body, err)
	}
	for _, e := range hist.Transactions {
		if d := e.Decision; d == nil || d.Jurisdiction != want.Jurisdiction || d.TokenHash != want.TokenHash || d.Source != want.Source || d.DecidedAt.IsZero() {
			t.Errorf("%s transaction carries decision %+v, want %+v", e.Kind, d, want)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// The store itself: the bet row carries the decision, and the RNG log
	// holds the one allowed draw only.
	ctx := context.Background()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(dataDir, "buzzer.db")
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	wcfg := wallet.DefaultConfig()
	wcfg.Jurisdiction = "NJ"
	w, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(db), Prices: refusesQuotes{}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.Bet(ctx, "alice", placed.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := b.Decision; d == nil || d.Jurisdiction != want.Jurisdiction || d.TokenHash != want.TokenHash || d.Source != want.Source {
		t.Fatalf("stored bet carries decision %+v, want %+v", d, want)
	}
	if n, err := sqlite.NewRNGStore(db).TreeSize(ctx); err != nil || n != 1 {
		t.Fatalf("RNG log size %d (%v), want 1: refused draws must not be logged", n, err)
	}
}

// `buzzer edge` admits regulated requests only with the gateway's signed
// decision: it verifies no token itself, issues no challenges, and will
// not start without the gateway's keys.
func TestEdgeAdmitsOnlyTheGatewaysDecision(t *testing.T) {
	bare := t.TempDir()
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"edge", "--jurisdiction", "NJ", "--data-dir", bare, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &out, &errb)
	if exitCode(err) != 2 || !strings.Contains(describe(err), "gateway") {
		t.Fatalf("edge without the gateway's keys: %v, want a usage error naming the gateway", err)
	}

	dataDir := t.TempDir()
	signer, err := gateway.OpenSigner(gateway.KeyFile(dataDir), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	player, _, _ := startNode(t, "edge", dataDir, "--jurisdiction", "NJ")
	alice := devToken(t, dataDir, "--player", "alice")
	if code, _, body := send(t, player+"/v1/geo/challenges", alice, "", "", ""); code != http.StatusNotFound {
		t.Fatalf("challenge on an edge: %d %s, want 404 (the gateway issues them)", code, body)
	}
	// A decision signed for another player session (here: none of
	// alice's) is refused like any other that does not match.
	req, _ := http.NewRequest(http.MethodPost, "/v1/wallet/deposits", nil)
	req.Header.Set("Idempotency-Key", "e-1")
	other, err := signer.Sign(geo.Decision{Allowed: true, PlayerID: "alice", SessionID: "jti:other", Jurisdiction: "NJ",
		TokenSHA256: strings.Repeat("ab", 32), DecidedAt: time.Now(), ValidUntil: time.Now().Add(time.Minute)}, req, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, geo, decision, reason string }{
		{"geolocation token only", "x.y.z", "", "geolocation_required"},
		{"forged decision", "", "forged.by.client", "gateway_decision_invalid"},
		{"another session's decision", "", other, "gateway_decision_mismatch"},
	} {
		code, reason, body := send(t, player+"/v1/wallet/deposits", alice, tc.geo, "e-1", `{"amount":100,"currency":"USD"}`, gateway.DecisionHeader, tc.decision)
		if code != http.StatusForbidden || reason != tc.reason {
			t.Errorf("%s: %d %s, want 403 %s", tc.name, code, body, tc.reason)
		}
	}
	if _, _, body := get(t, player+"/v1/wallet/transactions", alice); !bytes.Contains(body, []byte(`"transactions":[]`)) {
		t.Fatalf("refused requests left transactions: %s", body)
	}
}

// The bench bots locate each simulated player once per session and place
// their bets and draws on the cached decision.
func TestBenchBotsCarryLocations(t *testing.T) {
	dataDir := t.TempDir()
	player, admin, _ := startServe(t, dataDir)
	openLeg(t, player)
	for _, args := range [][]string{
		{"bench", "bets", "--clients", "2", "--players", "3", "--duration", "1s", "--retry-rate", "0.5", "--admin", admin},
		{"bench", "rng", "--clients", "2", "--players", "3", "--duration", "1s"},
	} {
		var out, errb bytes.Buffer
		if err := run(context.Background(), append(args, "--target", player, "--data-dir", dataDir, "--json"), &out, &errb); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		var res struct {
			Errors     int64  `json:"errors"`
			FirstError string `json:"first_error"`
			Bets       int64  `json:"bets"`
			Draws      int64  `json:"draws"`
			// bench bets with --admin: the audit it left behind.
			AuditBacklog *int64 `json:"audit_backlog_records"`
		}
		// A bet may meet a market the live feed just closed (422); no
		// request may be refused for its location or credentials.
		if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Bets+res.Draws == 0 ||
			strings.Contains(res.FirstError, ": 403") || strings.Contains(res.FirstError, ": 401") || strings.Contains(res.FirstError, "forbidden") {
			t.Fatalf("%v: %s (%v), want requests and no location refusal", args, out.String(), err)
		}
		if args[1] == "bets" && res.AuditBacklog == nil {
			t.Fatalf("%v: %s, want the audit backlog the run left", args, out.String())
		}
	}
}
