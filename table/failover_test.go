package table_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// TestFailoverMidRound: node A runs a round; its wallet reply for a double is
// lost after the money moved, and A dies before writing the action. Node B
// takes the table over once A's lease lapses, finishes the double with the
// same idempotency key (no second charge), completes the round and pays each
// payout once. A, waking up, is fenced out: its writes are refused by the
// store and move no money.
func TestFailoverMidRound(t *testing.T) {
	r := newRig(11)
	a := r.service(t, "node-a")
	b := r.service(t, "node-b")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := a.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	if err := b.Open(ctx, "bj", tc); buzzer.ErrorReason(err) != table.ReasonLeaseHeld {
		t.Fatalf("second node opened a held table: %v", err)
	}
	r.wallet.fund("p", 100_000)
	sit(t, a, "bj", "p", 1)

	// Deal rounds on A until the player has a two-card hand to double.
	var v table.View
	for attempt := 0; ; attempt++ {
		if attempt == 50 {
			t.Fatal("no doubling chance dealt")
		}
		if _, err := a.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Action: table.PlaceBet, Amount: 1000}); err != nil {
			t.Fatal(err)
		}
		wait(t, a, r.clock, tc.BettingWindow)
		v, _ = a.Snapshot(ctx, "bj")
		if v.Turn != nil && v.Turn.Phase == table.TablePlayers && hasAction(v.Turn.Actions, table.DoubleDown) {
			break
		}
		for v.Turn != nil {
			wait(t, a, r.clock, tc.ActionTimeout)
			v, _ = a.Snapshot(ctx, "bj")
		}
	}
	balBefore := r.wallet.bal("p")
	debitsBefore := r.wallet.debits

	r.wallet.loseReply = true
	_, err := a.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Round: v.Round, Seq: v.Seq, Action: table.DoubleDown})
	if buzzer.ErrorReason(err) != table.ReasonInFlight {
		t.Fatalf("double with a lost wallet reply: %v", err)
	}
	if r.wallet.bal("p") != balBefore-1000 || r.wallet.debits != debitsBefore+1 {
		t.Fatal("the wallet should have taken the double once")
	}
	// A dies here (no more calls on a). B takes over after the lease lapses.
	r.clock.Advance(11 * time.Second)
	if err := b.Open(ctx, "bj", tc); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	if r.wallet.debits != debitsBefore+1 {
		t.Fatalf("takeover charged the double again: %d debits", r.wallet.debits-debitsBefore)
	}
	vb, err := b.Snapshot(ctx, "bj")
	if err != nil {
		t.Fatal(err)
	}
	if vb.Round == v.Round {
		// The round is still running (the double may not have ended it,
		// e.g. with another seat to play); finish it.
		for vb.Round == v.Round {
			wait(t, b, r.clock, tc.ActionTimeout)
			vb, _ = b.Snapshot(ctx, "bj")
		}
	}
	evs := checkLog(t, b, "bj")
	var settled *table.Event
	doubles := 0
	for i := range evs {
		e := &evs[i]
		if e.Round != v.Round {
			continue
		}
		if e.Kind == table.EventAction && e.Action == table.DoubleDown {
			doubles++
		}
		if e.Kind == table.EventSettled {
			settled = e
		}
	}
	if doubles != 1 || settled == nil {
		t.Fatalf("round %d: %d double events, settled %v", v.Round, doubles, settled != nil)
	}
	ret := settled.Results[0].Hands[0].Return
	payoutKey := table.WalletKey("bj", v.Round, 1, "payout")
	_, paid := r.wallet.applied[payoutKey]
	if paid != (ret > 0) {
		t.Fatalf("payout of %d: paid=%v", ret, paid)
	}
	if got, want := r.wallet.bal("p"), balBefore-1000+ret; got != want {
		t.Fatalf("balance %d, want %d (each stake and payout exactly once)", got, want)
	}

	// A wakes up with its old lease and tries to act: fenced out.
	debits := r.wallet.debits
	_, err = a.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Action: table.PlaceBet, Amount: 1000})
	if buzzer.ErrorReason(err) != table.ReasonNotOwner {
		t.Fatalf("stale node acted: %v", err)
	}
	if r.wallet.debits != debits {
		t.Fatal("the stale node moved money")
	}
	if len(a.Owned()) != 0 {
		t.Fatalf("stale node still thinks it owns %v", a.Owned())
	}
	// And a raw write with A's epoch is refused by the store itself.
	stored, _ := r.store.Load(ctx, "bj")
	_, err = r.store.Write(ctx, table.Write{Lease: table.Lease{Table: "bj", Owner: "node-a", Epoch: stored.Epoch - 1}, Version: stored.Version, State: []byte("{}")})
	if buzzer.ErrorReason(err) != table.ReasonStaleEpoch {
		t.Fatalf("stale-epoch write: %v", err)
	}
	// B keeps playing.
	playRound(t, b, r.clock, "bj", tc, rand.New(rand.NewPCG(1, 1)), 0)
	checkLog(t, b, "bj")
}

func hasAction(as []table.Action, a table.Action) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

// TestWalletDownFailsClosed: with the wallet unavailable a bet is not taken
// and not applied; once it is back, the stored intent is finished by Tick.
func TestWalletDownFailsClosed(t *testing.T) {
	r := newRig(13)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	r.wallet.fund("p", 10_000)
	sit(t, svc, "bj", "p", 1)
	r.wallet.down = true
	_, err := svc.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Action: table.PlaceBet, Amount: 500})
	if buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("bet with the wallet down: %v", err)
	}
	v, _ := svc.Snapshot(ctx, "bj")
	if v.Seats[0].Bet != 0 || r.wallet.bal("p") != 10_000 {
		t.Fatal("a bet was applied without the wallet")
	}
	// Other requests wait for the unresolved stake rather than overtake it.
	if _, err := svc.Sit(ctx, "bj", "q", 2); err != nil {
		t.Fatal(err) // seating moves no money and is not blocked
	}
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "q", Seat: 2, Action: table.PlaceBet, Amount: 500}); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("a second stake overtook an unresolved one: %v", err)
	}
	r.wallet.down = false
	if err := svc.Tick(ctx, "bj"); err != nil {
		t.Fatal(err)
	}
	v, _ = svc.Snapshot(ctx, "bj")
	if v.Seats[0].Bet != 500 || r.wallet.bal("p") != 9_500 {
		t.Fatalf("bet after recovery: %+v, balance %d", v.Seats[0], r.wallet.bal("p"))
	}
	checkLog(t, svc, "bj")
}
