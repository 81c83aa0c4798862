package wallettest

import (
	"testing"

	"github.com/buzzer-bet/buzzer/wallet"
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
	RunBankCatchesDroppedKey(t, func(*testing.T) wallet.Store { return NewMemStore() })
}

// TestBankUnbatched runs the bank with group commit off, so the path where
// every request has its own transaction is held to the same checks.
func TestBankUnbatched(t *testing.T) {
	cfg := DefaultBankConfig()
	cfg.Ops = 3000
	cfg.Wallet = wallet.DefaultConfig()
	cfg.Wallet.SettleBatch = 20
	cfg.Wallet.BatchMax = 0
	res := Bank(t, NewMemStore(), cfg)
	if len(res.Problems) > 0 || res.Bets < 500 {
		t.Fatalf("bank: %+v", res)
	}
}
