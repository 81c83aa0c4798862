package audit

import (
	"context"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// memOutbox is an Outbox over a slice, with the engines' sequence rule
// (one counter per stream key, Prepare on write).
type memOutbox struct {
	seqs map[string]uint64
	recs []*Record
}

func (o *memOutbox) LastSeq(_ context.Context, j string, c Component, key string) (uint64, error) {
	r := Record{Jurisdiction: j, Component: c, Key: key}
	return o.seqs[r.StreamKey()], nil
}

func (o *memOutbox) Write(_ context.Context, recs ...*Record) error {
	for _, r := range recs {
		next := o.seqs[r.StreamKey()] + 1
		b, err := Prepare(r, next, time.Date(2026, 2, 9, 0, 0, 0, 0, time.UTC))
		if err != nil {
			return err
		}
		if _, err := DecodeCanonical(b); err != nil {
			return err
		}
		o.seqs[r.StreamKey()] = next
		o.recs = append(o.recs, r)
	}
	return nil
}

// The capture helpers emit exactly what Replay accepts: a deposit, a bet,
// its settlement and resettlement, and a market result rebuild the same
// balances and bet state the wallet holds.
func TestCaptureFollowsThePayloadContract(t *testing.T) {
	ctx := context.Background()
	ob := &memOutbox{seqs: map[string]uint64{}}
	at := time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)
	cash := wallet.AccountKey{Owner: "p1", Jurisdiction: "NJ", Currency: "USD", Kind: wallet.KindCash}
	clearing := wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "NJ", Currency: "USD", Kind: wallet.KindDepositsClearing, Bucket: 3}
	held := wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "NJ", Currency: "USD", Kind: wallet.KindStakesHeld, Bucket: 1}
	payouts := wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "NJ", Currency: "USD", Kind: wallet.KindPayouts, Bucket: 2}
	revenue := wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "NJ", Currency: "USD", Kind: wallet.KindRevenue, Bucket: 2}
	txn := func(id string, kind wallet.TxnKind, ps ...wallet.Posting) {
		t.Helper()
		if err := CaptureTransaction(ctx, ob, &wallet.Transaction{ID: id, Kind: kind, Player: "p1", Reference: "b1", EffectKey: "e-" + id, CreatedAt: at, Postings: ps}); err != nil {
			t.Fatal(err)
		}
	}
	txn("t1", wallet.TxnDeposit, wallet.Posting{Account: cash, Amount: 1000}, wallet.Posting{Account: clearing, Amount: -1000})
	txn("t2", wallet.TxnBetPlaced, wallet.Posting{Account: cash, Amount: -100}, wallet.Posting{Account: held, Amount: 100})
	bet := &wallet.Bet{ID: "b1", Player: "p1", Jurisdiction: "NJ", Currency: "USD", Stake: 100, PotentialPayout: 250, Status: wallet.BetOpen,
		PlacedAt: at, PlacementTxn: "t2", Legs: []wallet.Leg{{EventID: "ev", MarketID: "m1", SelectionID: "s1", Price: 25000}}}
	if err := CaptureBetPlaced(ctx, ob, bet); err != nil {
		t.Fatal(err)
	}
	if err := CaptureMarketResult(ctx, ob, "NJ", &wallet.MarketResult{MarketID: "m1", ResultVersion: 1, Outcomes: []wallet.Outcome{{SelectionID: "s1", Result: wallet.ResultWon, VoidFactor: 0, DeadHeatFactor: wallet.FactorOne}}, UpdatedAt: at}); err != nil {
		t.Fatal(err)
	}
	// Marking the version done is no new result.
	if err := CaptureMarketResult(ctx, ob, "NJ", &wallet.MarketResult{MarketID: "m1", ResultVersion: 1, Done: true}); err != nil {
		t.Fatal(err)
	}
	txn("t3", wallet.TxnBetSettled, wallet.Posting{Account: cash, Amount: 250}, wallet.Posting{Account: held, Amount: -100},
		wallet.Posting{Account: revenue, Amount: 100}, wallet.Posting{Account: payouts, Amount: -250})
	settledAt := at.Add(time.Hour)
	bet.Status, bet.Payout, bet.SettledAt, bet.SettledBy = wallet.BetSettled, 250, &settledAt, "feed"
	if err := CaptureBetUpdated(ctx, ob, bet); err != nil {
		t.Fatal(err)
	}
	// Resettled as lost.
	txn("t4", wallet.TxnBetSettled, wallet.Posting{Account: cash, Amount: -250}, wallet.Posting{Account: payouts, Amount: 250})
	bet.Payout = 0
	if err := CaptureBetUpdated(ctx, ob, bet); err != nil {
		t.Fatal(err)
	}
	if err := CaptureBetUpdated(ctx, ob, &wallet.Bet{ID: "never-placed", Jurisdiction: "NJ"}); buzzer.ErrorReason(err) != "audit_capture_out_of_order" {
		t.Fatalf("update of an uncaptured bet: %v", err)
	}

	st := NewState()
	ids := map[string]bool{}
	for _, r := range ob.recs {
		if ids[r.ID] {
			t.Fatalf("id %s given twice", r.ID)
		}
		ids[r.ID] = true
		if err := st.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]buzzer.Amount{cash.ID(): 900, clearing.ID(): -1000, held.ID(): 0, revenue.ID(): 100, payouts.ID(): 0}
	for k, v := range want {
		if st.Balances[k] != v {
			t.Errorf("balance %s = %d, want %d", k, st.Balances[k], v)
		}
	}
	if b := st.Bets["b1"]; b != (BetState{Player: "p1", Currency: "USD", Stake: 100, Status: "settled", Payout: 0, Revision: 2}) {
		t.Fatalf("bet %+v", b)
	}
	if st.Markets["m1"] != 1 || st.Transactions != 4 || len(ob.recs) != 8 {
		t.Fatalf("markets %v, %d transactions, %d records", st.Markets, st.Transactions, len(ob.recs))
	}
	if ob.recs[len(ob.recs)-1].Time != settledAt {
		t.Fatalf("settlement time %v", ob.recs[len(ob.recs)-1].Time)
	}
}

func TestPrepare(t *testing.T) {
	now := time.Date(2026, 2, 9, 1, 2, 3, 0, time.FixedZone("X", 3600))
	r := &Record{Jurisdiction: "NJ", Component: ComponentTable, Key: "t1", Type: "table.event", Payload: []byte(`{}`)}
	b, err := Prepare(r, 7, now)
	if err != nil {
		t.Fatal(err)
	}
	r2 := &Record{Jurisdiction: "NJ", Component: ComponentTable, Key: "t1", Type: "table.event", Payload: []byte(`{}`)}
	b2, _ := Prepare(r2, 7, now)
	if r.Seq != 7 || r.ID == "" || r.ID != r2.ID || string(b) != string(b2) || !r.Time.Equal(now) || r.Time.Location() != time.UTC {
		t.Fatalf("prepared %+v", r)
	}
	r3 := &Record{Jurisdiction: "NJ", Component: ComponentTable, Key: "t1", Type: "table.event", Payload: []byte(`{}`)}
	if b3, _ := Prepare(r3, 8, now); string(b3) == string(b) || r3.ID == r.ID {
		t.Fatal("the next sequence got the same id")
	}
	if _, err := Prepare(&Record{Jurisdiction: "NJ", Component: ComponentRNG, Key: "l", Seq: 3, Type: "rng.draw", Payload: []byte(`{}`)}, 2, now); buzzer.ErrorReason(err) != "audit_capture_out_of_order" {
		t.Fatalf("seq out of turn: %v", err)
	}
}
