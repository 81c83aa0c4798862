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
