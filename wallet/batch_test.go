package wallet_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

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

// TestGroupTakesWhatQueuedWhileTheStoreWasBusy: requests that queue while
// a group waits for the store to begin its transaction are committed in
// that group, not in one more commit after it.
func TestGroupTakesWhatQueuedWhileTheStoreWasBusy(t *testing.T) {
	const n = 20
	g := &gatedStore{Store: sqlite.NewAuditedWalletStore(enginetest.SQLite(t), "NJ"), gate: make(chan struct{})}
	e := wallettest.NewEnv(t, g, nil)
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
				t.Fatalf("timed out waiting for %s (%d store transactions begun, %d queued)", what, g.calls.Load(), wallet.Queued(e.Svc))
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
	waitFor("the other requests to queue", func() bool { return wallet.Queued(e.Svc) == n })
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

// TestLingerLetsRequestsShareACommit: with a linger, requests that come
// within it of the first share its group's transaction; the group
// starts after the linger, not at once.
func TestLingerLetsRequestsShareACommit(t *testing.T) {
	const n, linger = 10, 400 * time.Millisecond
	g := &gatedStore{Store: sqlite.NewAuditedWalletStore(enginetest.SQLite(t), "NJ"), gate: make(chan struct{})}
	close(g.gate)
	cfg := wallet.DefaultConfig()
	cfg.BatchLinger = linger
	e := wallettest.NewEnv(t, g, &cfg)
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
