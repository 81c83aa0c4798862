package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/toggle"
	"github.com/buzzer-bet/buzzer/wallet"
)

// placeOnAnyOpenMarket places a single at the current price on the first
// open market that takes it (a simulated market may suspend between the
// read and the bet).
func placeOnAnyOpenMarket(t *testing.T, n *node, player, key string) (placed, error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range n.odds.Events() {
			snap, err := n.odds.Snapshot(ev.EventID)
			if err != nil {
				continue
			}
			for _, m := range snap.Markets {
				if m.Status != odds.Open || len(m.Selections) == 0 {
					continue
				}
				s := m.Selections[0]
				req := wallet.PlaceBetRequest{
					Stake: 100, Currency: "USD", PriceChange: wallet.PriceAny, Decision: testDecision(n.cfg.Jurisdiction),
					Legs: []wallet.LegRequest{{EventID: ev.EventID, MarketID: m.ID, SelectionID: s.ID, Price: s.Price}},
				}
				resp, err := n.wallet.PlaceBet(context.Background(), player, key, req)
				if buzzer.ErrorReason(err) == "market_not_open" {
					key += "x" // that key's answer is now the refusal
					continue
				}
				return placed{key: key, req: req, resp: resp}, err
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no open market took a bet within 30s")
	return placed{}, nil
}

type placed struct {
	key  string
	req  wallet.PlaceBetRequest
	resp *wallet.Response
}

// TestTogglePausesBettingAtRunTime: an operator pauses bet acceptance on the
// admin listener; new bets are refused (503 betting_paused, nothing placed)
// while a resent key still replays its accepted bet; the flip is recorded
// with its operator and reason; resuming takes bets again.
func TestTogglePausesBettingAtRunTime(t *testing.T) {
	ctx := context.Background()
	n := testNode(t, func(c *Config) { c.Odds.Football, c.Tables.Count = 3, 0 })
	cfg := *n.cfg
	keys, err := auth.LoadOrCreateDevKeys(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := keys.AdminToken("ops-7", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminDo := func(method, path, body string) (int, string) {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		n.http.AdminHandler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}

	if _, err := n.wallet.Deposit(ctx, "p1", "dep-1", wallet.MoneyRequest{Amount: 100_000, Currency: "USD", Decision: testDecision(cfg.Jurisdiction)}); err != nil {
		t.Fatal(err)
	}
	first, err := placeOnAnyOpenMarket(t, n, "p1", "bet-1")
	if err != nil || first.resp.Status != http.StatusCreated {
		t.Fatalf("first bet: %v %+v", err, first)
	}

	if code, body := adminDo("PUT", "/admin/v1/toggles/bets.accept", `{"enabled":false,"reason":"VAR review"}`); code != 200 {
		t.Fatalf("pause: %d %s", code, body)
	}
	_, err = placeOnAnyOpenMarket(t, n, "p1", "bet-2")
	if buzzer.ErrorReason(err) != "betting_paused" || buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("bet while paused: %v", err)
	}
	bets, _, err := n.wallet.Bets(ctx, "p1", "", "", 10)
	if err != nil || len(bets) != 1 {
		t.Fatalf("bets after the paused attempt: %d %v", len(bets), err)
	}
	// The accepted bet's key still replays while paused (no quote is taken).
	again, err := n.wallet.PlaceBet(ctx, "p1", first.key, first.req)
	if err != nil || !again.Replayed || again.Status != first.resp.Status || string(again.Body) != string(first.resp.Body) {
		t.Fatalf("replay while paused: %v %+v", err, again)
	}

	code, body := adminDo("GET", "/admin/v1/toggles", "")
	if code != 200 {
		t.Fatalf("list: %d %s", code, body)
	}
	var list struct{ Toggles []toggle.State }
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	var seen bool
	for _, st := range list.Toggles {
		if st.Name == toggle.BetsAccept {
			seen = true
			if st.Enabled || st.ChangedBy != "operator:ops-7" || st.Reason != "VAR review" || st.Revision == 0 {
				t.Fatalf("recorded flip %+v", st)
			}
		}
	}
	if !seen {
		t.Fatalf("bets.accept missing from %s", body)
	}
	for name, c := range map[string]struct{ path, body string }{
		"unknown toggle": {"/admin/v1/toggles/bets.acept", `{"enabled":true,"reason":"x"}`},
		"no reason":      {"/admin/v1/toggles/bets.accept", `{"enabled":true}`},
		"no value":       {"/admin/v1/toggles/bets.accept", `{"reason":"x"}`},
		"unknown field":  {"/admin/v1/toggles/bets.accept", `{"enabled":true,"reason":"x","force":true}`},
	} {
		if code, body := adminDo("PUT", c.path, c.body); code < 400 || code >= 500 {
			t.Fatalf("%s: %d %s", name, code, body)
		}
	}
	if n.toggles.Enabled(toggle.BetsAccept) {
		t.Fatal("a refused flip resumed betting")
	}

	if code, body := adminDo("PUT", "/admin/v1/toggles/bets.accept", `{"enabled":true,"reason":"review over"}`); code != 200 {
		t.Fatalf("resume: %d %s", code, body)
	}
	if p, err := placeOnAnyOpenMarket(t, n, "p1", "bet-3"); err != nil || p.resp.Status != http.StatusCreated {
		t.Fatalf("bet after resuming: %v %+v", err, p.resp)
	}
}
