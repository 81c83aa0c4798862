package wallet_test

import (
	"math/big"
	"testing"

	"pgregory.net/rapid"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

func FuzzDecodePlaceBet(f *testing.F) {
	f.Add([]byte(`{"stake":100,"currency":"USD","legs":[{"event_id":"e","market_id":"m","selection_id":"s","price":"2.5"}],"price_change":"any"}`))
	f.Add([]byte(`{"stake":1,"currency":"USD","legs":[{"event_id":"e","market_id":"m","selection_id":"s","price":1.0001},{"event_id":"e","market_id":"m2","selection_id":"s","price":"3"}]}`))
	f.Add([]byte(`{"stake":-1}`))
	f.Add([]byte(`{"stake":100,"currency":"usd","legs":[]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := wallet.DecodePlaceBet(data, 20)
		if err != nil {
			if buzzer.ErrorCode(err) != buzzer.EINVALID && buzzer.ErrorCode(err) != buzzer.ETOOLARGE {
				t.Fatalf("decoder error with code %q: %v", buzzer.ErrorCode(err), err)
			}
			return
		}
		if r.Stake <= 0 || len(r.Legs) == 0 || len(r.Legs) > 20 || r.Currency.Validate() != nil {
			t.Fatalf("accepted an invalid request: %+v", r)
		}
		events := map[string]bool{}
		for _, l := range r.Legs {
			if l.Price < buzzer.MinPrice || l.Price > buzzer.MaxPrice || events[l.EventID] {
				t.Fatalf("accepted an invalid leg: %+v", l)
			}
			events[l.EventID] = true
		}
		if _, err := wallet.Fingerprint(wallet.RoutePlaceBet, r); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzDecodeMoney(f *testing.F) {
	f.Add([]byte(`{"amount":100,"currency":"USD"}`))
	f.Add([]byte(`{"amount":1.5,"currency":"USD"}`))
	f.Add([]byte(`{"amount":100,"currency":"USD","player_id":"other"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := wallet.DecodeMoney(data)
		if err == nil && (r.Amount <= 0 || r.Currency.Validate() != nil) {
			t.Fatalf("accepted %+v", r)
		}
		if err != nil && buzzer.ErrorCode(err) != buzzer.EINVALID && buzzer.ErrorCode(err) != buzzer.ETOOLARGE {
			t.Fatalf("code %q", buzzer.ErrorCode(err))
		}
	})
}

func FuzzDecodeSettle(f *testing.F) {
	f.Add([]byte(`{"result_version":1,"outcomes":[{"selection_id":"s1","result":"won","void_factor":"0.5","dead_heat_factor":"0.5"}]}`))
	f.Add([]byte(`{"result_version":2,"outcomes":[{"selection_id":"s1","result":"void"},{"selection_id":"s1","result":"lost"}]}`))
	f.Add([]byte(`{"result_version":1,"outcomes":[{"selection_id":"s1","result":"won","void_factor":1.5}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := wallet.DecodeSettle(data)
		if err != nil {
			return
		}
		for _, o := range r.Outcomes {
			if o.VoidFactor < 0 || o.VoidFactor > wallet.FactorOne || o.DeadHeatFactor <= 0 || o.DeadHeatFactor > wallet.FactorOne {
				t.Fatalf("accepted factors %+v", o)
			}
		}
	})
}

func FuzzParseFactor(f *testing.F) {
	for _, s := range []string{"0", "1", "0.5", "0.3333", "1.0", "1.0001", "0.", ".5", "-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := wallet.ParseFactor(s)
		if err != nil {
			return
		}
		if v < 0 || v > wallet.FactorOne {
			t.Fatalf("%q parsed to %d", s, v)
		}
		back, err := wallet.ParseFactor(v.String())
		if err != nil || back != v {
			t.Fatalf("%q -> %d -> %q -> %d, %v", s, v, v.String(), back, err)
		}
	})
}

// TestTransactionBalanceRule: a transaction validates iff its postings sum
// to zero per currency (given distinct accounts and no zero posting).
func TestTransactionBalanceRule(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(2, 8).Draw(t, "n")
		txn := &wallet.Transaction{ID: "t", Kind: wallet.TxnDeposit, EffectKey: "k"}
		sums := map[buzzer.Currency]int64{}
		for i := 0; i < n; i++ {
			c := buzzer.Currency(rapid.SampledFrom([]string{"USD", "EUR"}).Draw(t, "cur"))
			a := buzzer.Amount(rapid.Int64Range(-1000, 1000).Filter(func(v int64) bool { return v != 0 }).Draw(t, "amt"))
			txn.Postings = append(txn.Postings, wallet.Posting{Account: wallet.AccountKey{Owner: "o", Jurisdiction: "j", Currency: c, Kind: wallet.KindCash, Bucket: i}, Amount: a})
			sums[c] += int64(a)
		}
		balanced := true
		for _, s := range sums {
			if s != 0 {
				balanced = false
			}
		}
		if err := txn.Validate(); (err == nil) != balanced {
			t.Fatalf("balanced=%v but Validate gave %v", balanced, err)
		}
		// Closing every currency with a counter-posting always balances.
		for c, s := range sums {
			if s != 0 {
				txn.Postings = append(txn.Postings, wallet.Posting{Account: wallet.AccountKey{Owner: wallet.HouseOwner, Jurisdiction: "j", Currency: c, Kind: wallet.KindDepositsClearing}, Amount: buzzer.Amount(-s)})
			}
		}
		if len(txn.Postings) >= 2 {
			if err := txn.Validate(); err != nil {
				t.Fatalf("closed transaction rejected: %v", err)
			}
		}
	})
}

// TestSettlementPayoutRules checks the settlement arithmetic against its
// definition: never negative, a void leg counts as 1.0, a lost leg without
// void factor loses the bet, a full win pays floor(stake × Π prices), and
// the payout never exceeds that full-win payout.
func TestSettlementPayoutRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		stake := buzzer.Amount(rapid.Int64Range(1, 1_000_000).Draw(t, "stake"))
		n := rapid.IntRange(1, 5).Draw(t, "legs")
		b := &wallet.Bet{ID: "b", Stake: stake}
		var prices []buzzer.Price
		exact := new(big.Rat).SetInt64(int64(stake))
		lostOutright := false
		for i := 0; i < n; i++ {
			p := buzzer.Price(rapid.Int64Range(int64(buzzer.MinPrice), 200000).Draw(t, "price"))
			prices = append(prices, p)
			res := rapid.SampledFrom([]wallet.LegResult{wallet.ResultWon, wallet.ResultLost, wallet.ResultVoid}).Draw(t, "result")
			vf := wallet.Factor(rapid.SampledFrom([]int64{0, 0, 2500, 5000, 10000}).Draw(t, "void"))
			dh := wallet.Factor(rapid.SampledFrom([]int64{10000, 10000, 5000, 3333}).Draw(t, "dh"))
			l := wallet.Leg{Price: p, ResultVersion: 1, Result: res, VoidFactor: vf, DeadHeatFactor: dh}
			b.Legs = append(b.Legs, l)
			m := new(big.Rat)
			switch {
			case res == wallet.ResultVoid:
				m.SetInt64(1)
			case res == wallet.ResultLost:
				m.Set(vf.Rat())
			default:
				w := new(big.Rat).Sub(big.NewRat(1, 1), vf.Rat())
				w.Mul(w, p.Rat())
				w.Mul(w, dh.Rat())
				m.Add(vf.Rat(), w)
			}
			if m.Sign() == 0 {
				lostOutright = true
			}
			exact.Mul(exact, m)
		}
		got, settled, err := wallet.SettlementPayout(b)
		if err != nil || !settled {
			t.Fatalf("settled=%v err=%v", settled, err)
		}
		want := buzzer.Amount(new(big.Int).Quo(exact.Num(), exact.Denom()).Int64())
		if lostOutright {
			want = 0
		}
		if got != want {
			t.Fatalf("payout %d, want %d", got, want)
		}
		max, err := buzzer.Payout(stake, prices...)
		if err == nil && (got < 0 || got > max) {
			t.Fatalf("payout %d outside [0, %d]", got, max)
		}
		// All legs void: the stake comes back exactly.
		for i := range b.Legs {
			b.Legs[i].Result = wallet.ResultVoid
		}
		if got, _, _ := wallet.SettlementPayout(b); got != stake {
			t.Fatalf("all-void payout %d, want stake %d", got, stake)
		}
		// An unresulted leg keeps the bet open unless another leg lost.
		b.Legs[0].ResultVersion = 0
		if _, settled, _ := wallet.SettlementPayout(b); settled {
			t.Fatal("a bet with an unresulted leg and no lost leg settled")
		}
	})
}
