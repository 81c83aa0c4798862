package table_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// gatedWallet holds every debit until want debits are in flight at once,
// then lets them all through to the ledger. A table that made its seats'
// debits one after another never gets there: its debits fail with
// EUNAVAILABLE after the wait, and the test sees the bets refused.
type gatedWallet struct {
	*ledger
	want int
	wait time.Duration

	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

func (w *gatedWallet) Debit(ctx context.Context, op table.WalletOp) error {
	w.mu.Lock()
	w.waiting++
	if w.waiting == w.want {
		close(w.open)
	}
	w.mu.Unlock()
	select {
	case <-w.open:
	case <-time.After(w.wait):
		return buzzer.Errorf(buzzer.ECONFLICT, "debit %s was never joined by the other seats' debits", op.Key)
	}
	return w.ledger.Debit(ctx, op)
}

// TestSeatsBetAtOnce: the seats of one table bet at the same moment, each
// on the same view; every debit is in flight at once (none waits behind
// another's wallet call under the table lock), each bet is applied once,
// each stake taken once, and the log stays one ordered sequence.
func TestSeatsBetAtOnce(t *testing.T) {
	const seats = 5
	r := newRig(21)
	gw := &gatedWallet{ledger: r.wallet, want: seats, wait: 5 * time.Second, open: make(chan struct{})}
	svc, err := table.NewService(table.Config{Node: "n1"}, table.Deps{Store: r.store, Wallet: gw, Shuffler: r.shuf, Clock: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	var v table.View
	for i := 1; i <= seats; i++ {
		p := fmt.Sprint("p", i)
		r.wallet.fund(p, 10_000)
		v = sit(t, svc, "bj", p, i)
	}
	errs := make([]error, seats)
	var wg sync.WaitGroup
	for i := 1; i <= seats; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i-1] = svc.Act(ctx, "bj", table.Request{Player: fmt.Sprint("p", i), Seat: i, Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: 100 * buzzer.Amount(i)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("seat %d bet: %v", i+1, err)
		}
	}
	after, _ := svc.Snapshot(ctx, "bj")
	for _, s := range after.Seats {
		if want := 100 * buzzer.Amount(s.Seat); s.Bet != want || r.wallet.bal(s.Player) != 10_000-want {
			t.Errorf("seat %d: bet %d, balance %d; want bet %d taken once", s.Seat, s.Bet, r.wallet.bal(s.Player), want)
		}
	}
	if r.wallet.debits != seats {
		t.Fatalf("%d debits, want %d", r.wallet.debits, seats)
	}
	// A resend of a seat's bet is refused and moves no money.
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "p1", Seat: 1, Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: 100}); buzzer.ErrorCode(err) != buzzer.ECONFLICT {
		t.Fatalf("second bet of seat 1: %v", err)
	}
	if r.wallet.debits != seats {
		t.Fatal("a refused bet moved money")
	}
	playRoundFrom(t, svc, r.clock, "bj", tc)
	checkLog(t, svc, "bj")
}

// playRoundFrom closes the betting window and stands every hand.
func playRoundFrom(t *testing.T, svc *table.Service, c *clock, id string, tc table.TableConfig) {
	t.Helper()
	wait(t, svc, c, tc.BettingWindow)
	for i := 0; ; i++ {
		v, err := svc.Snapshot(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Turn == nil {
			return
		}
		if i > 50 {
			t.Fatal("round does not end")
		}
		wait(t, svc, c, tc.ActionTimeout)
	}
}

// TestStaleBetRule: a bet made on a view that other seats' bets of the same
// round have moved on is still the same bet and is taken; one made before a
// seat came or went, or in another round, is refused as stale.
func TestStaleBetRule(t *testing.T) {
	r := newRig(22)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c"} {
		r.wallet.fund(p, 10_000)
	}
	sit(t, svc, "bj", "a", 1)
	before := sit(t, svc, "bj", "b", 2) // a's and b's view
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "b", Seat: 2, Round: before.Round, Seq: before.Seq, Action: table.PlaceBet, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	// a bets on the view from before b's bet: taken.
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Round: before.Round, Seq: before.Seq, Action: table.PlaceBet, Amount: 100}); err != nil {
		t.Fatalf("bet on a view older only by another seat's bet: %v", err)
	}
	// b sends its bet again on the same view: refused as stale (the
	// transport then recognises the resend), not applied twice.
	_, err := svc.Act(ctx, "bj", table.Request{Player: "b", Seat: 2, Round: before.Round, Seq: before.Seq, Action: table.PlaceBet, Amount: 100})
	if buzzer.ErrorReason(err) != table.ReasonStaleSeq {
		t.Fatalf("resent bet: %v", err)
	}
	// c sits, then bets on the view from before it sat: refused.
	sit(t, svc, "bj", "c", 3)
	_, err = svc.Act(ctx, "bj", table.Request{Player: "c", Seat: 3, Round: before.Round, Seq: before.Seq, Action: table.PlaceBet, Amount: 100})
	if buzzer.ErrorReason(err) != table.ReasonStaleSeq {
		t.Fatalf("bet on a view older than a seat change: %v", err)
	}
	// Another round's view: refused.
	_, err = svc.Act(ctx, "bj", table.Request{Player: "c", Seat: 3, Round: before.Round + 1, Action: table.PlaceBet, Amount: 100})
	if buzzer.ErrorReason(err) != table.ReasonStaleSeq {
		t.Fatalf("bet on another round: %v", err)
	}
	if r.wallet.bal("c") != 10_000 || r.wallet.debits != 2 {
		t.Fatalf("refused bets moved money: c has %d, %d debits", r.wallet.bal("c"), r.wallet.debits)
	}
	checkLog(t, svc, "bj")
}

// TestBetIntentSurvivesNodeDeath: a bet's debit goes through but its reply
// is lost, and the node dies before it can apply the bet. The node taking
// the table over finds the stored intent, finishes it with the same key
// (no second charge) and the bet plays.
func TestBetIntentSurvivesNodeDeath(t *testing.T) {
	r := newRig(23)
	a := r.service(t, "node-a")
	b := r.service(t, "node-b")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := a.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	r.wallet.fund("p", 10_000)
	v := sit(t, a, "bj", "p", 1)
	r.wallet.loseReply = true
	_, err := a.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: 700})
	if buzzer.ErrorReason(err) != table.ReasonInFlight {
		t.Fatalf("bet with a lost wallet reply: %v", err)
	}
	if got, _ := a.Snapshot(ctx, "bj"); got.Seats[0].Bet != 0 {
		t.Fatal("a bet was applied without a confirmed debit")
	}
	// A dies; B takes over once the lease lapses.
	r.clock.Advance(11 * time.Second)
	if err := b.Open(ctx, "bj", tc); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	got, _ := b.Snapshot(ctx, "bj")
	if got.Seats[0].Bet != 700 || r.wallet.bal("p") != 9_300 || r.wallet.debits != 1 {
		t.Fatalf("after takeover: bet %d, balance %d, %d debits; want the bet applied, taken once", got.Seats[0].Bet, r.wallet.bal("p"), r.wallet.debits)
	}
	playRoundFrom(t, b, r.clock, "bj", tc)
	checkLog(t, b, "bj")
}
