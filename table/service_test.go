package table_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

func sit(t *testing.T, svc *table.Service, id, player string, seat int) table.View {
	t.Helper()
	v, err := svc.Sit(context.Background(), id, player, seat)
	if err != nil {
		t.Fatalf("sit %s at %d: %v", player, seat, err)
	}
	return v
}

// checkLog verifies the log is numbered 1..n, that folding it gives the
// stored snapshot, and returns it.
func checkLog(t *testing.T, svc *table.Service, id string) []table.Event {
	t.Helper()
	evs := allEvents(t, svc, id)
	for i, e := range evs {
		if e.Seq != int64(i+1) || e.Table != id {
			t.Fatalf("event %d: seq %d table %s", i, e.Seq, e.Table)
		}
	}
	snap, err := svc.Snapshot(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, fold(t, id, evs)), mustJSON(t, snap); got != want {
		t.Fatalf("folded events:\n%s\nsnapshot:\n%s", got, want)
	}
	return evs
}

// TestRoundsSettleMoney plays many rounds at a two-seat table and checks that
// each player's wallet moved by exactly the table's settlement, that every
// stake and payout happened once, and that the log folds to the snapshot.
func TestRoundsSettleMoney(t *testing.T) {
	r := newRig(1)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj1", tc); err != nil {
		t.Fatal(err)
	}
	players := map[string]int{"alice": 2, "bob": 5}
	for p, seat := range players {
		r.wallet.fund(p, 1_000_000)
		sit(t, svc, "bj1", p, seat)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 60; i++ {
		playRound(t, svc, r.clock, "bj1", tc, rng, 6)
	}
	evs := checkLog(t, svc, "bj1")
	// What each seat put at risk in a round (bets, doubles, splits,
	// insurance) is in its view just before settlement; what came back is in
	// the settlement.
	wagered, returned := map[int]buzzer.Amount{}, map[int]buzzer.Amount{}
	rounds := 0
	v := table.View{Table: "bj1", Round: 1, Phase: table.TableBetting}
	for _, e := range evs {
		if e.Kind == table.EventSettled {
			rounds++
			for _, s := range v.Seats {
				wagered[s.Seat] += s.Insurance
				for _, h := range s.Hands {
					wagered[s.Seat] += h.Stake
				}
			}
			for _, sr := range e.Results {
				returned[sr.Seat] += sr.InsuranceReturn
				for _, h := range sr.Hands {
					returned[sr.Seat] += h.Return
				}
			}
		}
		if err := v.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	if rounds != 60 {
		t.Fatalf("%d rounds settled, want 60", rounds)
	}
	for p, seat := range players {
		want := 1_000_000 - wagered[seat] + returned[seat]
		if got := r.wallet.bal(p); got != want {
			t.Errorf("%s: wallet %d, table says %d (wagered %d, returned %d)", p, got, want, wagered[seat], returned[seat])
		}
	}
	if r.wallet.debits < 120 || r.wallet.credits == 0 {
		t.Fatalf("debits %d credits %d", r.wallet.debits, r.wallet.credits)
	}
}

func TestTimeoutsStandAndDeclineInsurance(t *testing.T) {
	r := newRig(3)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	r.wallet.fund("p", 1_000_000)
	sit(t, svc, "bj", "p", 1)
	sawInsurance := false
	for round := 0; round < 40; round++ {
		// Every decision times out.
		if _, err := svc.Act(ctx, "bj", table.Request{Player: "p", Seat: 1, Action: table.PlaceBet, Amount: 200}); err != nil {
			t.Fatal(err)
		}
		wait(t, svc, r.clock, tc.BettingWindow)
		for {
			v, _ := svc.Snapshot(ctx, "bj")
			if v.Turn == nil {
				break
			}
			// Before the deadline, Tick changes nothing.
			if err := svc.Tick(ctx, "bj"); err != nil {
				t.Fatal(err)
			}
			if v2, _ := svc.Snapshot(ctx, "bj"); v2.Seq != v.Seq {
				t.Fatal("tick before the deadline changed the table")
			}
			wait(t, svc, r.clock, tc.ActionTimeout)
		}
	}
	for _, e := range checkLog(t, svc, "bj") {
		if e.Kind != table.EventAction {
			continue
		}
		if !e.Timeout {
			t.Fatalf("action without a player decision not marked as timeout: %+v", e)
		}
		switch e.Action {
		case table.Stand:
		case table.NoInsurance:
			sawInsurance = true
		default:
			t.Fatalf("timeout applied %v, want stand or no_insurance", e.Action)
		}
	}
	if !sawInsurance {
		t.Log("no insurance offered in these rounds")
	}
}

func TestRequestsRefused(t *testing.T) {
	r := newRig(5)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	r.wallet.fund("a", 1000)
	r.wallet.fund("b", 100_000)
	sit(t, svc, "bj", "a", 1)
	sit(t, svc, "bj", "b", 3)
	code := func(err error) string { return buzzer.ErrorCode(err) + "/" + buzzer.ErrorReason(err) }
	cases := []struct {
		name string
		do   func() error
		want string
	}{
		{"seat taken", func() error { _, err := svc.Sit(ctx, "bj", "c", 1); return err }, "conflict/"},
		{"seat out of range", func() error { _, err := svc.Sit(ctx, "bj", "c", 8); return err }, "invalid/"},
		{"bet under the minimum", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Action: table.PlaceBet, Amount: 99})
			return err
		}, "invalid/"},
		{"bet over the balance", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Action: table.PlaceBet, Amount: 5000})
			return err
		}, "conflict/"},
		{"bet from someone else's seat", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "b", Seat: 1, Action: table.PlaceBet, Amount: 100})
			return err
		}, "not_found/"},
		{"hit before the deal", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Action: table.Hit})
			return err
		}, "conflict/not_your_turn"},
		{"stale round", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Round: 7, Action: table.PlaceBet, Amount: 100})
			return err
		}, "conflict/stale_seq"},
		{"stale seq", func() error {
			_, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Seq: 1, Action: table.PlaceBet, Amount: 100})
			return err
		}, "conflict/stale_seq"},
		{"unknown table", func() error { _, err := svc.Sit(ctx, "nope", "a", 1); return err }, "unavailable/not_owner"},
	}
	for _, c := range cases {
		before, _ := svc.Snapshot(ctx, "bj")
		if got := code(c.do()); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
		if after, _ := svc.Snapshot(ctx, "bj"); after.Seq != before.Seq {
			t.Errorf("%s: a refused request changed the table", c.name)
		}
	}
	if r.wallet.bal("a") != 1000 {
		t.Fatalf("refused requests moved money: %d", r.wallet.bal("a"))
	}
	// Out of turn once dealt.
	for _, p := range []struct {
		name string
		seat int
	}{{"a", 1}, {"b", 3}} {
		if _, err := svc.Act(ctx, "bj", table.Request{Player: p.name, Seat: p.seat, Action: table.PlaceBet, Amount: 100}); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, svc, r.clock, tc.BettingWindow)
	v, _ := svc.Snapshot(ctx, "bj")
	if v.Turn != nil {
		other := 4 - v.Turn.Seat // seats 1 and 3
		_, err := svc.Act(ctx, "bj", table.Request{Player: playerAt(v, other), Seat: other, Action: table.Stand})
		if code(err) != "conflict/not_your_turn" {
			t.Fatalf("out of turn: %v", err)
		}
		_, err = svc.Act(ctx, "bj", table.Request{Player: playerAt(v, v.Turn.Seat), Seat: v.Turn.Seat, Seq: v.Seq - 1, Action: table.Stand})
		if code(err) != "conflict/stale_seq" {
			t.Fatalf("stale seq: %v", err)
		}
	}
}

func TestSeatsJoinAndLeaveBetweenRounds(t *testing.T) {
	r := newRig(9)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c"} {
		r.wallet.fund(p, 100_000)
	}
	sit(t, svc, "bj", "a", 1)
	// Bet until a round is dealt that needs decisions (one that settles at
	// the deal, a natural, opens the next round at once).
	var v table.View
	for attempt := 0; ; attempt++ {
		if attempt == 10 {
			t.Fatal("no playable round dealt in 10 tries")
		}
		if _, err := svc.Act(ctx, "bj", table.Request{Player: "a", Seat: 1, Action: table.PlaceBet, Amount: 100}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.Leave(ctx, "bj", "a", 1); buzzer.ErrorCode(err) != buzzer.ECONFLICT {
			t.Fatalf("leaving with a bet placed: %v", err)
		}
		wait(t, svc, r.clock, tc.BettingWindow)
		v, _ = svc.Snapshot(ctx, "bj")
		if v.Phase != table.TableBetting {
			break
		}
	}
	round := v.Round
	// Mid-round: b sits (plays next round), a asks to leave (leaves at the end).
	sit(t, svc, "bj", "b", 4)
	v, err := svc.Leave(ctx, "bj", "a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if s := v.Seats[0]; s.Seat != 1 || !s.Leaving {
		t.Fatalf("seat 1 not marked leaving: %+v", v.Seats)
	}
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "b", Seat: 4, Action: table.Hit}); buzzer.ErrorReason(err) != table.ReasonNotYourTurn {
		t.Fatalf("a seat taken mid-round acted: %v", err)
	}
	for v.Round == round {
		wait(t, svc, r.clock, tc.ActionTimeout)
		v, _ = svc.Snapshot(ctx, "bj")
	}
	if len(v.Seats) != 1 || v.Seats[0].Player != "b" {
		t.Fatalf("after the round: %+v", v.Seats)
	}
	// b, who sat out that round, plays the next.
	if _, err := svc.Act(ctx, "bj", table.Request{Player: "b", Seat: 4, Round: round + 1, Action: table.PlaceBet, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Leave(ctx, "bj", "c", 4); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("someone else freed b's seat: %v", err)
	}
	checkLog(t, svc, "bj")
}

// BenchmarkRound measures one three-seat round (bets, deal, decisions,
// settlement) through the service on the in-memory store.
func BenchmarkRound(b *testing.B) {
	r := newRig(21)
	svc := r.service(b, "n1")
	tc := table.DefaultTableConfig()
	if err := svc.Open(context.Background(), "bj", tc); err != nil {
		b.Fatal(err)
	}
	for seat := 1; seat <= 3; seat++ {
		p := string(rune('a' + seat))
		r.wallet.fund(p, 1<<40)
		v, err := svc.Sit(context.Background(), "bj", p, seat)
		if err != nil {
			b.Fatal(err, v)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Loop() {
		playRound(b, svc, r.clock, "bj", tc, rng, 0)
	}
}

// The decision that ends a round is answered once it is committed, not
// once the round's returns are paid: with the wallet down it still
// succeeds, the returns stay owed with the state, and the next Tick after
// the wallet is back pays each of them once and opens the next round.
func TestRoundEndingDecisionAnswersBeforePayouts(t *testing.T) {
	r := newRig(23)
	svc := r.service(t, "n1")
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	const funds = 1_000_000
	r.wallet.fund("p1", funds)
	sit(t, svc, "bj", "p1", 1)
	setDown := func(down bool) { r.wallet.mu.Lock(); r.wallet.down = down; r.wallet.mu.Unlock() }
	var staked, returned buzzer.Amount
	paidRounds := 0
	for i := 0; i < 60 && paidRounds < 5; i++ {
		v, err := svc.Snapshot(ctx, "bj")
		if err != nil {
			t.Fatal(err)
		}
		round := v.Round
		if _, err := svc.Act(ctx, "bj", table.Request{Player: "p1", Seat: 1, Round: round, Action: table.PlaceBet, Amount: tc.MinBet}); err != nil {
			t.Fatalf("bet: %v", err)
		}
		staked += tc.MinBet
		wait(t, svc, r.clock, tc.BettingWindow)
		if v, err = svc.Snapshot(ctx, "bj"); err != nil {
			t.Fatal(err)
		}
		if v.Turn != nil && v.Turn.Phase == table.TableInsurance {
			if v, err = svc.Act(ctx, "bj", table.Request{Player: "p1", Seat: 1, Round: round, Seq: v.Seq, Action: table.NoInsurance}); err != nil {
				t.Fatalf("no insurance: %v", err)
			}
		}
		if v.Turn != nil && v.Round == round {
			// One seat, one hand: standing ends the round.
			setDown(true)
			end, err := svc.Act(ctx, "bj", table.Request{Player: "p1", Seat: 1, Round: round, Seq: v.Seq, Action: table.Stand})
			if err != nil {
				t.Fatalf("the stand that ends round %d failed with the wallet down: %v", round, err)
			}
			if end.Phase != table.TableSettled || end.Round != round {
				t.Fatalf("after the last stand: round %d phase %s, want round %d settled", end.Round, end.Phase, round)
			}
			for _, h := range end.Seats[0].Hands {
				if h.Return > 0 {
					paidRounds++
				}
			}
			setDown(false)
		}
		// The next Tick pays what is owed (unless the table's payer
		// already did) and opens the next round.
		deadline := time.Now().Add(10 * time.Second)
		for {
			wait(t, svc, r.clock, time.Second)
			if v, err = svc.Snapshot(ctx, "bj"); err != nil {
				t.Fatal(err)
			}
			if v.Round != round {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d never closed: %+v", round, v)
			}
		}
		for _, e := range allEvents(t, svc, "bj") {
			if e.Kind == table.EventSettled && e.Round == round {
				for _, s := range e.Results {
					for _, h := range s.Hands {
						returned += h.Return
					}
				}
			}
		}
	}
	if paidRounds < 5 {
		t.Fatalf("only %d rounds ended with a return owed; the test did not exercise enough", paidRounds)
	}
	if got, want := r.wallet.bal("p1"), funds-staked+returned; got != want {
		t.Fatalf("balance %d, want %d (staked %d, returned %d): a return was lost or paid twice", got, want, staked, returned)
	}
	checkLog(t, svc, "bj")
}

// WaitSnapshot answers the moment the table moves past the sequence number
// the client has seen; with nothing new it answers the unchanged snapshot at
// the end of the wait, and a request that ends first gets a timeout.
func TestWaitSnapshotAnswersOnTheNextChange(t *testing.T) {
	r := newRig(1)
	svc := r.service(t, "n1")
	ctx := context.Background()
	if err := svc.Open(ctx, "bj1", table.DefaultTableConfig()); err != nil {
		t.Fatal(err)
	}
	v0, err := svc.Snapshot(ctx, "bj1")
	if err != nil {
		t.Fatal(err)
	}

	// Already past: at once.
	if v0.Seq > 0 {
		v, err := svc.WaitSnapshot(ctx, "bj1", v0.Seq-1, time.Minute)
		if err != nil || v.Seq != v0.Seq {
			t.Fatalf("past seq: %d, %v; want %d at once", v.Seq, err, v0.Seq)
		}
	}

	// Nothing happens: the same snapshot after the wait.
	start := time.Now()
	v, err := svc.WaitSnapshot(ctx, "bj1", v0.Seq, 50*time.Millisecond)
	if err != nil || v.Seq != v0.Seq {
		t.Fatalf("quiet table: %d, %v; want %d", v.Seq, err, v0.Seq)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("answered after %s, before its wait ran out", waited)
	}

	// A player sits down while the client waits: it sees that seat.
	type res struct {
		v   table.View
		err error
	}
	got := make(chan res, 1)
	go func() {
		v, err := svc.WaitSnapshot(ctx, "bj1", v0.Seq, time.Minute)
		got <- res{v, err}
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	r.wallet.fund("alice", 1_000)
	sat := sit(t, svc, "bj1", "alice", 3)
	select {
	case g := <-got:
		if g.err != nil || g.v.Seq != sat.Seq || tableSeatPlayer(g.v, 3) != "alice" {
			t.Fatalf("after the change: seq %d (want %d), seat 3 %q, %v", g.v.Seq, sat.Seq, tableSeatPlayer(g.v, 3), g.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting client was not woken by the change")
	}

	// The request ends first.
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := svc.WaitSnapshot(cctx, "bj1", sat.Seq, time.Minute); buzzer.ErrorCode(err) != buzzer.ETIMEOUT {
		t.Fatalf("ended request: %v, want a timeout", err)
	}
	// A table this node does not hold: at once.
	if _, err := svc.WaitSnapshot(ctx, "nope", 0, time.Minute); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("unknown table: %v, want not found", err)
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
