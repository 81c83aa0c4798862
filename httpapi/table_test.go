package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/table"
)

// tableClock is a settable clock safe for concurrent readers.
type tableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *tableClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// tableWallet is an in-process wallet with table.Wallet's contract:
// idempotent per key, insufficient funds refused with ECONFLICT.
type tableWallet struct {
	mu      sync.Mutex
	balance map[string]buzzer.Amount
	applied map[string]table.WalletOp
}

func (w *tableWallet) move(op table.WalletOp, sign buzzer.Amount) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if prev, ok := w.applied[op.Key]; ok {
		if prev != op {
			return buzzer.Errorf(buzzer.EUNPROCESSABLE, "key reused")
		}
		return nil
	}
	if sign < 0 && w.balance[op.Player] < op.Amount {
		return buzzer.Errorf(buzzer.ECONFLICT, "insufficient funds")
	}
	w.balance[op.Player] += sign * op.Amount
	w.applied[op.Key] = op
	return nil
}

func (w *tableWallet) Debit(_ context.Context, op table.WalletOp) error  { return w.move(op, -1) }
func (w *tableWallet) Credit(_ context.Context, op table.WalletOp) error { return w.move(op, 1) }

// tableShuffler deals seeded shuffles (the RNG service's shuffler is
// tested in the table package).
type tableShuffler struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (s *tableShuffler) Shuffle(_ context.Context, req table.ShoeRequest) (table.ShuffledShoe, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cards := table.OrderedShoe(req.Decks)
	s.r.Shuffle(len(cards), func(i, j int) { cards[i], cards[j] = cards[j], cards[i] })
	return table.ShuffledShoe{Ref: fmt.Sprintf("test/%s/%d", req.Table, req.Shoe), Cards: cards}, nil
}

type tableTokens map[string]auth.Principal

func (tt tableTokens) Verify(_ context.Context, tok string) (auth.Principal, error) {
	p, ok := tt[tok]
	if !ok {
		return auth.Principal{}, buzzer.Errorf(buzzer.EUNAUTHORIZED, "bad token")
	}
	return p, nil
}

// tableRig is a table service on the memory store behind the HTTP routes;
// tokens are the player names.
type tableRig struct {
	clock  *tableClock
	store  *inmem.TableStore
	wallet *tableWallet
	svc    *table.Service
	h      http.Handler
	tc     table.TableConfig
}

func newTableRig(t *testing.T, players ...string) *tableRig {
	t.Helper()
	r := &tableRig{clock: &tableClock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)},
		wallet: &tableWallet{balance: map[string]buzzer.Amount{}, applied: map[string]table.WalletOp{}}}
	r.store = inmem.NewTableStore(r.clock, inmem.TableStoreConfig{})
	r.svc, r.h = r.node(t, "node-a", players...)
	r.tc = table.DefaultTableConfig()
	r.tc.Rules.Decks = 1 // every card unique within a shoe
	r.tc.BettingWindow = time.Second
	if err := r.svc.Open(context.Background(), "bj", r.tc); err != nil {
		t.Fatal(err)
	}
	for _, p := range players {
		r.wallet.balance[p] = 10_000_000
	}
	return r
}

// node builds another node's service and HTTP handler on the rig's store.
func (r *tableRig) node(t *testing.T, name string, players ...string) (*table.Service, http.Handler) {
	t.Helper()
	svc, err := table.NewService(table.Config{Node: name}, table.Deps{
		Store: r.store, Wallet: r.wallet, Shuffler: &tableShuffler{r: rand.New(rand.NewPCG(7, uint64(len(name))))}, Clock: r.clock,
	})
	if err != nil {
		t.Fatal(err)
	}
	tokens := tableTokens{}
	for _, p := range players {
		tokens[p] = auth.Principal{Subject: p, Jurisdiction: "NJ"}
	}
	cfg := httpapi.DefaultConfig()
	cfg.HTTPAddr, cfg.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := httpapi.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), tokens, tableTokens{}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	// Every player's session already holds a location decision (Trenton).
	geoEnv := newGeoEnv(t, "NJ")
	for _, p := range players {
		geoEnv.admit(t, p, tokens[p], trenton)
	}
	srv.MountTables(svc, geoEnv.gate)
	return svc, srv.PlayerHandler()
}

// tableCall sends one request; key "" sends no Idempotency-Key.
func tableCall(t *testing.T, h http.Handler, method, path, token, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// tableConflict decodes a 409 and checks it carries the current snapshot.
func (r *tableRig) conflict(t *testing.T, rec *httptest.ResponseRecorder, reason string) table.View {
	t.Helper()
	var p struct {
		httpapi.Problem
		Table *table.View `json:"table"`
	}
	if rec.Code != http.StatusConflict || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s %s, want 409 problem+json", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	if reason != "" && p.Reason != reason {
		t.Fatalf("reason %q, want %q: %s", p.Reason, reason, rec.Body)
	}
	cur, err := r.svc.Snapshot(context.Background(), "bj")
	if err != nil {
		t.Fatal(err)
	}
	if p.Table == nil || p.Table.Seq != cur.Seq || p.Table.Round != cur.Round {
		t.Fatalf("409 carries table %+v, current is seq %d round %d", p.Table, cur.Seq, cur.Round)
	}
	return *p.Table
}

func tableView(t *testing.T, rec *httptest.ResponseRecorder, want int) table.View {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
	}
	var v table.View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func (r *tableRig) wait(t *testing.T, d time.Duration) {
	t.Helper()
	for ; d > 0; d -= time.Second {
		r.clock.Advance(time.Second)
		if err := r.svc.TickAll(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

func tableAction(round, seq int64, a table.Action, amount buzzer.Amount) string {
	return fmt.Sprintf(`{"round":%d,"seq":%d,"action":%q,"amount":%d}`, round, seq, a, amount)
}

// TestTableRoutes walks the API: seats, a bet, a resend, stale and
// out-of-turn decisions (409 with the snapshot), bad requests and the event
// feed.
func TestTableRoutes(t *testing.T) {
	r := newTableRig(t, "ann", "bob")
	h := r.h
	if rec := tableCall(t, h, "GET", "/v1/tables", "", "", ""); rec.Code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", rec.Code)
	}
	rec := tableCall(t, h, "GET", "/v1/tables", "ann", "", "")
	var list struct{ Tables []table.View }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Tables) != 1 || list.Tables[0].Table != "bj" {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	if rec := tableCall(t, h, "GET", "/v1/tables/nope", "ann", "", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("unknown table: %d", rec.Code)
	}

	v := tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":1}`), http.StatusCreated)
	if tableSeatPlayer(v, 1) != "ann" {
		t.Fatalf("sat: %+v", v)
	}
	// A resent sit is a success; someone else's seat is a 409 with the table.
	if rec := tableCall(t, h, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":1}`); rec.Code != 200 || rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("resent sit: %d %s", rec.Code, rec.Body)
	}
	r.conflict(t, tableCall(t, h, "POST", "/v1/tables/bj/seats", "bob", "", `{"seat":1}`), "")
	v = tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/seats", "bob", "", `{"seat":2}`), http.StatusCreated)

	bet := tableAction(v.Round, v.Seq, table.PlaceBet, 1000)
	for name, tc := range map[string]struct {
		key, body string
		code      int
	}{
		"no key":         {"", bet, 400},
		"key with space": {"a b", bet, 400},
		"unknown field":  {"k", `{"round":1,"seq":1,"action":"bet","amount":10,"tip":1}`, 400},
		"bad action":     {"k", `{"round":1,"seq":1,"action":"fold"}`, 400},
		"no seq":         {"k", `{"round":1,"action":"bet","amount":1000}`, 400},
		"negative":       {"k", `{"round":1,"seq":1,"action":"bet","amount":-5}`, 400},
		"two objects":    {"k", bet + bet, 400},
		"not json":       {"k", `bet 10`, 400},
	} {
		if rec := tableCall(t, h, "POST", "/v1/tables/bj/actions", "ann", tc.key, tc.body); rec.Code != tc.code || rec.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %d %s, want %d problem+json", name, rec.Code, rec.Body, tc.code)
		}
	}
	if r.wallet.balance["ann"] != 10_000_000 {
		t.Fatal("a refused request moved money")
	}

	v = tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "ann", "bet-1", bet), 200)
	if r.wallet.balance["ann"] != 10_000_000-1000 || tableSeatBet(v, 1) != 1000 {
		t.Fatalf("bet: balance %d, view %+v", r.wallet.balance["ann"], v)
	}
	// The same decision resent (its reply was lost) is answered from the log
	// and charges nothing more.
	rec = tableCall(t, h, "POST", "/v1/tables/bj/actions", "ann", "bet-1", bet)
	if rec.Code != 200 || rec.Header().Get("Idempotent-Replayed") != "true" || r.wallet.balance["ann"] != 10_000_000-1000 {
		t.Fatalf("resent bet: %d %s, balance %d", rec.Code, rec.Body, r.wallet.balance["ann"])
	}
	// A different decision on the same stale view is refused with the table.
	cur := r.conflict(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "ann", "bet-2", tableAction(v.Round, v.Seq-1, table.PlaceBet, 2000)), table.ReasonStaleSeq)
	tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "bob", "bob-bet", tableAction(cur.Round, cur.Seq, table.PlaceBet, 1000)), 200)

	r.wait(t, r.tc.BettingWindow)
	v = tableView(t, tableCall(t, h, "GET", "/v1/tables/bj", "ann", "", ""), 200)
	if v.Turn == nil {
		t.Fatalf("no turn after the deal: %+v", v)
	}
	// Whoever's turn it is not, acting is out of turn: 409 not_your_turn.
	other := "bob"
	if tableSeatPlayer(v, v.Turn.Seat) == "bob" {
		other = "ann"
	}
	r.conflict(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", other, "oot", tableAction(v.Round, v.Seq, table.Stand, 0)), table.ReasonNotYourTurn)

	// The feed resumes by sequence and pages with limit.
	rec = tableCall(t, h, "GET", "/v1/tables/bj/events?after=2&limit=3", "ann", "", "")
	var feed struct{ Events []table.Event }
	if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &feed) != nil || len(feed.Events) != 3 || feed.Events[0].Seq != 3 {
		t.Fatalf("events: %d %s", rec.Code, rec.Body)
	}
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=1001", "after=01"} {
		if rec := tableCall(t, h, "GET", "/v1/tables/bj/events?"+q, "ann", "", ""); rec.Code != 400 {
			t.Errorf("events?%s: %d", q, rec.Code)
		}
	}
	// A snapshot can wait for the table to move past what the client saw:
	// at once when it already has, with the same snapshot when the wait
	// runs out first (the wake-up itself is table.TestWaitSnapshot...).
	if got := tableView(t, tableCall(t, h, "GET", fmt.Sprintf("/v1/tables/bj?after=%d&wait=5s", v.Seq-1), "ann", "", ""), 200); got.Seq != v.Seq {
		t.Fatalf("wait past seq: seq %d, want %d", got.Seq, v.Seq)
	}
	if got := tableView(t, tableCall(t, h, "GET", fmt.Sprintf("/v1/tables/bj?after=%d&wait=10ms", v.Seq), "ann", "", ""), 200); got.Seq != v.Seq {
		t.Fatalf("wait on a quiet table: seq %d, want %d", got.Seq, v.Seq)
	}
	for _, q := range []string{"after=1", "wait=1s", "after=x&wait=1s", "after=-1&wait=1s", "after=1&wait=0s", "after=1&wait=6s", "after=1&wait=soon"} {
		if rec := tableCall(t, h, "GET", "/v1/tables/bj?"+q, "ann", "", ""); rec.Code != 400 {
			t.Errorf("snapshot?%s: %d", q, rec.Code)
		}
	}
	// Leaving mid-round marks the seat; a stranger's seat is not theirs to free.
	if rec := tableCall(t, h, "DELETE", "/v1/tables/bj/seats/2", "ann", "", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("leave someone else's seat: %d %s", rec.Code, rec.Body)
	}
	v = tableView(t, tableCall(t, h, "DELETE", "/v1/tables/bj/seats/2", "bob", "", ""), 200)
	for _, s := range v.Seats {
		if s.Seat == 2 && !s.Leaving {
			t.Fatalf("seat 2 not leaving: %+v", v)
		}
	}
}

// TestTableNotOwnerIs503: a node that does not hold the table answers
// decisions with 503, reason not_owner and Retry-After (the client retries;
// nothing is applied), while still serving the snapshot from the store.
func TestTableNotOwnerIs503(t *testing.T) {
	r := newTableRig(t, "ann")
	tableView(t, tableCall(t, r.h, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":1}`), http.StatusCreated)
	_, hb := r.node(t, "node-b", "ann")
	v := tableView(t, tableCall(t, hb, "GET", "/v1/tables/bj", "ann", "", ""), 200)
	rec := tableCall(t, hb, "POST", "/v1/tables/bj/actions", "ann", "k1", tableAction(v.Round, v.Seq, table.PlaceBet, 1000))
	var p httpapi.Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || p.Reason != table.ReasonNotOwner {
		t.Fatalf("action on a non-owner: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if rec := tableCall(t, hb, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":2}`); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("sit on a non-owner: %d", rec.Code)
	}
	if r.wallet.balance["ann"] != 10_000_000 {
		t.Fatal("a refused action moved money")
	}
	var list struct{ Tables []table.View }
	if rec := tableCall(t, hb, "GET", "/v1/tables", "ann", "", ""); json.Unmarshal(rec.Body.Bytes(), &list) != nil || len(list.Tables) != 0 {
		t.Fatalf("node-b lists tables it does not serve: %s", rec.Body)
	}
}

var tableCardToken = regexp.MustCompile(`"([2-9TJQKA][SHDC])"`)

// tableSecrets mirrors the parts of the stored state that hold secrets.
type tableSecrets struct {
	Shoe *table.Shoe `json:"shoe"`
	Game *struct {
		Dealer   []table.Card `json:"dealer"`
		Revealed bool         `json:"revealed"`
	} `json:"game"`
}

// leakCheck fails if body names any card that is not face up right now:
// every card in it must be among the shoe's dealt cards (with multiplicity),
// less the dealer's face-down cards before the reveal.
func (r *tableRig) leakCheck(t *testing.T, what string, body []byte) {
	t.Helper()
	stored, err := r.store.Load(context.Background(), "bj")
	if err != nil {
		t.Fatal(err)
	}
	var st tableSecrets
	if err := json.Unmarshal(stored.State, &st); err != nil {
		t.Fatal(err)
	}
	up := map[table.Card]int{}
	if st.Shoe != nil {
		for _, c := range st.Shoe.Cards[:st.Shoe.Pos] {
			up[c]++
		}
	}
	if st.Game != nil && !st.Game.Revealed {
		for _, c := range st.Game.Dealer[1:] {
			up[c]--
		}
	}
	seen := map[table.Card]int{}
	for _, m := range tableCardToken.FindAllSubmatch(body, -1) {
		c, err := table.ParseCard(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		seen[c]++
	}
	for c, n := range seen {
		if n > up[c] {
			t.Fatalf("%s names %v %d times but %d are face up:\n%s", what, c, n, up[c], body)
		}
	}
}

// TestNoUnrevealedCardInAnyResponse plays 25 single-deck rounds over HTTP
// with three basic-strategy players who also send stale and resent
// decisions and read snapshots and the feed, and checks every response
// body — successes, 409s with their snapshots, event pages — against the
// secrets at that moment: no hole card before the reveal, no undealt card.
func TestNoUnrevealedCardInAnyResponse(t *testing.T) {
	players := []string{"ann", "bob", "cat"}
	r := newTableRig(t, players...)
	rnd := rand.New(rand.NewPCG(3, 3))
	checked, holeChecks := 0, 0
	send := func(method, path, who, key, body string) *httptest.ResponseRecorder {
		rec := tableCall(t, r.h, method, path, who, key, body)
		var page struct{ Events []json.RawMessage }
		if strings.Contains(path, "/events") && json.Unmarshal(rec.Body.Bytes(), &page) == nil && len(page.Events) > 0 {
			// A page repeats a card legitimately (dealt up, then in the
			// reveal): each event is one message and is checked alone.
			for _, e := range page.Events {
				r.leakCheck(t, method+" "+path, e)
			}
		} else {
			r.leakCheck(t, method+" "+path, rec.Body.Bytes())
		}
		checked++
		return rec
	}
	for i, p := range players {
		tableView(t, send("POST", "/v1/tables/bj/seats", p, "", fmt.Sprintf(`{"seat":%d}`, i+1)), http.StatusCreated)
	}
	n := 0
	for round := 0; round < 25; round++ {
		v := tableView(t, send("GET", "/v1/tables/bj", "ann", "", ""), 200)
		start := v.Seq
		for _, p := range players {
			n++
			v = tableView(t, send("POST", "/v1/tables/bj/actions", p, fmt.Sprint("k", n), tableAction(v.Round, v.Seq, table.PlaceBet, 200)), 200)
		}
		r.wait(t, r.tc.BettingWindow)
		for steps := 0; ; steps++ {
			if steps > 100 {
				t.Fatal("round does not end")
			}
			cur := tableView(t, send("GET", "/v1/tables/bj", "bob", "", ""), 200)
			if cur.HoleHidden {
				holeChecks++
			}
			send("GET", fmt.Sprintf("/v1/tables/bj/events?after=%d", start), "cat", "", "")
			if cur.Round != v.Round {
				break
			}
			if cur.Turn == nil && cur.Phase == table.TableSettled {
				// The table's payer pays the round after the answer that
				// settled it, then opens the next.
				steps--
				time.Sleep(time.Millisecond)
				continue
			}
			who := tableSeatPlayer(cur, cur.Turn.Seat)
			var legal table.Actions
			for _, a := range cur.Turn.Actions {
				legal |= 1 << a
			}
			a := table.NoInsurance
			if cur.Turn.Phase != table.TableInsurance {
				a = table.BasicStrategy(r.tc.Rules, legal, tableHand(cur), cur.Dealer[0])
			}
			n++
			key := fmt.Sprint("k", n)
			body := tableAction(cur.Round, cur.Seq, a, 0)
			tableView(t, send("POST", "/v1/tables/bj/actions", who, key, body), 200)
			switch rnd.IntN(3) {
			case 0: // the reply was lost: resend
				if rec := send("POST", "/v1/tables/bj/actions", who, key, body); rec.Code != 200 {
					t.Fatalf("resend: %d %s", rec.Code, rec.Body)
				}
			case 1: // a decision on the view before: refused with the table
				if rec := send("POST", "/v1/tables/bj/actions", who, key+"x", tableAction(cur.Round, cur.Seq-1, table.Hit, 0)); rec.Code != http.StatusConflict {
					t.Fatalf("stale: %d %s", rec.Code, rec.Body)
				}
			}
		}
	}
	if checked < 300 || holeChecks < 25 {
		t.Fatalf("checked %d responses, %d with a hidden hole card: the test did not exercise enough", checked, holeChecks)
	}
}

func tableSeatPlayer(v table.View, seat int) string {
	for _, s := range v.Seats {
		if s.Seat == seat {
			return s.Player
		}
	}
	return ""
}

func tableSeatBet(v table.View, seat int) buzzer.Amount {
	for _, s := range v.Seats {
		if s.Seat == seat {
			return s.Bet
		}
	}
	return 0
}

func tableHand(v table.View) []table.Card {
	for _, s := range v.Seats {
		if s.Seat == v.Turn.Seat {
			return s.Hands[v.Turn.Hand].Cards
		}
	}
	return nil
}

// FuzzTableActionBody: no action body, however malformed, gets anything but
// a success or a problem+json 4xx, and a refused one moves no money.
func FuzzTableActionBody(f *testing.F) {
	for _, s := range []string{
		`{"round":1,"seq":1,"action":"bet","amount":1000}`,
		`{"round":1,"seq":2,"action":"hit","seat":1}`,
		`{"round":1,"seq":1,"action":"insure","amount":50}`,
		`{"round":1e3,"seq":"1","action":7}`, `[]`, `{}`, `null`, `{"action":"bet"}{}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := newTableRig(t, "ann")
		tableCall(t, r.h, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":1}`)
		rec := tableCall(t, r.h, "POST", "/v1/tables/bj/actions", "ann", "fuzz", body)
		switch {
		case rec.Code == 200:
		case rec.Code >= 400 && rec.Code < 500 && rec.Header().Get("Content-Type") == "application/problem+json":
			if r.wallet.balance["ann"] != 10_000_000 {
				t.Fatalf("refused (%d) but money moved: %s", rec.Code, body)
			}
		default:
			t.Fatalf("body %q: %d %s", body, rec.Code, rec.Body)
		}
	})
}

// A table's seats bet at once: a bet made on a view that only other seats'
// bets have moved on is taken, and its resend is recognised and replayed
// past those bets, charging nothing more.
func TestTableConcurrentBetsReplay(t *testing.T) {
	r := newTableRig(t, "ann", "bob")
	h := r.h
	tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/seats", "ann", "", `{"seat":1}`), http.StatusCreated)
	v := tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/seats", "bob", "", `{"seat":2}`), http.StatusCreated)
	annBet := tableAction(v.Round, v.Seq, table.PlaceBet, 1000)
	bobBet := tableAction(v.Round, v.Seq, table.PlaceBet, 2000) // the same view: bob has not seen ann's bet
	tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "ann", "ann-bet", annBet), 200)
	tableView(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "bob", "bob-bet", bobBet), 200)
	for _, c := range []struct{ player, key, body string }{{"bob", "bob-bet", bobBet}, {"ann", "ann-bet", annBet}} {
		rec := tableCall(t, h, "POST", "/v1/tables/bj/actions", c.player, c.key, c.body)
		if rec.Code != 200 || rec.Header().Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s's resent bet: %d %s", c.player, rec.Code, rec.Body)
		}
	}
	if r.wallet.balance["ann"] != 10_000_000-1000 || r.wallet.balance["bob"] != 10_000_000-2000 {
		t.Fatalf("balances after resends: ann %d, bob %d", r.wallet.balance["ann"], r.wallet.balance["bob"])
	}
	// A second bet by a seat that has bet is refused, not replayed.
	r.conflict(t, tableCall(t, h, "POST", "/v1/tables/bj/actions", "bob", "bob-bet-2", tableAction(v.Round, v.Seq, table.PlaceBet, 3000)), table.ReasonStaleSeq)
}
