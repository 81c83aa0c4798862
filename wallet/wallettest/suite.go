package wallettest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// T0 is the suite's starting time.
var T0 = time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)

// Env is a wallet service over a store with a settable clock and prices.
type Env struct {
	Svc    *wallet.Service
	Store  wallet.Store
	Prices *Prices
	Clock  *Clock
}

// NewEnv builds a service on store with cfg (zero Config: defaults) and a
// catalog of two football events: ev1/m1 (s1 2.0, s2 3.5, s3 4.0) and
// ev2/m2 (s1 1.5, s2 2.5), both open pre-match.
func NewEnv(t testing.TB, store wallet.Store, cfg *wallet.Config) *Env {
	t.Helper()
	c := wallet.DefaultConfig()
	if cfg != nil {
		c = *cfg
	}
	e := &Env{Store: store, Prices: NewPrices(), Clock: NewClock(T0)}
	e.Prices.Open("ev1", "m1", "s1", 20000)
	e.Prices.Open("ev1", "m1", "s2", 35000)
	e.Prices.Open("ev1", "m1", "s3", 40000)
	e.Prices.Open("ev2", "m2", "s1", 15000)
	e.Prices.Open("ev2", "m2", "s2", 25000)
	svc, err := wallet.New(c, wallet.Deps{Store: store, Prices: e.Prices, Clock: e.Clock, Sleep: e.Clock.Sleep})
	if err != nil {
		t.Fatal(err)
	}
	e.Svc = svc
	return e
}

// Deposit deposits amount USD for player or fails the test.
func (e *Env) Deposit(t testing.TB, player string, amount buzzer.Amount) {
	t.Helper()
	if _, err := e.Svc.Deposit(context.Background(), player, "dep-"+fmt.Sprint(time.Now().UnixNano()), wallet.MoneyRequest{Amount: amount, Currency: "USD"}); err != nil {
		t.Fatalf("deposit: %v", err)
	}
}

// Cash returns player's USD cash balance.
func (e *Env) Cash(t testing.TB, player string) buzzer.Amount {
	t.Helper()
	as, err := e.Svc.Balances(context.Background(), player)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range as {
		if a.Kind == wallet.KindCash && a.Currency == "USD" {
			return a.Balance
		}
	}
	return 0
}

// MustCheck fails the test unless the ledger checker passes.
func MustCheck(t testing.TB, s wallet.Store) *wallet.CheckReport {
	t.Helper()
	rep, err := wallet.Check(context.Background(), s)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !rep.OK {
		t.Fatalf("ledger check failed: %v", rep.Problems)
	}
	return rep
}

func wantCode(t testing.TB, err error, code, reason string) {
	t.Helper()
	if buzzer.ErrorCode(err) != code || (reason != "" && buzzer.ErrorReason(err) != reason) {
		t.Fatalf("got %v, want code %s reason %q", err, code, reason)
	}
}

func single(event, market, sel string, price buzzer.Price, stake buzzer.Amount) wallet.PlaceBetRequest {
	return wallet.PlaceBetRequest{Stake: stake, Currency: "USD", PriceChange: wallet.PriceExact,
		Legs: []wallet.LegRequest{{EventID: event, MarketID: market, SelectionID: sel, Price: price}}}
}

func betOf(t testing.TB, r *wallet.Response) wallet.BetView {
	t.Helper()
	var v wallet.BetView
	if err := json.Unmarshal(r.Body, &v); err != nil {
		t.Fatalf("bet body: %v", err)
	}
	return v
}

// RunStoreTests runs the conformance suite against stores from newStore;
// each call must return an empty store of its own.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) wallet.Store) {
	t.Run("KeyRecords", func(t *testing.T) { testKeyRecords(t, newStore(t)) })
	t.Run("RollbackOnError", func(t *testing.T) { testRollback(t, newStore(t)) })
	t.Run("LedgerAndEntries", func(t *testing.T) { testLedger(t, newStore(t)) })
	t.Run("BetsIndex", func(t *testing.T) { testBets(t, newStore(t)) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, newStore(t)) })
	t.Run("InFlightDelay", func(t *testing.T) { testInFlight(t, newStore(t)) })
	t.Run("BetRules", func(t *testing.T) { testBetRules(t, newStore(t)) })
	t.Run("SettleAndResettle", func(t *testing.T) { testSettle(t, newStore(t)) })
	t.Run("SettlementResumes", func(t *testing.T) { testSettleResume(t, newStore(t)) })
	t.Run("PurgeKeys", func(t *testing.T) { testPurge(t, newStore(t)) })
	t.Run("OneKeyThousandCalls", func(t *testing.T) { testOneKeyMany(t, newStore(t), 1000) })
	t.Run("ConcurrentNewKeys", func(t *testing.T) { testConcurrentNewKeys(t, newStore(t)) })
	t.Run("Decision", func(t *testing.T) { testDecision(t, newStore(t), wallet.DefaultConfig().BatchMax) })
	t.Run("DecisionUnbatched", func(t *testing.T) { testDecision(t, newStore(t), 0) })
	t.Run("GroupCommit", func(t *testing.T) { testGroupCommit(t, newStore(t)) })
	t.Run("GroupTakesWhatQueued", func(t *testing.T) { testGroupTakesQueued(t, newStore(t)) })
	t.Run("GroupLinger", func(t *testing.T) { testGroupLinger(t, newStore(t)) })
	t.Run("OneKeyThousandCallsUnbatched", func(t *testing.T) { testOneKeyManyCfg(t, newStore(t), 1000, 0) })
}

func inTx(t testing.TB, s wallet.Store, fn func(wallet.Tx) error) {
	t.Helper()
	if err := s.InTx(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func testKeyRecords(t *testing.T, s wallet.Store) {
	ctx := context.Background()
	k := &wallet.KeyRecord{Player: "p1", Key: "k1", Fingerprint: "fp", State: wallet.KeyInFlight, Owner: "o1",
		LockedUntil: T0.Add(time.Minute), CreatedAt: T0, ExpiresAt: T0.Add(24 * time.Hour)}
	inTx(t, s, func(tx wallet.Tx) error {
		got, err := tx.GetKey(ctx, "p1", "k1")
		if err != nil || got != nil {
			return fmt.Errorf("absent key: got %v, %v", got, err)
		}
		ok, err := tx.InsertKey(ctx, k)
		if err != nil || !ok {
			return fmt.Errorf("first insert: %v %v", ok, err)
		}
		ok, err = tx.InsertKey(ctx, &wallet.KeyRecord{Player: "p1", Key: "k1", Fingerprint: "other", State: wallet.KeyInFlight, Owner: "o2", CreatedAt: T0, ExpiresAt: T0})
		if err != nil || ok {
			return fmt.Errorf("duplicate insert: %v %v", ok, err)
		}
		// Same key, other player: a separate record.
		ok, err = tx.InsertKey(ctx, &wallet.KeyRecord{Player: "p2", Key: "k1", Fingerprint: "fp2", State: wallet.KeyInFlight, Owner: "o3", CreatedAt: T0, ExpiresAt: T0})
		if err != nil || !ok {
			return fmt.Errorf("other player's insert: %v %v", ok, err)
		}
		return nil
	})
	body := []byte(`{"a":1,  "b":"\u00e9"}`)
	inTx(t, s, func(tx wallet.Tx) error {
		got, err := tx.GetKey(ctx, "p1", "k1")
		if err != nil || got == nil || got.Fingerprint != "fp" || got.Owner != "o1" || !got.LockedUntil.Equal(k.LockedUntil) || got.State != wallet.KeyInFlight {
			return fmt.Errorf("stored key: %+v %v", got, err)
		}
		got.State, got.Status, got.Body, got.EffectID = wallet.KeyCompleted, 201, body, "txn-1"
		return tx.UpdateKey(ctx, got)
	})
	inTx(t, s, func(tx wallet.Tx) error {
		got, err := tx.GetKey(ctx, "p1", "k1")
		if err != nil || got.State != wallet.KeyCompleted || got.Status != 201 || !bytes.Equal(got.Body, body) || got.EffectID != "txn-1" || !got.CreatedAt.Equal(T0) {
			return fmt.Errorf("completed key: %+v %v", got, err)
		}
		if err := tx.DeleteKey(ctx, "p2", "k1", "not-owner"); err != nil {
			return err
		}
		if g, _ := tx.GetKey(ctx, "p2", "k1"); g == nil {
			return errors.New("DeleteKey with another owner deleted the key")
		}
		if err := tx.DeleteKey(ctx, "p2", "k1", "o3"); err != nil {
			return err
		}
		if g, _ := tx.GetKey(ctx, "p2", "k1"); g != nil {
			return errors.New("DeleteKey by its owner left the key")
		}
		return nil
	})
}

func testRollback(t *testing.T, s wallet.Store) {
	ctx := context.Background()
	boom := errors.New("boom")
	acct := wallet.AccountKey{Owner: "p1", Jurisdiction: "j", Currency: "USD", Kind: wallet.KindCash}
	err := s.InTx(ctx, func(tx wallet.Tx) error {
		if _, err := tx.InsertKey(ctx, &wallet.KeyRecord{Player: "p1", Key: "k", Fingerprint: "f", State: wallet.KeyInFlight, Owner: "o", CreatedAt: T0, ExpiresAt: T0}); err != nil {
			return err
		}
		if _, err := tx.ApplyTransaction(ctx, &wallet.Transaction{ID: "t1", Kind: wallet.TxnDeposit, Player: "p1", EffectKey: "p1/k", CreatedAt: T0, Postings: []wallet.Posting{
			{Account: acct, Amount: 100}, {Account: wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "j", Currency: "USD", Kind: wallet.KindDepositsClearing}, Amount: -100}}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx returned %v, want the function's error", err)
	}
	inTx(t, s, func(tx wallet.Tx) error {
		if k, _ := tx.GetKey(ctx, "p1", "k"); k != nil {
			return errors.New("rolled-back key is visible")
		}
		if b, err := tx.Balance(ctx, acct); err != nil || b != 0 {
			return fmt.Errorf("rolled-back balance %d %v", b, err)
		}
		sums, err := tx.PostingSums(ctx)
		if err != nil || len(sums) != 0 {
			return fmt.Errorf("rolled-back postings %v %v", sums, err)
		}
		return nil
	})
}

func testLedger(t *testing.T, s wallet.Store) {
	ctx := context.Background()
	cash := wallet.AccountKey{Owner: "p1", Jurisdiction: "j", Currency: "USD", Kind: wallet.KindCash}
	eur := wallet.AccountKey{Owner: "p1", Jurisdiction: "j", Currency: "EUR", Kind: wallet.KindCash}
	clr := func(c buzzer.Currency, b int) wallet.AccountKey {
		return wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "j", Currency: c, Kind: wallet.KindDepositsClearing, Bucket: b}
	}
	for i := 0; i < 5; i++ {
		i := i
		inTx(t, s, func(tx wallet.Tx) error {
			after, err := tx.ApplyTransaction(ctx, &wallet.Transaction{ID: fmt.Sprintf("t%d", i), Kind: wallet.TxnDeposit, Player: "p1", Reference: "r",
				EffectKey: fmt.Sprintf("p1/k%d", i), CreatedAt: T0.Add(time.Duration(i/2) * time.Second),
				Postings: []wallet.Posting{{Account: cash, Amount: 100}, {Account: clr("USD", i%2), Amount: -100}}})
			if err != nil {
				return err
			}
			if after[0] != buzzer.Amount(100*(i+1)) || after[1] != buzzer.Amount(-100*(i/2+1)) && i%2 == 0 {
				return fmt.Errorf("balances after txn %d: %v", i, after)
			}
			return nil
		})
	}
	inTx(t, s, func(tx wallet.Tx) error {
		_, err := tx.ApplyTransaction(ctx, &wallet.Transaction{ID: "te", Kind: wallet.TxnDeposit, Player: "p1", EffectKey: "p1/k0", CreatedAt: T0.Add(time.Hour),
			Postings: []wallet.Posting{{Account: eur, Amount: 7}, {Account: clr("EUR", 3), Amount: -7}}})
		return err
	})
	inTx(t, s, func(tx wallet.Tx) error {
		if b, _ := tx.Balance(ctx, cash); b != 500 {
			return fmt.Errorf("cash %d, want 500", b)
		}
		as, err := tx.Accounts(ctx, "p1")
		if err != nil || len(as) != 2 {
			return fmt.Errorf("accounts %v %v", as, err)
		}
		sums, err := tx.PostingSums(ctx)
		if err != nil || sums[cash.ID()] != 500 || sums[clr("USD", 0).ID()] != -300 || sums[clr("USD", 1).ID()] != -200 || sums[eur.ID()] != 7 {
			return fmt.Errorf("sums %v %v", sums, err)
		}
		dups, err := tx.DuplicateEffects(ctx)
		if err != nil || len(dups) != 1 || dups["p1/k0"] != 2 {
			return fmt.Errorf("duplicate effects %v %v", dups, err)
		}
		n := 0
		if err := tx.ScanAccounts(ctx, func(wallet.Account) error { n++; return nil }); err != nil || n != 5 {
			return fmt.Errorf("scanned %d accounts, %v", n, err)
		}
		// Entries page newest first: te, t4, t3|t2 by id desc, ...
		var ids []string
		var cur wallet.EntryCursor
		for {
			es, err := tx.Entries(ctx, "p1", cur, 2)
			if err != nil {
				return err
			}
			for _, e := range es {
				ids = append(ids, e.TransactionID)
			}
			if len(es) < 2 {
				break
			}
			cur = wallet.EntryCursor{CreatedAt: es[len(es)-1].CreatedAt, TransactionID: es[len(es)-1].TransactionID}
		}
		if fmt.Sprint(ids) != "[te t4 t3 t2 t1 t0]" {
			return fmt.Errorf("entries order %v", ids)
		}
		es, _ := tx.Entries(ctx, wallet.HouseOwner, wallet.EntryCursor{}, 100)
		if len(es) != 6 {
			return fmt.Errorf("house entries %d", len(es))
		}
		es, _ = tx.Entries(ctx, "p1", wallet.EntryCursor{}, 1)
		if e := es[0]; e.Amount != 7 || e.Currency != "EUR" || e.Kind != wallet.TxnDeposit || e.Account != wallet.KindCash || !e.CreatedAt.Equal(T0.Add(time.Hour)) {
			return fmt.Errorf("entry %+v", e)
		}
		return nil
	})
}

func testBets(t *testing.T, s wallet.Store) {
	ctx := context.Background()
	mk := func(id, player string, at time.Duration, markets ...string) *wallet.Bet {
		b := &wallet.Bet{ID: id, Player: player, Jurisdiction: "j", Currency: "USD", Stake: 100, PotentialPayout: 200, PriceChange: wallet.PriceAny,
			Status: wallet.BetOpen, PlacedAt: T0.Add(at), StakeBucket: 3, PlacementTxn: "t-" + id}
		for i, m := range markets {
			b.Legs = append(b.Legs, wallet.Leg{EventID: fmt.Sprintf("e%d", i), MarketID: m, SelectionID: "s", RequestedPrice: 20000, Price: 20000, OddsVersion: 7, FeedPosition: "42"})
		}
		return b
	}
	inTx(t, s, func(tx wallet.Tx) error {
		for _, b := range []*wallet.Bet{mk("b1", "p1", 0, "mA"), mk("b2", "p1", time.Second, "mA", "mB"), mk("b3", "p1", time.Second, "mB"), mk("b4", "p2", 0, "mA")} {
			if err := tx.InsertBet(ctx, b); err != nil {
				return err
			}
		}
		return nil
	})
	inTx(t, s, func(tx wallet.Tx) error {
		b, err := tx.GetBet(ctx, "p1", "b2")
		if err != nil || b == nil || len(b.Legs) != 2 || b.Legs[1].MarketID != "mB" || b.Legs[0].OddsVersion != 7 || b.Legs[0].FeedPosition != "42" || b.StakeBucket != 3 || !b.PlacedAt.Equal(T0.Add(time.Second)) {
			return fmt.Errorf("bet b2: %+v %v", b, err)
		}
		if b, err := tx.GetBet(ctx, "p2", "b2"); err != nil || b != nil {
			return fmt.Errorf("another player's bet visible: %v %v", b, err)
		}
		refs, err := tx.PendingBets(ctx, "mA", 1, 10)
		if err != nil || len(refs) != 3 {
			return fmt.Errorf("pending on mA: %v %v", refs, err)
		}
		refs, _ = tx.PendingBets(ctx, "mA", 1, 2)
		if len(refs) != 2 {
			return fmt.Errorf("limit ignored: %v", refs)
		}
		b.Legs[0].ResultVersion, b.Legs[0].Result, b.Legs[0].VoidFactor, b.Legs[0].DeadHeatFactor = 1, wallet.ResultWon, 0, wallet.FactorOne
		b.Status, b.Payout, b.SettledBy = wallet.BetSettled, 400, "op-1"
		at := T0.Add(time.Hour)
		b.SettledAt = &at
		return tx.UpdateBet(ctx, b)
	})
	inTx(t, s, func(tx wallet.Tx) error {
		refs, _ := tx.PendingBets(ctx, "mA", 1, 10)
		if len(refs) != 2 {
			return fmt.Errorf("pending on mA after settling b2's leg: %v", refs)
		}
		refs, _ = tx.PendingBets(ctx, "mA", 2, 10)
		if len(refs) != 3 {
			return fmt.Errorf("pending on mA at version 2: %v", refs)
		}
		b, _ := tx.GetBet(ctx, "p1", "b2")
		if b.Status != wallet.BetSettled || b.Payout != 400 || b.SettledBy != "op-1" || b.Legs[0].Result != wallet.ResultWon || b.SettledAt == nil || !b.SettledAt.Equal(T0.Add(time.Hour)) {
			return fmt.Errorf("updated bet: %+v", b)
		}
		open, _ := tx.ListBets(ctx, "p1", wallet.BetOpen, wallet.BetCursor{}, 10)
		settled, _ := tx.ListBets(ctx, "p1", wallet.BetSettled, wallet.BetCursor{}, 10)
		if len(open) != 2 || len(settled) != 1 || settled[0].ID != "b2" {
			return fmt.Errorf("status filter: open %d settled %d", len(open), len(settled))
		}
		var ids []string
		var cur wallet.BetCursor
		for {
			bs, err := tx.ListBets(ctx, "p1", "", cur, 1)
			if err != nil {
				return err
			}
			if len(bs) == 0 {
				break
			}
			ids = append(ids, bs[0].ID)
			cur = wallet.BetCursor{PlacedAt: bs[0].PlacedAt, ID: bs[0].ID}
		}
		if fmt.Sprint(ids) != "[b3 b2 b1]" {
			return fmt.Errorf("bet paging %v", ids)
		}
		n := 0
		if err := tx.ScanBets(ctx, func(*wallet.Bet) error { n++; return nil }); err != nil || n != 4 {
			return fmt.Errorf("scanned %d bets %v", n, err)
		}
		r := &wallet.MarketResult{MarketID: "mA", ResultVersion: 1, Fingerprint: "f", SettledBy: "feed", UpdatedAt: T0,
			Outcomes: []wallet.Outcome{{SelectionID: "s", Result: wallet.ResultWon, VoidFactor: 5000, DeadHeatFactor: wallet.FactorOne}}}
		if err := tx.PutMarketResult(ctx, r); err != nil {
			return err
		}
		return nil
	})
	inTx(t, s, func(tx wallet.Tx) error {
		r, err := tx.GetMarketResult(ctx, "mA")
		if err != nil || r == nil || r.ResultVersion != 1 || r.Done || len(r.Outcomes) != 1 || r.Outcomes[0].VoidFactor != 5000 || r.SettledBy != "feed" {
			return fmt.Errorf("market result %+v %v", r, err)
		}
		if r, _ := tx.GetMarketResult(ctx, "mZ"); r != nil {
			return errors.New("absent market result visible")
		}
		ms, err := tx.UnfinishedMarketResults(ctx, 10)
		if err != nil || fmt.Sprint(ms) != "[mA]" {
			return fmt.Errorf("unfinished %v %v", ms, err)
		}
		r.Done, r.ResultVersion = true, 2
		return tx.PutMarketResult(ctx, r)
	})
	inTx(t, s, func(tx wallet.Tx) error {
		r, _ := tx.GetMarketResult(ctx, "mA")
		ms, _ := tx.UnfinishedMarketResults(ctx, 10)
		if !r.Done || r.ResultVersion != 2 || len(ms) != 0 {
			return fmt.Errorf("after overwrite %+v %v", r, ms)
		}
		return nil
	})
}

func testIdempotency(t *testing.T, s wallet.Store) {
	e := NewEnv(t, s, nil)
	ctx := context.Background()
	req := wallet.MoneyRequest{Amount: 5000, Currency: "USD"}
	_, err := e.Svc.Deposit(ctx, "p1", "", req)
	wantCode(t, err, buzzer.EINVALID, "idempotency_key_missing")
	r1, err := e.Svc.Deposit(ctx, "p1", "key-1", req)
	if err != nil || r1.Status != 201 || r1.Replayed {
		t.Fatalf("deposit: %+v %v", r1, err)
	}
	e.Clock.Advance(time.Minute)
	r2, err := e.Svc.Deposit(ctx, "p1", "key-1", req)
	if err != nil || !r2.Replayed || r2.Status != 201 || !bytes.Equal(r1.Body, r2.Body) {
		t.Fatalf("replay: %+v %v", r2, err)
	}
	if got := e.Cash(t, "p1"); got != 5000 {
		t.Fatalf("cash after replay %d, want 5000", got)
	}
	_, err = e.Svc.Deposit(ctx, "p1", "key-1", wallet.MoneyRequest{Amount: 5001, Currency: "USD"})
	wantCode(t, err, buzzer.EUNPROCESSABLE, "idempotency_key_reused")
	// The same key on another route is another request.
	_, err = e.Svc.Withdraw(ctx, "p1", "key-1", req)
	wantCode(t, err, buzzer.EUNPROCESSABLE, "idempotency_key_reused")
	// Keys are per player: p2 may use key-1 for its own deposit.
	if r, err := e.Svc.Deposit(ctx, "p2", "key-1", req); err != nil || r.Replayed {
		t.Fatalf("p2's key-1: %+v %v", r, err)
	}
	// A rejection is stored too: the same key gets the same refusal even
	// once funds exist; a new attempt needs a new key.
	_, err = e.Svc.Withdraw(ctx, "p1", "w-1", wallet.MoneyRequest{Amount: 6000, Currency: "USD"})
	wantCode(t, err, buzzer.EUNPROCESSABLE, "insufficient_funds")
	e.Clock.Advance(time.Second)
	e.Deposit(t, "p1", 1000)
	e.Clock.Advance(time.Second)
	_, err = e.Svc.Withdraw(ctx, "p1", "w-1", wallet.MoneyRequest{Amount: 6000, Currency: "USD"})
	if be := (*buzzer.Error)(nil); !errors.As(err, &be) || be.Code != buzzer.EUNPROCESSABLE || be.Reason != "insufficient_funds" || be.Message != "Insufficient funds." {
		t.Fatalf("replayed rejection: %v", err)
	}
	w, err := e.Svc.Withdraw(ctx, "p1", "w-2", wallet.MoneyRequest{Amount: 6000, Currency: "USD"})
	if err != nil || w.Replayed {
		t.Fatalf("withdrawal after deposit: %v", err)
	}
	var rc wallet.Receipt
	if err := json.Unmarshal(w.Body, &rc); err != nil || rc.Balance != 0 || rc.Amount != 6000 || rc.Kind != wallet.TxnWithdrawal {
		t.Fatalf("receipt %s %v", w.Body, err)
	}
	es, next, err := e.Svc.Entries(ctx, "p1", "", 2)
	if err != nil || len(es) != 2 || next == "" || es[0].Kind != wallet.TxnWithdrawal || es[0].Amount != -6000 {
		t.Fatalf("entries %+v %q %v", es, next, err)
	}
	es2, next2, err := e.Svc.Entries(ctx, "p1", next, 2)
	if err != nil || len(es2) != 1 || next2 != "" || es2[0].Amount != 5000 || es[1].Amount != 1000 {
		t.Fatalf("entries page 2 %+v %q %v", es2, next2, err)
	}
	MustCheck(t, s)
}

// gateSleep blocks the in-play delay until release is closed.
func testInFlight(t *testing.T, s wallet.Store) {
	e := NewEnv(t, s, nil)
	ctx := context.Background()
	e.Deposit(t, "p1", 10000)
	e.Prices.Update("ev1", "m1", "s1", func(q *wallet.Quote) { q.InPlay, q.BetDelay = true, 5*time.Second })
	entered := make(chan struct{})
	release := make(chan struct{})
	svc, err := wallet.New(e.Svc.Config(), wallet.Deps{Store: s, Prices: e.Prices, Clock: e.Clock, Sleep: func(ctx context.Context, d time.Duration) error {
		if d != 5*time.Second {
			t.Errorf("delay %s, want 5s", d)
		}
		close(entered)
		<-release
		e.Clock.Advance(d)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	req := single("ev1", "m1", "s1", 20000, 1000)
	done := make(chan *wallet.Response)
	go func() {
		r, err := svc.PlaceBet(ctx, "p1", "bet-1", req)
		if err != nil {
			t.Errorf("delayed bet: %v", err)
		}
		done <- r
	}()
	<-entered
	_, err = e.Svc.PlaceBet(ctx, "p1", "bet-1", req)
	wantCode(t, err, buzzer.ECONFLICT, "idempotency_key_in_flight")
	other := req
	other.Stake = 1001
	_, err = e.Svc.PlaceBet(ctx, "p1", "bet-1", other)
	wantCode(t, err, buzzer.EUNPROCESSABLE, "idempotency_key_reused")
	close(release)
	r := <-done
	if r == nil {
		t.FailNow()
	}
	if v := betOf(t, r); !v.Legs[0].InPlay || v.Legs[0].OddsVersion != 2 || v.Stake != 1000 {
		t.Fatalf("in-play bet %s", r.Body)
	}
	again, err := e.Svc.PlaceBet(ctx, "p1", "bet-1", req)
	if err != nil || !again.Replayed || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("replay after delay: %v", err)
	}
	// The price moves during the delay: the exact bet is refused, and the
	// refusal is the key's answer from then on.
	entered2, release2 := make(chan struct{}), make(chan struct{})
	svc2, _ := wallet.New(e.Svc.Config(), wallet.Deps{Store: s, Prices: e.Prices, Clock: e.Clock, Sleep: func(ctx context.Context, d time.Duration) error {
		close(entered2)
		<-release2
		return nil
	}})
	errc := make(chan error)
	go func() { _, err := svc2.PlaceBet(ctx, "p1", "bet-2", req); errc <- err }()
	<-entered2
	e.Prices.Update("ev1", "m1", "s1", func(q *wallet.Quote) { q.Price = 19000 })
	close(release2)
	wantCode(t, <-errc, buzzer.EUNPROCESSABLE, "price_changed")
	e.Prices.Update("ev1", "m1", "s1", func(q *wallet.Quote) { q.Price = 20000 })
	_, err = e.Svc.PlaceBet(ctx, "p1", "bet-2", req)
	wantCode(t, err, buzzer.EUNPROCESSABLE, "price_changed")
	anyReq := req
	anyReq.PriceChange = wallet.PriceAny
	_, err = e.Svc.PlaceBet(ctx, "p1", "bet-2", anyReq)
	wantCode(t, err, buzzer.EUNPROCESSABLE, "idempotency_key_reused")
	if _, err = e.Svc.PlaceBet(ctx, "p1", "bet-2b", anyReq); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if got := e.Cash(t, "p1"); got != 8000 {
		t.Fatalf("cash %d, want 8000", got)
	}
	// A key left in flight by a crashed attempt is taken over after its lease.
	inTx(t, s, func(tx wallet.Tx) error {
		fp, _ := wallet.Fingerprint(wallet.RoutePlaceBet, req)
		_, err := tx.InsertKey(ctx, &wallet.KeyRecord{Player: "p1", Key: "bet-3", Fingerprint: fp, State: wallet.KeyInFlight, Owner: "dead",
			LockedUntil: e.Clock.Now().Add(time.Second), CreatedAt: e.Clock.Now(), ExpiresAt: e.Clock.Now().Add(48 * time.Hour)})
		return err
	})
	e.Prices.Update("ev1", "m1", "s1", func(q *wallet.Quote) { q.InPlay, q.BetDelay, q.Price = false, 0, 20000 })
	_, err = e.Svc.PlaceBet(ctx, "p1", "bet-3", req)
	wantCode(t, err, buzzer.ECONFLICT, "idempotency_key_in_flight")
	e.Clock.Advance(2 * time.Second)
	if r, err := e.Svc.PlaceBet(ctx, "p1", "bet-3", req); err != nil || r.Replayed {
		t.Fatalf("takeover: %v", err)
	}
	MustCheck(t, s)
}

func testBetRules(t *testing.T, s wallet.Store) {
	cfg := wallet.DefaultConfig()
	cfg.MaxPayout = 2_000_000
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	e.Deposit(t, "p1", 1_000_000)
	place := func(key string, r wallet.PlaceBetRequest) (*wallet.Response, error) {
		return e.Svc.PlaceBet(ctx, "p1", key, r)
	}
	_, err := place("a", single("ev1", "m1", "s1", 21000, 100))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "price_changed")
	better := single("ev1", "m1", "s1", 19000, 100)
	better.PriceChange = wallet.PriceBetter
	r, err := place("b", better)
	if err != nil || betOf(t, r).Legs[0].Price != 20000 || betOf(t, r).Legs[0].RequestedPrice != 19000 {
		t.Fatalf("better: %v", err)
	}
	worse := single("ev1", "m1", "s1", 21000, 100)
	worse.PriceChange = wallet.PriceBetter
	_, err = place("c", worse)
	wantCode(t, err, buzzer.EUNPROCESSABLE, "price_changed")
	worse.PriceChange = wallet.PriceAny
	if _, err := place("c2", worse); err != nil {
		t.Fatalf("any: %v", err)
	}
	_, err = place("d", single("ev1", "m1", "nope", 20000, 100))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "unknown_selection")
	_, err = place("e", single("ev1", "m1", "s1", 20000, 5))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "stake_limit")
	_, err = place("f", single("ev1", "m1", "s3", 40000, 600_000))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "payout_limit")
	acc := wallet.PlaceBetRequest{Stake: 333, Currency: "USD", PriceChange: wallet.PriceExact, Legs: []wallet.LegRequest{
		{EventID: "ev1", MarketID: "m1", SelectionID: "s2", Price: 35000}, {EventID: "ev2", MarketID: "m2", SelectionID: "s1", Price: 15000}}}
	r, err = place("g", acc)
	if err != nil {
		t.Fatalf("accumulator: %v", err)
	}
	// 333 × 3.5 × 1.5 = 1748.25 → 1748 (rounded down).
	if v := betOf(t, r); v.PotentialPayout != 1748 || len(v.Legs) != 2 {
		t.Fatalf("accumulator payout %d", v.PotentialPayout)
	}
	acc.Legs[1] = wallet.LegRequest{EventID: "ev1", MarketID: "m1", SelectionID: "s1", Price: 20000}
	_, err = place("h", acc)
	wantCode(t, err, buzzer.EINVALID, "")
	e.Prices.Update("ev2", "m2", "s1", func(q *wallet.Quote) { q.Status = wallet.MarketSuspended })
	_, err = place("i", single("ev2", "m2", "s1", 15000, 100))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "market_not_open")
	_, err = place("j", single("ev1", "m1", "s1", 20000, 1_000_000))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "insufficient_funds")
	// A bet is visible only to its player.
	id := betOf(t, r).ID
	if _, err := e.Svc.Bet(ctx, "p2", id); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("p2 read p1's bet: %v", err)
	}
	if b, err := e.Svc.Bet(ctx, "p1", id); err != nil || b.Stake != 333 {
		t.Fatalf("own bet: %v", err)
	}
	if bs, _, err := e.Svc.Bets(ctx, "p2", "", "", 10); err != nil || len(bs) != 0 {
		t.Fatalf("p2 lists %d bets", len(bs))
	}
	if bs, _, err := e.Svc.Bets(ctx, "p1", wallet.BetOpen, "", 10); err != nil || len(bs) != 3 {
		t.Fatalf("p1 lists %d open bets, %v", len(bs), err)
	}
	if got := e.Cash(t, "p1"); got != 1_000_000-533 {
		t.Fatalf("cash %d", got)
	}
	MustCheck(t, s)
}

func testSettle(t *testing.T, s wallet.Store) {
	e := NewEnv(t, s, nil)
	ctx := context.Background()
	e.Deposit(t, "p1", 100_000)
	ids := map[string]string{}
	placeAs := func(key string, r wallet.PlaceBetRequest) {
		resp, err := e.Svc.PlaceBet(ctx, "p1", key, r)
		if err != nil {
			t.Fatalf("bet %s: %v", key, err)
		}
		ids[key] = betOf(t, resp).ID
	}
	placeAs("s1", single("ev1", "m1", "s1", 20000, 1000)) // will win 2000
	placeAs("s2", single("ev1", "m1", "s2", 35000, 1000)) // lost
	placeAs("s3", single("ev1", "m1", "s3", 40000, 1001)) // void factor 0.5 won: 500.5 + 500.5×4 = 2502.5 → 2502
	placeAs("acc", wallet.PlaceBetRequest{Stake: 1000, Currency: "USD", PriceChange: wallet.PriceExact, Legs: []wallet.LegRequest{
		{EventID: "ev1", MarketID: "m1", SelectionID: "s1", Price: 20000}, {EventID: "ev2", MarketID: "m2", SelectionID: "s2", Price: 25000}}})
	placeAs("dh", single("ev2", "m2", "s2", 25000, 1000))
	cash0 := e.Cash(t, "p1")
	res := wallet.SettleRequest{ResultVersion: 1, Outcomes: []wallet.Outcome{
		{SelectionID: "s1", Result: wallet.ResultWon}, {SelectionID: "s2", Result: wallet.ResultLost},
		{SelectionID: "s3", Result: wallet.ResultWon, VoidFactor: 5000}}}
	rep, err := e.Svc.SettleMarket(ctx, "m1", res, "op-7")
	if err != nil || !rep.Done || rep.Bets != 4 {
		t.Fatalf("settle m1: %+v %v", rep, err)
	}
	if got := e.Cash(t, "p1") - cash0; got != 2000+2502 {
		t.Fatalf("m1 paid %d, want 4502", got)
	}
	if b, _ := e.Svc.Bet(ctx, "p1", ids["acc"]); b.Status != wallet.BetOpen || b.Legs[0].Result != wallet.ResultWon || b.Legs[0].ResultVersion != 1 {
		t.Fatalf("accumulator after one leg: %+v", b)
	}
	if b, _ := e.Svc.Bet(ctx, "p1", ids["s1"]); b.Status != wallet.BetSettled || b.Payout != 2000 || b.SettledBy != "op-7" || b.SettledAt == nil {
		t.Fatalf("settled single: %+v", b)
	}
	// Idempotent per (market, version).
	rep, err = e.Svc.SettleMarket(ctx, "m1", res, "op-8")
	if err != nil || rep.Bets != 0 || !rep.Done {
		t.Fatalf("repeat: %+v %v", rep, err)
	}
	bad := res
	bad.Outcomes = append([]wallet.Outcome(nil), res.Outcomes...)
	bad.Outcomes[1].Result = wallet.ResultWon
	_, err = e.Svc.SettleMarket(ctx, "m1", bad, "op-8")
	wantCode(t, err, buzzer.EUNPROCESSABLE, "result_version_reused")
	// Bets on a resulted market are refused.
	_, err = e.Svc.PlaceBet(ctx, "p1", "late", single("ev1", "m1", "s1", 20000, 100))
	wantCode(t, err, buzzer.EUNPROCESSABLE, "market_not_open")
	// m2: s2 wins in a dead heat of two (factor 0.5).
	cash1 := e.Cash(t, "p1")
	if _, err := e.Svc.SettleMarket(ctx, "m2", wallet.SettleRequest{ResultVersion: 1, Outcomes: []wallet.Outcome{
		{SelectionID: "s1", Result: wallet.ResultLost}, {SelectionID: "s2", Result: wallet.ResultWon, DeadHeatFactor: 5000}}}, wallet.SettledByFeed); err != nil {
		t.Fatal(err)
	}
	// dh single: 1000 × 2.5 × 0.5 = 1250; acc: 1000 × 2.0 × 1.25 = 2500.
	if got := e.Cash(t, "p1") - cash1; got != 1250+2500 {
		t.Fatalf("m2 paid %d, want 3750", got)
	}
	MustCheck(t, s)
	// Resettle m1 at version 2: s1 void, s2 won, s3 lost.
	cash2 := e.Cash(t, "p1")
	res2 := wallet.SettleRequest{ResultVersion: 2, Outcomes: []wallet.Outcome{
		{SelectionID: "s1", Result: wallet.ResultVoid}, {SelectionID: "s2", Result: wallet.ResultWon}, {SelectionID: "s3", Result: wallet.ResultLost}}}
	if _, err := e.Svc.SettleMarket(ctx, "m1", res2, "op-9"); err != nil {
		t.Fatal(err)
	}
	// s1: 2000→1000; s2: 0→3500; s3: 2502→0; acc: 2500→1000×1.0×1.25=1250.
	want := buzzer.Amount(-1000 + 3500 - 2502 - 1250)
	if got := e.Cash(t, "p1") - cash2; got != want {
		t.Fatalf("resettlement moved %d, want %d", got, want)
	}
	if b, _ := e.Svc.Bet(ctx, "p1", ids["acc"]); b.Payout != 1250 || b.SettledBy != "op-9" || b.Legs[0].Result != wallet.ResultVoid {
		t.Fatalf("resettled accumulator %+v", b)
	}
	_, err = e.Svc.SettleMarket(ctx, "m1", res, "op-8")
	wantCode(t, err, buzzer.ECONFLICT, "stale_result_version")
	// A resettlement that takes back more than the player holds books a receivable.
	if _, err := e.Svc.Withdraw(ctx, "p1", "all", wallet.MoneyRequest{Amount: e.Cash(t, "p1"), Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	res3 := res2
	res3.ResultVersion = 3
	res3.Outcomes = []wallet.Outcome{{SelectionID: "s1", Result: wallet.ResultVoid}, {SelectionID: "s2", Result: wallet.ResultLost}, {SelectionID: "s3", Result: wallet.ResultLost}}
	if _, err := e.Svc.SettleMarket(ctx, "m1", res3, "op-9"); err != nil {
		t.Fatal(err)
	}
	as, _ := e.Svc.Balances(ctx, "p1")
	var recv buzzer.Amount
	for _, a := range as {
		if a.Kind == wallet.KindReceivable {
			recv = a.Balance
		}
	}
	if recv != -3500 || e.Cash(t, "p1") != 0 {
		t.Fatalf("receivable %d cash %d, want -3500 and 0", recv, e.Cash(t, "p1"))
	}
	e.Deposit(t, "p1", 100)
	res4 := res3
	res4.ResultVersion = 4
	res4.Outcomes = res2.Outcomes
	if _, err := e.Svc.SettleMarket(ctx, "m1", res4, "op-9"); err != nil {
		t.Fatal(err)
	}
	if got := e.Cash(t, "p1"); got != 100 {
		t.Fatalf("cash after the receivable was repaid: %d, want 100", got)
	}
	MustCheck(t, s)
}

// failingStore makes every transaction after the first n fail before it runs,
// as a crashed process would.
type failingStore struct {
	wallet.Store
	left atomic.Int64
}

var errCrash = errors.New("simulated crash")

func (f *failingStore) InTx(ctx context.Context, fn func(wallet.Tx) error) error {
	if f.left.Add(-1) < 0 {
		return errCrash
	}
	return f.Store.InTx(ctx, fn)
}

func testSettleResume(t *testing.T, s wallet.Store) {
	cfg := wallet.DefaultConfig()
	cfg.SettleBatch = 3
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	e.Deposit(t, "p1", 100_000)
	for i := 0; i < 10; i++ {
		if _, err := e.Svc.PlaceBet(ctx, "p1", fmt.Sprint("b", i), single("ev1", "m1", "s1", 20000, 100)); err != nil {
			t.Fatal(err)
		}
	}
	fs := &failingStore{Store: s}
	fs.left.Store(3) // the result record and two batches commit
	crashing, _ := wallet.New(cfg, wallet.Deps{Store: fs, Prices: e.Prices, Clock: e.Clock})
	res := wallet.SettleRequest{ResultVersion: 1, Outcomes: []wallet.Outcome{{SelectionID: "s1", Result: wallet.ResultWon}}}
	if _, err := crashing.SettleMarket(ctx, "m1", res, "op"); !errors.Is(err, errCrash) {
		t.Fatalf("crashing settlement returned %v", err)
	}
	settled, _, _ := e.Svc.Bets(ctx, "p1", wallet.BetSettled, "", 100)
	if len(settled) != 6 {
		t.Fatalf("%d bets settled before the crash, want 6", len(settled))
	}
	MustCheck(t, s)
	if err := e.Svc.ResumeSettlements(ctx); err != nil {
		t.Fatal(err)
	}
	settled, _, _ = e.Svc.Bets(ctx, "p1", wallet.BetSettled, "", 100)
	if len(settled) != 10 {
		t.Fatalf("%d bets settled after resuming, want 10", len(settled))
	}
	if got := e.Cash(t, "p1"); got != 100_000+1000 {
		t.Fatalf("cash %d after settlement, want 101000", got)
	}
	rep, err := e.Svc.SettleMarket(ctx, "m1", res, "op")
	if err != nil || rep.Bets != 0 || !rep.Done {
		t.Fatalf("repeat after resume %+v %v", rep, err)
	}
	MustCheck(t, s)
}

func testPurge(t *testing.T, s wallet.Store) {
	cfg := wallet.DefaultConfig()
	cfg.PurgeBatch = 2
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := e.Svc.Deposit(ctx, "p1", fmt.Sprint("k", i), wallet.MoneyRequest{Amount: 10, Currency: "USD"}); err != nil {
			t.Fatal(err)
		}
	}
	e.Clock.Advance(23 * time.Hour)
	if n, err := e.Svc.PurgeKeys(ctx); err != nil || n != 0 {
		t.Fatalf("purged %d before the TTL, %v", n, err)
	}
	e.Clock.Advance(2 * time.Hour)
	if n, err := e.Svc.PurgeKeys(ctx); err != nil || n != 5 {
		t.Fatalf("purged %d, want 5, %v", n, err)
	}
	inTx(t, s, func(tx wallet.Tx) error {
		if k, _ := tx.GetKey(ctx, "p1", "k0"); k != nil {
			return errors.New("purged key still there")
		}
		return nil
	})
	if got := e.Cash(t, "p1"); got != 50 {
		t.Fatalf("purging changed money: %d", got)
	}
}

// testOneKeyMany sends n concurrent identical requests with one key: exactly
// one effect, and every answer is 409 in flight or the byte-identical replay.
func testOneKeyMany(t *testing.T, s wallet.Store, n int) {
	testOneKeyManyCfg(t, s, n, wallet.DefaultConfig().BatchMax)
}

func testOneKeyManyCfg(t *testing.T, s wallet.Store, n, batchMax int) {
	// Hundreds of queued transactions on a single-writer store under -race on
	// a loaded machine can outlast the default 10 s effect bound; this test is
	// about one effect per key, not about that bound.
	cfg := wallet.DefaultConfig()
	cfg.BatchMax = batchMax
	cfg.EffectTimeout = 2 * time.Minute
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	e.Deposit(t, "p1", 10_000)
	req := single("ev1", "m1", "s1", 20000, 100)
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		bodies    = map[string]int{}
		conflicts int
		fresh     int
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := e.Svc.PlaceBet(ctx, "p1", "the-key", req)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				bodies[string(r.Body)]++
				if !r.Replayed {
					fresh++
				}
			case buzzer.ErrorReason(err) == "idempotency_key_in_flight":
				conflicts++
			default:
				t.Errorf("unexpected answer: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if fresh != 1 || len(bodies) != 1 {
		t.Fatalf("%d fresh effects, %d distinct bodies; want 1 and 1", fresh, len(bodies))
	}
	bets, _, _ := e.Svc.Bets(ctx, "p1", "", "", 10)
	if len(bets) != 1 || e.Cash(t, "p1") != 9_900 {
		t.Fatalf("%d bets, cash %d", len(bets), e.Cash(t, "p1"))
	}
	t.Logf("%d calls: 1 effect, %d replays, %d in-flight conflicts", n, n-1-conflicts, conflicts)
	MustCheck(t, s)
}

// testConcurrentNewKeys races distinct keys of many players that share the
// house buckets, and pairs of first inserts of one key.
func testConcurrentNewKeys(t *testing.T, s wallet.Store) {
	cfg := wallet.DefaultConfig()
	cfg.Buckets = 2
	cfg.EffectTimeout = 2 * time.Minute // see testOneKeyMany
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	var wg sync.WaitGroup
	var effects atomic.Int64
	for p := 0; p < 16; p++ {
		for k := 0; k < 10; k++ {
			for dup := 0; dup < 2; dup++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r, err := e.Svc.Deposit(ctx, fmt.Sprint("p", p), fmt.Sprint("k", k), wallet.MoneyRequest{Amount: 7, Currency: "USD"})
					if err != nil {
						if buzzer.ErrorReason(err) != "idempotency_key_in_flight" {
							t.Errorf("deposit: %v", err)
						}
						return
					}
					if !r.Replayed {
						effects.Add(1)
					}
				}()
			}
		}
	}
	wg.Wait()
	if effects.Load() != 160 {
		t.Fatalf("%d effects, want 160", effects.Load())
	}
	rep := MustCheck(t, s)
	if rep.Totals["USD"] != 0 {
		t.Fatal("totals")
	}
	for p := 0; p < 16; p++ {
		if got := e.Cash(t, fmt.Sprint("p", p)); got != 70 {
			t.Fatalf("p%d cash %d, want 70", p, got)
		}
	}
}
