package wallettest

import (
	"strings"
	"testing"
)

// TestBankMemStore runs a smaller bank on the in-memory store; the full size
// runs on the real engines (postgres and sqlite packages).
func TestBankMemStore(t *testing.T) {
	cfg := DefaultBankConfig()
	cfg.Ops = 5000
	res := Bank(t, NewMemStore(), cfg)
	if len(res.Problems) > 0 || res.Bets < 1000 || res.Settlements < 50 || res.Resent < 400 {
		t.Fatalf("bank: %+v", res)
	}
}

// TestBankCatchesDroppedKey shows the workload's checks fail when the
// client's resend drops the idempotency key.
func TestBankCatchesDroppedKey(t *testing.T) {
	cfg := DefaultBankConfig()
	cfg.Ops, cfg.Clients = 2000, 8
	cfg.DropKeyOnResend = true
	res := Bank(t, NewMemStore(), cfg)
	if len(res.Problems) == 0 {
		t.Fatal("a client that drops the key on resend went unnoticed")
	}
	found := false
	for _, p := range res.Problems {
		if strings.Contains(p, "never acknowledged") || strings.Contains(p, "acknowledged effects give") {
			found = true
		}
	}
	if !found {
		t.Fatalf("problems do not name the duplicate effect: %v", res.Problems[:min(5, len(res.Problems))])
	}
	t.Logf("caught: %d problems, e.g. %s", len(res.Problems), res.Problems[0])
}
