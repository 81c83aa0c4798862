package table_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// slowWallet holds every movement of one table until released, as a wallet
// stuck behind a slow database would.
type slowWallet struct {
	table.Wallet
	slow    string
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *slowWallet) hold(op table.WalletOp) {
	if op.Table != w.slow {
		return
	}
	w.once.Do(func() { close(w.entered) })
	<-w.release
}

func (w *slowWallet) Debit(ctx context.Context, op table.WalletOp) error {
	w.hold(op)
	return w.Wallet.Debit(ctx, op)
}

func (w *slowWallet) Credit(ctx context.Context, op table.WalletOp) error {
	w.hold(op)
	return w.Wallet.Credit(ctx, op)
}

// renewSpy reports each successful renewal of one table's lease.
type renewSpy struct {
	table.Store
	table   string
	renewed chan table.Lease
}

func (s renewSpy) Renew(ctx context.Context, l table.Lease, ttl time.Duration) (table.Lease, error) {
	nl, err := s.Store.Renew(ctx, l, ttl)
	if err == nil && l.Table == s.table {
		select {
		case s.renewed <- nl:
		default:
		}
	}
	return nl, err
}

// within waits for ch or fails after a generous hang guard (not a speed
// target: the awaited step needs no more than a few store calls).
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: did not happen", what)
		panic("unreachable")
	}
}

// TestLeaseSurvivesSlowWallet: a bet holds the table while its wallet debit
// takes longer than half the lease TTL. The lease must be renewed meanwhile
// (by Tick, and by Run's renewal loop) so that another node cannot take the
// table when the original lease would have run out, and the bet must then
// complete on this node, debited once. Run must also keep dealing at another
// table of the same node while the slow one waits.
func TestLeaseSurvivesSlowWallet(t *testing.T) {
	for _, driver := range []string{"Tick", "Run"} {
		t.Run(driver, func(t *testing.T) {
			r := newRig(21)
			spy := renewSpy{Store: r.store, table: "bj-a", renewed: make(chan table.Lease, 16)}
			w := &slowWallet{Wallet: r.wallet, slow: "bj-a", entered: make(chan struct{}), release: make(chan struct{})}
			var releaseOnce sync.Once
			release := func() { releaseOnce.Do(func() { close(w.release) }) }
			defer release()
			const ttl = 10 * time.Second
			svc, err := table.NewService(table.Config{Node: "n1", LeaseTTL: ttl}, table.Deps{Store: spy, Wallet: w, Shuffler: r.shuf, Clock: r.clock})
			if err != nil {
				t.Fatal(err)
			}
			other, err := table.NewService(table.Config{Node: "n2", LeaseTTL: ttl}, table.Deps{Store: r.store, Wallet: r.wallet, Shuffler: r.shuf, Clock: r.clock})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			tc := table.DefaultTableConfig()
			tc.BettingWindow = 6 * time.Second // more than half the TTL, less than all of it
			for _, id := range []string{"bj-a", "bj-b"} {
				if err := svc.Open(ctx, id, tc); err != nil {
					t.Fatal(err)
				}
				r.wallet.fund(id+"-p", 100_000)
				sit(t, svc, id, id+"-p", 1)
			}
			// bj-b has a bet in and its betting window is about to close.
			if _, err := svc.Act(ctx, "bj-b", table.Request{Player: "bj-b-p", Seat: 1, Action: table.PlaceBet, Amount: 500}); err != nil {
				t.Fatal(err)
			}

			acted := make(chan error, 1)
			go func() {
				_, err := svc.Act(ctx, "bj-a", table.Request{Player: "bj-a-p", Seat: 1, Action: table.PlaceBet, Amount: 700})
				acted <- err
			}()
			within(t, w.entered, "the bet's debit reaching the wallet")

			// More than half the TTL passes while the debit is held, and
			// bj-b's betting window closes.
			r.clock.Advance(tc.BettingWindow)
			var runCtx context.Context
			stop := func() {}
			ran := make(chan struct{})
			switch driver {
			case "Tick":
				go func() { _ = svc.Tick(ctx, "bj-a") }() // returns once the debit is released
				close(ran)
			case "Run":
				runCtx, stop = context.WithCancel(ctx)
				go func() { defer close(ran); svc.Run(runCtx, 5*time.Millisecond) }()
			}
			defer func() { release(); stop(); <-ran }()
			l := within(t, spy.renewed, "a lease renewal while the wallet call holds the table")
			if want := r.clock.Now().Add(ttl); l.Expires.Before(want) {
				t.Fatalf("renewed to %v, want at least %v", l.Expires, want)
			}
			if driver == "Run" {
				// The other table is dealt although bj-a's tick is stuck.
				deadline := time.Now().Add(10 * time.Second)
				for {
					v, err := svc.Snapshot(ctx, "bj-b")
					if err != nil {
						t.Fatal(err)
					}
					if v.Phase != table.TableBetting || v.Round > 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("bj-b was not dealt while bj-a waited on the wallet")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}

			// Past the first lease's expiry: the table is still held.
			r.clock.Advance(ttl - tc.BettingWindow + time.Second)
			if err := other.Open(ctx, "bj-a", tc); buzzer.ErrorReason(err) != table.ReasonLeaseHeld {
				t.Fatalf("another node opened bj-a while its owner waited on the wallet: %v", err)
			}
			release()
			if err := within(t, acted, "the bet"); err != nil {
				t.Fatalf("the bet after a slow wallet: %v", err)
			}
			v, err := svc.Snapshot(ctx, "bj-a")
			if err != nil {
				t.Fatal(err)
			}
			if v.Seats[0].Bet != 700 || r.wallet.bal("bj-a-p") != 100_000-700 {
				t.Fatalf("bet %d, balance %d: want one debit of 700", v.Seats[0].Bet, r.wallet.bal("bj-a-p"))
			}
			if got := svc.Owned(); len(got) != 2 {
				t.Fatalf("the node holds %v, want both tables", got)
			}
		})
	}
}
