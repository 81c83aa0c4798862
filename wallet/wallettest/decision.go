package wallettest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// decision returns a well-formed decision for jurisdiction.
func decision(jurisdiction, token string) *wallet.Decision {
	h := sha256.Sum256([]byte(token))
	return &wallet.Decision{Jurisdiction: jurisdiction, TokenHash: hex.EncodeToString(h[:]),
		DecidedAt: T0.Add(-time.Second + 123456*time.Nanosecond), Source: wallet.DecisionGateway}
}

// sameDecision reports whether stored is want as the stores keep it (its
// time at microsecond precision).
func sameDecision(stored, want *wallet.Decision) bool {
	if stored == nil || want == nil {
		return stored == want
	}
	return stored.Jurisdiction == want.Jurisdiction && stored.TokenHash == want.TokenHash &&
		stored.DecidedAt.Equal(want.DecidedAt.Truncate(time.Microsecond)) && stored.Source == want.Source
}

// testDecision covers the compliance decision: refused without one when
// required and for another jurisdiction (nothing changes, the key stays
// unused), stored with deposits, withdrawals and bets and returned on reads,
// and not part of the fingerprint. It runs with group commit and without.
func testDecision(t *testing.T, s wallet.Store, batchMax int) {
	cfg := wallet.DefaultConfig()
	cfg.Jurisdiction = "NJ"
	cfg.RequireDecision = true
	cfg.BatchMax = batchMax
	e := NewEnv(t, s, &cfg)
	ctx := context.Background()
	req := wallet.MoneyRequest{Amount: 5000, Currency: "USD"}

	_, err := e.Svc.Deposit(ctx, "p1", "k1", req)
	wantCode(t, err, buzzer.EFORBIDDEN, "compliance_required")
	req.Decision = decision("PA", "tok-pa")
	_, err = e.Svc.Deposit(ctx, "p1", "k1", req)
	wantCode(t, err, buzzer.EFORBIDDEN, "jurisdiction_mismatch")
	bad := decision("NJ", "tok")
	bad.Source = "client"
	req.Decision = bad
	_, err = e.Svc.Deposit(ctx, "p1", "k1", req)
	wantCode(t, err, buzzer.EFORBIDDEN, "compliance_required")
	bet := single("ev1", "m1", "s1", 20000, 1000)
	_, err = e.Svc.PlaceBet(ctx, "p1", "b1", bet)
	wantCode(t, err, buzzer.EFORBIDDEN, "compliance_required")
	bet.Decision = decision("PA", "tok-pa")
	_, err = e.Svc.PlaceBet(ctx, "p1", "b1", bet)
	wantCode(t, err, buzzer.EFORBIDDEN, "jurisdiction_mismatch")
	if got := e.Cash(t, "p1"); got != 0 {
		t.Fatalf("refused requests moved money: cash %d", got)
	}

	// The refusals changed nothing: the same keys now run fresh.
	d1 := decision("NJ", "tok-1")
	req.Decision = d1
	r1, err := e.Svc.Deposit(ctx, "p1", "k1", req)
	if err != nil || r1.Replayed {
		t.Fatalf("deposit with a decision: %+v %v", r1, err)
	}
	// Another decision does not change the fingerprint: a replay.
	req.Decision = decision("NJ", "tok-2")
	r2, err := e.Svc.Deposit(ctx, "p1", "k1", req)
	if err != nil || !r2.Replayed || !bytes.Equal(r1.Body, r2.Body) {
		t.Fatalf("replay with another decision: %+v %v", r2, err)
	}
	wd := decision("NJ", "tok-w")
	wd.Source = wallet.DecisionEdge
	if _, err := e.Svc.Withdraw(ctx, "p1", "w1", wallet.MoneyRequest{Amount: 1000, Currency: "USD", Decision: wd}); err != nil {
		t.Fatal(err)
	}
	bd := decision("NJ", "tok-b")
	bet.Decision = bd
	rb, err := e.Svc.PlaceBet(ctx, "p1", "b1", bet)
	if err != nil || rb.Replayed {
		t.Fatalf("bet with a decision: %+v %v", rb, err)
	}
	if bytes.Contains(rb.Body, []byte("token_hash")) {
		t.Fatalf("the player's bet body shows the decision: %s", rb.Body)
	}
	b, err := e.Svc.Bet(ctx, "p1", betOf(t, rb).ID)
	if err != nil || !sameDecision(b.Decision, bd) {
		t.Fatalf("bet decision %+v (%v), want %+v", b.Decision, err, bd)
	}
	es, _, err := e.Svc.Entries(ctx, "p1", "", 10)
	if err != nil || len(es) != 3 {
		t.Fatalf("entries %+v %v", es, err)
	}
	want := map[wallet.TxnKind]*wallet.Decision{wallet.TxnDeposit: d1, wallet.TxnWithdrawal: wd, wallet.TxnBetPlaced: bd}
	for _, en := range es {
		if !sameDecision(en.Decision, want[en.Kind]) {
			t.Fatalf("%s entry decision %+v, want %+v", en.Kind, en.Decision, want[en.Kind])
		}
	}
	MustCheck(t, s)

	// Without RequireDecision a request may carry none; it is stored as none.
	cfg.RequireDecision = false
	e2 := NewEnv(t, s, &cfg)
	if _, err := e2.Svc.Deposit(ctx, "p2", "k1", wallet.MoneyRequest{Amount: 10, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}
	es, _, err = e2.Svc.Entries(ctx, "p2", "", 10)
	if err != nil || len(es) != 1 || es[0].Decision != nil {
		t.Fatalf("entries without a decision: %+v %v", es, err)
	}
	// A mismatching decision is refused even when none is required.
	_, err = e2.Svc.Deposit(ctx, "p2", "k2", wallet.MoneyRequest{Amount: 10, Currency: "USD", Decision: decision("PA", "x")})
	wantCode(t, err, buzzer.EFORBIDDEN, "jurisdiction_mismatch")
}
