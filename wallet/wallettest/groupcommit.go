package wallettest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// faultyPrices fails every quote of one market while fail is set, as a
// price source whose backend is down would.
type faultyPrices struct {
	*Prices
	market string
	fail   atomic.Bool
}

func (p *faultyPrices) Quote(ctx context.Context, event, market, selection string) (wallet.Quote, error) {
	if market == p.market && p.fail.Load() {
		return wallet.Quote{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "prices are down")
	}
	return p.Prices.Quote(ctx, event, market, selection)
}

// testGroupCommit sends many requests at once through one lane, so that
// they share batches: accepted bets, refusals (no funds, resulted market),
// a fault of one member (its price source is down), and pairs sent twice.
// Each must get its own answer as if it ran alone: a refusal or a fault
// never takes the rest of its batch down, refusals are stored and replayed,
// a fault is not stored (the key runs fresh later), and a pair gives one
// effect and one byte-identical answer.
func testGroupCommit(t *testing.T, s wallet.Store) {
	cfg := wallet.DefaultConfig()
	cfg.BatchLanes = 1
	cfg.EffectTimeout = 2 * time.Minute // see testOneKeyMany
	prices := &faultyPrices{Prices: NewPrices(), market: "m3"}
	prices.Open("ev1", "m1", "s1", 20000)
	prices.Open("ev2", "m2", "s1", 15000)
	prices.Open("ev3", "m3", "s1", 30000)
	prices.fail.Store(true)
	clock := NewClock(T0)
	svc, err := wallet.New(cfg, wallet.Deps{Store: s, Prices: prices, Clock: clock, Sleep: clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const rich = 8
	for p := 0; p < rich; p++ {
		if _, err := svc.Deposit(ctx, fmt.Sprint("r", p), "fund", wallet.MoneyRequest{Amount: 100_000, Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.SettleMarket(ctx, "m2", wallet.SettleRequest{ResultVersion: 1,
		Outcomes: []wallet.Outcome{{SelectionID: "s1", Result: wallet.ResultWon}}}, "op"); err != nil {
		t.Fatal(err)
	}
	type call struct {
		player, key string
		req         wallet.PlaceBetRequest
		resp        *wallet.Response
		err         error
	}
	var calls []*call
	for i := 0; i < 96; i++ {
		c := &call{player: fmt.Sprint("r", i%rich), key: fmt.Sprint("k", i), req: single("ev1", "m1", "s1", 20000, 100)}
		switch i % 6 {
		case 1:
			c.player = fmt.Sprint("poor", i)
		case 2:
			c.req = single("ev2", "m2", "s1", 15000, 100)
		case 3:
			c.req = single("ev3", "m3", "s1", 30000, 100)
		case 4:
			twin := *c // the same request sent twice at once
			calls = append(calls, &twin)
		}
		calls = append(calls, c)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c.resp, c.err = svc.PlaceBet(ctx, c.player, c.key, c.req)
		}()
	}
	close(start)
	wg.Wait()
	fresh := map[string]int{}
	bodies := map[string]map[string]bool{}
	for _, c := range calls {
		id := c.player + "/" + c.key
		switch {
		case c.req.Legs[0].MarketID == "m3":
			wantCode(t, c.err, buzzer.EUNAVAILABLE, "")
		case strings.HasPrefix(c.player, "poor"):
			wantCode(t, c.err, buzzer.EUNPROCESSABLE, "insufficient_funds")
		case c.req.Legs[0].MarketID == "m2":
			wantCode(t, c.err, buzzer.EUNPROCESSABLE, "market_not_open")
		default:
			if c.err != nil || c.resp.Status != 201 {
				t.Fatalf("%s: %+v %v", id, c.resp, c.err)
			}
			if !c.resp.Replayed {
				fresh[id]++
			}
			if bodies[id] == nil {
				bodies[id] = map[string]bool{}
			}
			bodies[id][string(c.resp.Body)] = true
		}
	}
	bets := 0
	for id, bs := range bodies {
		if fresh[id] != 1 || len(bs) != 1 {
			t.Fatalf("%s: %d fresh effects and %d distinct bodies, want 1 and 1", id, fresh[id], len(bs))
		}
		bets++
	}
	var cash buzzer.Amount
	for p := 0; p < rich; p++ {
		as, err := svc.Balances(ctx, fmt.Sprint("r", p))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if a.Kind == wallet.KindCash {
				cash += a.Balance
			}
		}
	}
	if want := buzzer.Amount(rich*100_000 - bets*100); cash != want {
		t.Fatalf("players hold %d, want %d after %d bets", cash, want, bets)
	}
	// Refusals were stored with their keys and replay identically; the
	// fault was not, so once prices are back the same key runs fresh.
	prices.fail.Store(false)
	for _, c := range calls {
		r, err := svc.PlaceBet(ctx, c.player, c.key, c.req)
		switch {
		case c.req.Legs[0].MarketID == "m3":
			if err != nil || r.Replayed {
				t.Fatalf("%s/%s after the fault: %+v %v", c.player, c.key, r, err)
			}
			bets++
		case c.err != nil:
			if buzzer.ErrorReason(err) != buzzer.ErrorReason(c.err) || buzzer.ErrorMessage(err) != buzzer.ErrorMessage(c.err) {
				t.Fatalf("%s/%s refusal replayed as %v, first %v", c.player, c.key, err, c.err)
			}
		default:
			if err != nil || !r.Replayed || !bytes.Equal(r.Body, c.resp.Body) {
				t.Fatalf("%s/%s replay: %+v %v", c.player, c.key, r, err)
			}
		}
	}
	rep := MustCheck(t, s)
	if rep.Bets != bets {
		t.Fatalf("checker saw %d bets, want %d", rep.Bets, bets)
	}
}

// gatedStore is a real store whose transactions, once armed, wait at the
// gate before they begin: the store's writer busy with someone else.
type gatedStore struct {
	wallet.Store
	armed atomic.Bool
	gate  chan struct{}
	calls atomic.Int32
}

func (g *gatedStore) InTx(ctx context.Context, fn func(wallet.Tx) error) error {
	if g.armed.Load() {
		g.calls.Add(1)
		<-g.gate
	}
	return g.Store.InTx(ctx, fn)
}

// testGroupTakesQueued: requests that queue while
// a group waits for the store to begin its transaction are committed in
// that group, not in one more commit after it.
func testGroupTakesQueued(t *testing.T, s wallet.Store) {
	const n = 20
	g := &gatedStore{Store: s, gate: make(chan struct{})}
	e := NewEnv(t, g, nil)
	for p := range n {
		e.Deposit(t, fmt.Sprint("gp", p), 10_000)
	}
	g.armed.Store(true)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, n)
	stake := func(p int) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("bj-g:%d:1:bet", p)
			_, errs[p] = e.Svc.TableStake(ctx, fmt.Sprint("gp", p), key, wallet.TableMoneyRequest{Amount: 300, Currency: "USD", Reference: key})
		}()
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d store transactions begun, %d queued)", what, g.calls.Load(), e.Svc.Queued())
			}
		}
	}
	stake(0)
	waitFor("the first group to wait for the store", func() bool { return g.calls.Load() == 1 })
	for p := 1; p < n; p++ {
		stake(p)
	}
	// Every request is still queued, the first one too: a group takes its
	// members once its transaction has begun.
	waitFor("the other requests to queue", func() bool { return e.Svc.Queued() == n })
	close(g.gate)
	wg.Wait()
	for p, err := range errs {
		if err != nil {
			t.Fatalf("stake %d: %v", p, err)
		}
	}
	if c := g.calls.Load(); c != 1 {
		t.Fatalf("%d store transactions for %d requests that were all queued when the first began; want 1", c, n)
	}
	for p := range n {
		if got := e.Cash(t, fmt.Sprint("gp", p)); got != 9_700 {
			t.Fatalf("player %d has %d after one stake of 300 from 10,000", p, got)
		}
	}
}

// testGroupLinger: with a linger, requests that come
// within it of the first share its group's transaction; the group
// starts after the linger, not at once.
func testGroupLinger(t *testing.T, s wallet.Store) {
	const n, linger = 10, 400 * time.Millisecond
	g := &gatedStore{Store: s, gate: make(chan struct{})}
	close(g.gate)
	cfg := wallet.DefaultConfig()
	cfg.BatchLinger = linger
	e := NewEnv(t, g, &cfg)
	var deposits sync.WaitGroup
	for p := range n {
		deposits.Go(func() { e.Deposit(t, fmt.Sprint("lp", p), 10_000) })
	}
	deposits.Wait()
	g.armed.Store(true)
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for p := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("bj-l:%d:1:bet", p)
			_, errs[p] = e.Svc.TableStake(ctx, fmt.Sprint("lp", p), key, wallet.TableMoneyRequest{Amount: 300, Currency: "USD", Reference: key})
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for p, err := range errs {
		if err != nil {
			t.Fatalf("stake %d: %v", p, err)
		}
	}
	if c := g.calls.Load(); c != 1 {
		t.Fatalf("%d store transactions for %d requests sent together with a %s linger; want 1", c, n, linger)
	}
	if took < linger {
		t.Fatalf("the group committed after %s, before its %s linger", took, linger)
	}
}
