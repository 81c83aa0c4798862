package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func post(t *testing.T, c *http.Client, url, token, key, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// openLeg waits until the live odds engine offers an open, priced selection.
func openLeg(t *testing.T, player string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second) // hang guard, not a timing check
	for time.Now().Before(deadline) {
		code, _, body := get(t, player+"/v1/events", "")
		if code != 200 {
			t.Fatalf("GET /v1/events = %d %s", code, body)
		}
		var cat struct {
			Events []struct {
				ID      string `json:"event_id"`
				Markets []struct {
					ID         string `json:"id"`
					Status     string `json:"status"`
					Selections []struct {
						ID    string `json:"id"`
						Price string `json:"price"`
					} `json:"selections"`
				} `json:"markets"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &cat); err != nil {
			t.Fatal(err)
		}
		for _, e := range cat.Events {
			for _, m := range e.Markets {
				for _, s := range m.Selections {
					if m.Status == "open" && s.Price != "" {
						return fmt.Sprintf(`{"event_id":%q,"market_id":%q,"selection_id":%q,"price":%q}`, e.ID, m.ID, s.ID, s.Price)
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("no open priced selection appeared in the catalog")
	return ""
}

// The money path through the real serve: idempotent deposits and bets over
// HTTP, byte-identical replays, 422 for a reused key, 400 without a key, one
// effect for concurrent duplicates, and no player reaching another's money.
func TestWalletOverHTTP(t *testing.T) {
	dataDir := t.TempDir()
	player, admin, _ := startServe(t, dataDir)
	app := geoHTTP(t, dataDir, "NJ") // located in Trenton, NJ
	alice := devToken(t, dataDir, "--player", "alice")
	bob := devToken(t, dataDir, "--player", "bob")
	adminTok := func() string {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"dev", "admin-token", "--data-dir", dataDir}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}()

	if code, body := post(t, app, player+"/v1/wallet/deposits", alice, "", `{"amount":10000,"currency":"USD"}`); code != 400 || !bytes.Contains(body, []byte("idempotency_key_missing")) {
		t.Fatalf("deposit without key: %d %s", code, body)
	}
	if code, body := post(t, app, player+"/v1/wallet/deposits", alice, "dep-1", `{"amount":10000,"currency":"USD","player_id":"bob"}`); code != 400 {
		t.Fatalf("a player id in the body must be refused: %d %s", code, body)
	}
	code, first := post(t, app, player+"/v1/wallet/deposits", alice, "dep-1", `{"amount":10000,"currency":"USD"}`)
	if code != 201 {
		t.Fatalf("deposit: %d %s", code, first)
	}
	if code, again := post(t, app, player+"/v1/wallet/deposits", alice, "dep-1", `{"amount":10000,"currency":"USD"}`); code != 201 || !bytes.Equal(again, first) {
		t.Fatalf("deposit replay not byte-identical: %d %s vs %s", code, again, first)
	}
	if code, body := post(t, app, player+"/v1/wallet/deposits", alice, "dep-1", `{"amount":20000,"currency":"USD"}`); code != 422 {
		t.Fatalf("same key, other payload: %d %s", code, body)
	}

	leg := openLeg(t, player)
	bet := `{"stake":500,"currency":"USD","price_change":"any","legs":[` + leg + `]}`
	// Twenty concurrent sends of one key: one bet; every answer is the
	// original or 409 while it is in flight.
	var wg sync.WaitGroup
	bodies := make([][]byte, 20)
	codes := make([]int, 20)
	for i := range bodies {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], bodies[i] = post(t, app, player+"/v1/bets", alice, "bet-1", bet) }()
	}
	wg.Wait()
	var created []byte
	for i := range bodies {
		switch codes[i] {
		case 201:
			if created != nil && !bytes.Equal(created, bodies[i]) {
				t.Fatalf("two different bets for one key:\n%s\n%s", created, bodies[i])
			}
			created = bodies[i]
		case 409:
		default:
			t.Fatalf("concurrent send %d: %d %s", i, codes[i], bodies[i])
		}
	}
	if created == nil {
		t.Fatal("no send of the key was answered with the bet")
	}
	var b struct {
		ID    string `json:"id"`
		Stake int64  `json:"stake"`
	}
	if err := json.Unmarshal(created, &b); err != nil || b.ID == "" || b.Stake != 500 {
		t.Fatalf("bet body %s (%v)", created, err)
	}

	if code, _, body := get(t, player+"/v1/bets/"+b.ID, alice); code != 200 {
		t.Fatalf("owner reads bet: %d %s", code, body)
	}
	if code, _, _ := get(t, player+"/v1/bets/"+b.ID, bob); code != 404 {
		t.Fatalf("another player reads the bet: %d, want 404", code)
	}
	_, _, bobWallet := get(t, player+"/v1/wallet", bob)
	if bytes.Contains(bobWallet, []byte("9500")) {
		t.Fatalf("bob sees alice's balance: %s", bobWallet)
	}
	code, _, wal := get(t, player+"/v1/wallet", alice)
	if code != 200 || !bytes.Contains(wal, []byte(`"balance":9500`)) {
		t.Fatalf("alice's wallet after one 500 bet on 10000: %d %s", code, wal)
	}
	code, _, list := get(t, player+"/v1/bets?status=open", alice)
	if code != 200 || bytes.Count(list, []byte(`"id":`)) != 1 {
		t.Fatalf("alice's open bets: %d %s", code, list)
	}
	code, _, chk := get(t, admin+"/admin/v1/ledger/check", adminTok)
	if code != 200 || !bytes.Contains(chk, []byte(`"ok":true`)) {
		t.Fatalf("ledger check: %d %s", code, chk)
	}
	if code, _, _ := get(t, admin+"/admin/v1/ledger/check", alice); code != 401 {
		t.Fatalf("ledger check with a player token: %d, want 401", code)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"ledger", "check", "--store", "sqlite://" + dataDir + "/buzzer.db"}, &out, &errb); err != nil {
		t.Fatalf("buzzer ledger check: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "PASS") {
		t.Fatalf("ledger check output: %s", out.String())
	}
	if err := run(context.Background(), []string{"ledger", "check"}, &out, &errb); exitCode(err) != 2 {
		t.Fatalf("ledger check without --store: %v", err)
	}
}
