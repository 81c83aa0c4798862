package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
)

// TestNoPlayerReachesAnothersMoneyOrBets is the object-level authorization
// sweep over every player route serve registers: with bob's token, nothing
// reads or moves alice's money, bets or seat. Player routes also refuse a
// request without a token. A route added later without a case here fails
// the test, so the sweep cannot silently fall behind the API.
func TestNoPlayerReachesAnothersMoneyOrBets(t *testing.T) {
	n := testNode(t, func(c *Config) {
		c.Odds.Football = 3
		c.Tables.Count, c.Tables.BettingWindow = 1, 30*time.Second
	})
	cfg := *n.cfg
	srv := httptest.NewServer(n.http.PlayerHandler())
	defer srv.Close()
	base := srv.URL
	keys, err := auth.LoadOrCreateDevKeys(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	token := func(p string) string {
		tok, err := keys.PlayerToken(p, "NJ", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice, bob := token("alice"), token("bob")
	app := geoHTTP(t, cfg.DataDir, "NJ")
	do := func(method, path, tok, key, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := app.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	jsonField := func(b []byte, field string) string {
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return fmt.Sprint(m[field])
	}

	// Alice's objects: money, a transaction, a bet, a draw and a seat.
	code, dep := do("POST", "/v1/wallet/deposits", alice, "alice-dep", `{"amount":50000,"currency":"USD"}`)
	if code != 201 {
		t.Fatalf("alice deposits: %d %s", code, dep)
	}
	aliceTxn := jsonField(dep, "transaction_id")
	betBody := `{"stake":500,"currency":"USD","price_change":"any","legs":[` + openLeg(t, base) + `]}`
	code, bet := do("POST", "/v1/bets", alice, "alice-bet", betBody)
	if code != 201 {
		t.Fatalf("alice bets: %d %s", code, bet)
	}
	aliceBet := jsonField(bet, "id")
	code, draw := do("POST", "/v1/rng/draws", alice, "", `{"purpose":"test","kind":"int","n":6,"count":1}`)
	if code != 201 {
		t.Fatalf("alice draws: %d %s", code, draw)
	}
	if code, b := do("POST", "/v1/tables/bj-1/seats", alice, "", `{"seat":1}`); code != 201 {
		t.Fatalf("alice sits: %d %s", code, b)
	}
	aliceState := func() string {
		_, w := do("GET", "/v1/wallet", alice, "", "")
		_, bs := do("GET", "/v1/bets", alice, "", "")
		_, ts := do("GET", "/v1/wallet/transactions", alice, "", "")
		return string(w) + string(bs) + string(ts)
	}
	before := aliceState()
	mustNotContain := func(route string, b []byte, secrets ...string) {
		t.Helper()
		for _, s := range secrets {
			if s != "" && bytes.Contains(b, []byte(s)) {
				t.Errorf("%s: bob's answer holds alice's %q: %.300s", route, s, b)
			}
		}
	}

	cases := map[string]func(){
		"GET /v1/me": func() {
			_, b := do("GET", "/v1/me", bob, "", "")
			mustNotContain("GET /v1/me", b, "alice")
		},
		"GET /v1/wallet": func() {
			_, b := do("GET", "/v1/wallet", bob, "", "")
			mustNotContain("GET /v1/wallet", b, "alice", "49500")
		},
		"GET /v1/wallet/transactions": func() {
			_, b := do("GET", "/v1/wallet/transactions", bob, "", "")
			mustNotContain("GET /v1/wallet/transactions", b, aliceTxn)
		},
		"POST /v1/wallet/deposits": func() {
			// A player named in the body is refused; alice's key under bob's
			// token is bob's own key, never a replay of alice's deposit.
			if code, b := do("POST", "/v1/wallet/deposits", bob, "bob-dep", `{"amount":100,"currency":"USD","player_id":"alice"}`); code != 400 {
				t.Errorf("deposit naming alice: %d %s", code, b)
			}
			code, b := do("POST", "/v1/wallet/deposits", bob, "alice-dep", `{"amount":50000,"currency":"USD"}`)
			if code != 201 || jsonField(b, "transaction_id") == aliceTxn {
				t.Errorf("bob's deposit under alice's key: %d %s", code, b)
			}
		},
		"POST /v1/wallet/withdrawals": func() {
			if code, b := do("POST", "/v1/wallet/withdrawals", bob, "bob-wd", `{"amount":100000,"currency":"USD"}`); code == 201 {
				t.Errorf("bob withdrew more than his own money: %s", b)
			}
			if code, b := do("POST", "/v1/wallet/withdrawals", bob, "bob-wd2", `{"amount":10,"currency":"USD","account":"alice"}`); code != 400 {
				t.Errorf("withdrawal naming another account: %d %s", code, b)
			}
		},
		"GET /v1/bets": func() {
			_, b := do("GET", "/v1/bets", bob, "", "")
			mustNotContain("GET /v1/bets", b, aliceBet)
		},
		"GET /v1/bets/{id}": func() {
			if code, b := do("GET", "/v1/bets/"+aliceBet, bob, "", ""); code != 404 {
				t.Errorf("bob reads alice's bet: %d %s", code, b)
			}
		},
		"POST /v1/bets": func() {
			code, b := do("POST", "/v1/bets", bob, "alice-bet", betBody)
			if code == 201 && jsonField(b, "id") == aliceBet {
				t.Errorf("bob's bet under alice's key replayed alice's bet")
			}
		},
		"POST /v1/rng/draws": func() {
			code, b := do("POST", "/v1/rng/draws", bob, "", `{"purpose":"test","kind":"int","n":6,"count":1}`)
			if code != 201 || !strings.Contains(string(b), "player:bob") {
				t.Errorf("bob's draw: %d %s", code, b)
			}
		},
		// A draw's record is a capability: its ID is unguessable and shown
		// only to the requester (and by the table once a shoe is finished),
		// so any holder may verify it; it holds no money. Bob cannot list
		// alice's draws: there is no listing route.
		"GET /v1/rng/draws/{id}": func() {},
		"POST /v1/tables/{id}/seats": func() {
			if code, b := do("POST", "/v1/tables/bj-1/seats", bob, "", `{"seat":1}`); code < 400 {
				t.Errorf("bob took alice's seat: %d %s", code, b)
			}
		},
		"DELETE /v1/tables/{id}/seats/{seat}": func() {
			if code, b := do("DELETE", "/v1/tables/bj-1/seats/1", bob, "", ""); code < 400 {
				t.Errorf("bob removed alice from her seat: %d %s", code, b)
			}
			_, b := do("GET", "/v1/tables/bj-1", alice, "", "")
			if !strings.Contains(string(b), `"alice"`) {
				t.Errorf("alice lost her seat: %s", b)
			}
		},
		"POST /v1/tables/{id}/actions": func() {
			_, v := do("GET", "/v1/tables/bj-1", alice, "", "")
			var view struct {
				Round int64 `json:"round"`
				Seq   int64 `json:"seq"`
			}
			_ = json.Unmarshal(v, &view)
			body := fmt.Sprintf(`{"round":%d,"seq":%d,"action":"bet","amount":100,"seat":1}`, view.Round, view.Seq)
			if code, b := do("POST", "/v1/tables/bj-1/actions", bob, "bob-act", body); code < 400 {
				t.Errorf("bob bet on alice's seat: %d %s", code, b)
			}
		},
	}
	// Routes that hold no player's money or bets: the catalog, the RNG log's
	// public proofs, the odds streams, table views (what any onlooker at a
	// table sees, hole card hidden), location challenges (bound to the
	// caller's own session).
	public := map[string]bool{
		"GET /v1/events": true, "GET /v1/events/{id}": true, "GET /v1/rng/checkpoint": true,
		"GET /v1/rng/consistency": true, "GET /v1/rng/key": true, "GET /v1/stream/ws": true,
		"GET /v1/stream/sse": true, "POST /v1/stream/http": true, "POST /v1/stream/emulation": true,
		"GET /v1/stream/tables": true, "GET /v1/tables": true, "GET /v1/tables/{id}": true,
		"GET /v1/tables/{id}/events": true, "POST /v1/geo/challenges": true,
		"GET /healthz": true, "GET /readyz": true,
	}
	routes := n.http.PlayerRoutes()
	ran := map[string]bool{}
	for _, r := range routes {
		if f, ok := cases[r.Pattern]; ok {
			f()
			ran[r.Pattern] = true
		} else if !public[r.Pattern] {
			t.Errorf("player route %q has no authorization case in this sweep", r.Pattern)
		}
		if r.Access != httpapi.Player {
			continue
		}
		method, path, _ := strings.Cut(r.Pattern, " ")
		path = strings.NewReplacer("{id}", "x", "{seat}", "1").Replace(path)
		if code, b := do(method, path, "", "k", `{}`); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d %.200s", r.Pattern, code, b)
		}
	}
	for pattern := range cases {
		if !ran[pattern] {
			t.Errorf("case %q matches no registered route", pattern)
		}
	}
	if after := aliceState(); after != before {
		t.Errorf("alice's money or bets changed during bob's requests:\nbefore %s\nafter  %s", before, after)
	}
}
