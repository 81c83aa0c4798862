package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	centrifugego "github.com/centrifugal/centrifuge-go"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/redis"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/tablefeed"
)

// tableProc is a `buzzer serve` running as its own process (this test
// binary re-executed as the command, see TestMain).
type tableProc struct {
	cmd    *exec.Cmd
	player string
	admin  string
	stderr *syncBuffer
	done   chan error
}

func startTableProc(t *testing.T, args ...string) *tableProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), "BUZZER_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &tableProc{cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil && p.player == "" {
				p.player, p.admin = "http://"+m[1], "http://"+m[2]
				p.done <- nil
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not start within 60s:\n%s", p.stderr.String())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// tableHTTP sends a JSON request and decodes a 2xx answer into out.
func tableHTTP(t *testing.T, app *http.Client, method, url, token, key string, body any, out any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := app.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, b)
		}
	}
	return resp.StatusCode, b
}

// tableWaitFor polls cond until it holds; the deadline is a hang guard,
// not a timing assertion.
func tableWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type tableActionReq struct {
	Round  int64         `json:"round"`
	Seq    int64         `json:"seq"`
	Action table.Action  `json:"action"`
	Amount buzzer.Amount `json:"amount"`
	Seat   int           `json:"seat"`
}

// tableDecide is the basic-strategy decision for seat 1's turn.
func tableDecide(v table.View) table.Action {
	if v.Turn.Phase == table.TableInsurance {
		return table.NoInsurance
	}
	var legal table.Actions
	for _, a := range v.Turn.Actions {
		legal |= 1 << a
	}
	cards := v.Seats[0].Hands[v.Turn.Hand].Cards
	return table.BasicStrategy(table.DefaultRules(), legal, cards, v.Dealer[0])
}

func tableWriteConfig(t *testing.T, dir, node, redisURL, prefix string) string {
	t.Helper()
	path := filepath.Join(dir, node+".yaml")
	cfg := fmt.Sprintf(`tables:
  redis_url: %q
  key_prefix: %q
  node: %q
  lease_ttl: 3s
  tick_interval: 100ms
  claim_interval: 200ms
  count: 1
  id_prefix: ft-
  betting_window: 1s
  action_timeout: 60s
`, redisURL, prefix, node)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func tableCopyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o750); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTableFailoverAcrossProcesses: two `buzzer serve` processes share a
// Redis (tables) and a PostgreSQL (wallet, RNG log), each with its own data
// dir. Node A holds the table; a player bets and the cards are dealt; A is
// killed with SIGKILL while the round waits for the player's decision. B
// takes the table up once A's lease lapses, the player finishes the round
// on B, and:
//   - the event log is one gap-free sequence with exactly one settlement
//     for the round, and the next round opens;
//   - the wallet holds each stake and payout exactly once: the player's
//     cash balance is the deposit less every stake plus every return the
//     log records, and there is one wallet transaction per stake and per
//     non-zero payout;
//   - a write carrying the dead node's epoch is refused by the Redis store
//     itself, changing nothing.
func TestTableFailoverAcrossProcesses(t *testing.T) {
	pgURL := enginetest.PostgresURL(t)
	rc, prefix := enginetest.Redis(t)
	redisURL := enginetest.RedisURL(t)
	dir := t.TempDir()
	dataA, dataB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	a := startTableProc(t, "--data-dir", dataA, "--store", pgURL, "--config", tableWriteConfig(t, dir, "node-a", redisURL, prefix))
	// B trusts the same dev keys and signs the shared RNG log with the same key.
	tableCopyDir(t, filepath.Join(dataA, "keys"), filepath.Join(dataB, "keys"))
	b := startTableProc(t, "--data-dir", dataB, "--store", pgURL, "--config", tableWriteConfig(t, dir, "node-b", redisURL, prefix))

	tok := devToken(t, dataA, "--player", "fo-player")
	app := geoHTTP(t, dataA, "NJ") // the player's app, located in Trenton
	const funds = 1_000_000
	if code, body := tableHTTP(t, app, "POST", a.player+"/v1/wallet/deposits", tok, "fo-fund", map[string]any{"amount": funds, "currency": "USD"}, nil); code/100 != 2 {
		t.Fatalf("deposit: %d %s", code, body)
	}
	var list struct{ Tables []table.View }
	tableHTTP(t, app, "GET", a.player+"/v1/tables", tok, "", nil, &list)
	if len(list.Tables) != 1 || list.Tables[0].Table != "ft-1" {
		t.Fatalf("node A serves %+v, want ft-1", list.Tables)
	}
	tableHTTP(t, app, "GET", b.player+"/v1/tables", tok, "", nil, &list)
	if len(list.Tables) != 0 {
		t.Fatalf("node B serves %+v while A holds the table", list.Tables)
	}
	if code, body := tableHTTP(t, app, "POST", a.player+"/v1/tables/ft-1/seats", tok, "", map[string]int{"seat": 1}, nil); code != http.StatusCreated {
		t.Fatalf("sit: %d %s", code, body)
	}

	// Play on A until a round waits for the player's decision in the
	// players' phase (a natural settles at once; insurance is declined).
	var v table.View
	n := 0
	act := func(base string, req tableActionReq) (int, []byte) {
		n++
		return tableHTTP(t, app, "POST", base+"/v1/tables/ft-1/actions", tok, fmt.Sprint("fo-", n), req, &v)
	}
	snapshot := func(base string) table.View {
		var s table.View
		if code, body := tableHTTP(t, app, "GET", base+"/v1/tables/ft-1", tok, "", nil, &s); code != 200 {
			t.Fatalf("snapshot: %d %s", code, body)
		}
		return s
	}
	for attempt := 0; ; attempt++ {
		if attempt == 20 {
			t.Fatal("no round reached the player's decision")
		}
		v = snapshot(a.player)
		if code, body := act(a.player, tableActionReq{Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: 1000, Seat: 1}); code != 200 {
			t.Fatalf("bet: %d %s", code, body)
		}
		round := v.Round
		tableWaitFor(t, "the deal", func() bool { v = snapshot(a.player); return v.Turn != nil || v.Round != round })
		for v.Round == round && v.Turn != nil && v.Turn.Phase == table.TableInsurance {
			if code, body := act(a.player, tableActionReq{Round: v.Round, Seq: v.Seq, Action: table.NoInsurance, Seat: 1}); code != 200 {
				t.Fatalf("decline insurance: %d %s", code, body)
			}
			v = snapshot(a.player)
		}
		if v.Round == round && v.Turn != nil {
			break
		}
	}
	round := v.Round

	// A dies mid-round, without a chance to release its lease.
	killed := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()

	// B takes the table up once A's lease lapses.
	tableWaitFor(t, "node B to take the table over", func() bool {
		tableHTTP(t, app, "GET", b.player+"/v1/tables", tok, "", nil, &list)
		return len(list.Tables) == 1
	})
	t.Logf("node B took table ft-1 over mid-round %d (seq %d), %s after the kill (lease TTL 3s)", round, v.Seq, time.Since(killed).Round(time.Millisecond))
	// The player finishes the round on B, from B's view of it.
	for steps := 0; ; steps++ {
		if steps > 30 {
			t.Fatal("the round does not end on node B")
		}
		v = snapshot(b.player)
		if v.Round != round {
			break
		}
		if v.Turn == nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if code, body := act(b.player, tableActionReq{Round: v.Round, Seq: v.Seq, Action: tableDecide(v), Seat: 1}); code != 200 {
			t.Fatalf("act on B: %d %s", code, body)
		}
	}

	// Keep playing on B until a round has paid out, so a payout made by the
	// node that took over is among the money checked below.
	playB := func() (paid bool) {
		v = snapshot(b.player)
		r := v.Round
		if code, body := act(b.player, tableActionReq{Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: 1000, Seat: 1}); code != 200 {
			t.Fatalf("bet on B: %d %s", code, body)
		}
		for steps := 0; ; steps++ {
			if steps > 200 {
				t.Fatal("a round on B does not end")
			}
			v = snapshot(b.player)
			if v.Round != r {
				var page struct{ Events []table.Event }
				tableHTTP(t, app, "GET", fmt.Sprintf("%s/v1/tables/ft-1/events?after=%d", b.player, v.Seq-2), tok, "", nil, &page)
				if len(page.Events) == 0 || page.Events[0].Kind != table.EventSettled {
					t.Fatalf("round %d did not end in a settlement: %+v", r, page.Events)
				}
				for _, res := range page.Events[0].Results {
					for _, h := range res.Hands {
						paid = paid || h.Return > 0
					}
				}
				return paid
			}
			if v.Turn == nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if code, body := act(b.player, tableActionReq{Round: v.Round, Seq: v.Seq, Action: tableDecide(v), Seat: 1}); code != 200 {
				t.Fatalf("act on B: %d %s", code, body)
			}
		}
	}
	for i := 0; !playB(); i++ {
		if i == 25 {
			t.Fatal("25 rounds without a payout")
		}
	}

	// The log: one gap-free sequence, one settlement per round, the round
	// that was cut off completed and the next opened.
	var evs []table.Event
	for {
		var page struct{ Events []table.Event }
		tableHTTP(t, app, "GET", fmt.Sprintf("%s/v1/tables/ft-1/events?after=%d&limit=100", b.player, len(evs)), tok, "", nil, &page)
		if len(page.Events) == 0 {
			break
		}
		evs = append(evs, page.Events...)
	}
	view := table.View{Table: "ft-1", Round: 1, Phase: table.TableBetting}
	var staked, returned buzzer.Amount
	stakes, payouts := 0, 0
	settled := map[int64]int{}
	for _, e := range evs {
		if err := view.Apply(e); err != nil {
			t.Fatalf("event %d does not follow the log: %v", e.Seq, err)
		}
		switch {
		case e.Kind == table.EventBet:
			staked += e.Amount
			stakes++
		case e.Kind == table.EventAction && e.Action == table.DoubleDown:
			staked += view.Seats[0].Hands[e.Hand].Stake / 2 // the hand's stake, now doubled
			stakes++
		case e.Kind == table.EventAction && e.Action == table.Split:
			staked += view.Seats[0].Hands[e.Hand+1].Stake // the new hand's stake
			stakes++
		case e.Kind == table.EventAction && e.Action == table.Insure:
			staked += e.Amount
			stakes++
		case e.Kind == table.EventSettled:
			settled[e.Round]++
			var ret buzzer.Amount
			for _, r := range e.Results {
				ret += r.InsuranceReturn
				for _, h := range r.Hands {
					ret += h.Return
				}
			}
			if ret > 0 {
				payouts++
			}
			returned += ret
		}
	}
	if settled[round] != 1 || view.Round <= round {
		t.Fatalf("round %d settled %d times; the table is at round %d", round, settled[round], view.Round)
	}
	for r, k := range settled {
		if k != 1 {
			t.Fatalf("round %d settled %d times", r, k)
		}
	}

	// Money: each stake and payout exactly once, read back from the wallet.
	var bal struct {
		Balances []struct {
			Account  string
			Currency string
			Balance  buzzer.Amount
		}
	}
	tableHTTP(t, app, "GET", b.player+"/v1/wallet", tok, "", nil, &bal)
	var cash buzzer.Amount = -1
	for _, x := range bal.Balances {
		if x.Account == "cash" && x.Currency == "USD" {
			cash = x.Balance
		}
	}
	if want := funds - staked + returned; cash != want {
		t.Fatalf("cash balance %d, want %d (deposit %d, stakes %d, returns %d): a stake or payout was lost or repeated", cash, want, funds, staked, returned)
	}
	t.Logf("round %d completed on B, then %d rounds in all: %d events, %d stakes (%d), %d payouts (%d), cash %d", round, view.Round-1, len(evs), stakes, staked, payouts, returned, cash)
	txns := map[string]bool{}
	cursor := ""
	for {
		var page struct {
			Transactions []struct {
				TransactionID string `json:"transaction_id"`
				Account       string `json:"account"`
			}
			NextCursor string `json:"next_cursor"`
		}
		tableHTTP(t, app, "GET", b.player+"/v1/wallet/transactions?limit=200&cursor="+cursor, tok, "", nil, &page)
		for _, x := range page.Transactions {
			if x.Account == "cash" {
				txns[x.TransactionID] = true
			}
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if got, want := len(txns), 1+stakes+payouts; got != want {
		t.Fatalf("%d wallet transactions on the player's cash, want %d (the deposit, %d stakes, %d payouts)", got, want, stakes, payouts)
	}

	// A write with the dead node's epoch is refused by the store itself.
	store := redis.NewTableStore(rc, buzzer.SystemClock{}, redis.TableStoreConfig{Prefix: prefix})
	ctx := context.Background()
	before, err := store.Load(ctx, "ft-1")
	if err != nil {
		t.Fatal(err)
	}
	for _, owner := range []string{"node-a", "node-b"} {
		_, err = store.Write(ctx, table.Write{Lease: table.Lease{Table: "ft-1", Owner: owner, Epoch: before.Epoch - 1}, Version: before.Version, State: []byte(`{}`)})
		if buzzer.ErrorReason(err) != table.ReasonStaleEpoch {
			t.Fatalf("write with the old epoch as %s: %v, want stale_epoch", owner, err)
		}
	}
	after, err := store.Load(ctx, "ft-1")
	if err != nil || after.Version != before.Version || !bytes.Equal(after.State, before.State) {
		t.Fatalf("a refused write changed the table: %v", err)
	}

	code, _, metrics := get(t, b.admin+"/metrics", "")
	if code != 200 || !bytes.Contains(metrics, []byte("buzzer_table_lease_takeovers_total 1")) || !bytes.Contains(metrics, []byte("buzzer_table_active_tables 1")) {
		t.Fatalf("node B's metrics do not show the takeover:\n%s", grepLines(metrics, "buzzer_table_"))
	}
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Wait(); err != nil {
		t.Fatalf("node B exit: %v\n%s", err, b.stderr.String())
	}
}

func grepLines(b []byte, substr string) string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestServeTablesInMemoryAndBench: a plain serve opens its in-memory tables,
// and `bench tables` plays them over HTTP, printing the JSON figures, while
// a player follows one table on the live feed (/v1/stream/tables) and ends
// with exactly the table's state; a connection without a token is refused.
func TestServeTablesInMemoryAndBench(t *testing.T) {
	dataDir := t.TempDir()
	cfg := filepath.Join(dataDir, "tables.yaml")
	if err := os.WriteFile(cfg, []byte("tables:\n  count: 4\n  betting_window: 1s\n  tick_interval: 100ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	player, admin, stop := startServe(t, dataDir, "--config", cfg)
	tok := devToken(t, dataDir, "--player", "p-1")
	app := geoHTTP(t, dataDir, "NJ")
	var list struct{ Tables []table.View }
	if code, body := tableHTTP(t, app, "GET", player+"/v1/tables", tok, "", nil, &list); code != 200 || len(list.Tables) != 4 {
		t.Fatalf("tables: %d %s", code, body)
	}
	feedURL := "ws" + strings.TrimPrefix(player, "http") + "/v1/stream/tables"
	follow := list.Tables[0].Table
	var mu sync.Mutex
	var view *table.View
	var feedErr error
	fail := func(err error) {
		if feedErr == nil {
			feedErr = err
		}
	}
	c := centrifugego.NewJsonClient(feedURL, centrifugego.Config{Token: tok, HandshakeTimeout: 10 * time.Second})
	defer c.Close()
	sub, err := c.NewSubscription(tablefeed.Channel(follow), centrifugego.SubscriptionConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sub.OnSubscribed(func(e centrifugego.SubscribedEvent) {
		mu.Lock()
		defer mu.Unlock()
		var m tablefeed.Message
		if err := json.Unmarshal(e.Data, &m); err != nil || m.Type != tablefeed.TypeSnapshot || m.View == nil {
			fail(fmt.Errorf("subscribe reply %s: %v", e.Data, err))
			return
		}
		view = m.View
	})
	sub.OnPublication(func(e centrifugego.PublicationEvent) {
		mu.Lock()
		defer mu.Unlock()
		var m tablefeed.Message
		if err := json.Unmarshal(e.Data, &m); err != nil || m.Event == nil || view == nil {
			fail(fmt.Errorf("publication %s: %v", e.Data, err))
			return
		}
		if err := view.Apply(*m.Event); err != nil {
			fail(err)
		}
	})
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	if err := sub.Subscribe(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the table feed's snapshot", func() bool { mu.Lock(); defer mu.Unlock(); return view != nil || feedErr != nil })

	anon := centrifugego.NewJsonClient(feedURL, centrifugego.Config{HandshakeTimeout: 10 * time.Second})
	refused := make(chan struct{})
	var once sync.Once
	anon.OnDisconnected(func(centrifugego.DisconnectedEvent) { once.Do(func() { close(refused) }) })
	anon.OnConnected(func(centrifugego.ConnectedEvent) { t.Error("the table feed took a connection without a token") })
	if err := anon.Connect(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-refused:
	case <-time.After(20 * time.Second):
		t.Error("the table feed did not refuse a connection without a token")
	}
	anon.Close()

	// With a think time the seats of a table bet at once (each on the view
	// the bot has, so most bets arrive on a view other seats' bets moved
	// on). It plays the first two tables while they are fresh: bots leave
	// mid-round when a run ends, and a round then waits out their turns.
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"bench", "tables", "--target", player, "--data-dir", dataDir, "--tables", "2", "--players-per-table", "3", "--duration", "3s", "--think", "100ms", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench tables --think: %v\n%s", err, errb.String())
	}
	var res tablesBenchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench output %q: %v", out.String(), err)
	}
	if res.Actions == 0 || res.ThinkMs != 100 || res.Errors != 0 || res.P99ms < res.P50ms {
		t.Fatalf("bench --think result %+v\n%s", res, errb.String())
	}
	// Without think time, over all four tables (the last two fresh).
	out.Reset()
	errb.Reset()
	err = run(context.Background(), []string{"bench", "tables", "--target", player, "--admin", admin, "--data-dir", dataDir, "--tables", "4", "--players-per-table", "2", "--warmup", "1s", "--duration", "2s", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench tables: %v\n%s", err, errb.String())
	}
	res = tablesBenchResult{}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench output %q: %v", out.String(), err)
	}
	// Measured after the warm-up: the duration is the measured part only.
	// With --admin it says how much audit it left behind (here, with four
	// tables, a relay batch at most).
	if res.Actions == 0 || res.ActionsPerS <= 0 || res.P99ms < res.P50ms || res.Tables != 4 || res.Errors != 0 || res.WarmupS != 1 || res.DurationS < 1.9 ||
		res.AuditBacklog == nil || *res.AuditBacklog < 0 || *res.AuditBacklog > 256 {
		t.Fatalf("bench result %+v\n%s", res, errb.String())
	}
	var final table.View
	waitFor(t, "the feed follower reaching the table's state", func() bool {
		if code, body := tableHTTP(t, app, "GET", player+"/v1/tables/"+follow, tok, "", nil, &final); code != 200 {
			t.Fatalf("table: %d %s", code, body)
		}
		mu.Lock()
		defer mu.Unlock()
		return feedErr != nil || (view != nil && view.Seq == final.Seq)
	})
	mu.Lock()
	if feedErr != nil {
		mu.Unlock()
		t.Fatalf("table feed: %v", feedErr)
	}
	got, _ := json.Marshal(view)
	mu.Unlock()
	if want, _ := json.Marshal(final); !bytes.Equal(got, want) {
		t.Fatalf("feed follower ended at\n%s\nthe table is at\n%s", got, want)
	}
	if final.Seq == 0 {
		t.Fatal("the followed table never moved")
	}

	code, _, metrics := get(t, admin+"/metrics", "")
	if code != 200 || !bytes.Contains(metrics, []byte("buzzer_tablefeed_publications_total")) || !bytes.Contains(metrics, []byte("buzzer_table_action_duration_seconds_bucket")) || !bytes.Contains(metrics, []byte("buzzer_table_active_tables 4")) {
		t.Fatalf("metrics:\n%s", grepLines(metrics, "buzzer_table_"))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestTablesConfigValidate(t *testing.T) {
	if err := DefaultTablesConfig().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mut := range map[string]func(*TablesConfig){
		"short lease":    func(c *TablesConfig) { c.LeaseTTL = 500 * time.Millisecond },
		"slow tick":      func(c *TablesConfig) { c.TickInterval = c.LeaseTTL },
		"no claim":       func(c *TablesConfig) { c.ClaimInterval = 0 },
		"negative count": func(c *TablesConfig) { c.Count = -1 },
		"bad redis url":  func(c *TablesConfig) { c.RedisURL = "http://x" },
		"no id prefix":   func(c *TablesConfig) { c.IDPrefix = "" },
		"zero decks":     func(c *TablesConfig) { c.Decks = 0 },
		"short window":   func(c *TablesConfig) { c.BettingWindow = time.Millisecond },
	} {
		c := DefaultTablesConfig()
		mut(&c)
		if err := c.Validate(); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}
