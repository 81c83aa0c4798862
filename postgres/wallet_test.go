package postgres_test

import (
	"testing"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

func newWalletStore(t *testing.T) wallet.Store {
	return postgres.NewWalletStore(enginetest.Postgres(t))
}

func TestWalletStore(t *testing.T) {
	wallettest.RunStoreTests(t, newWalletStore)
}

func TestWalletBank(t *testing.T) {
	wallettest.RunBank(t, newWalletStore)
}

// TestWalletBankCatchesDroppedKey runs the same workload on PostgreSQL with
// a client whose resend drops the idempotency key, and requires its checks
// to fail: the checks can see a double effect.
func TestWalletBankCatchesDroppedKey(t *testing.T) {
	wallettest.RunBankCatchesDroppedKey(t, newWalletStore)
}

// TestWalletBankFourLanes runs the bank with four group commits at once
// (the default is one lane): concurrent groups post to disjoint house
// buckets and must not conflict or lose anything under SERIALIZABLE.
func TestWalletBankFourLanes(t *testing.T) {
	cfg := wallettest.DefaultBankConfig()
	cfg.Ops = 4000
	cfg.Wallet = wallet.DefaultConfig()
	cfg.Wallet.SettleBatch = 20 // as the default bank
	cfg.Wallet.BatchLanes = 4
	res := wallettest.Bank(t, newWalletStore(t), cfg)
	if len(res.Problems) > 0 || res.Bets < 500 {
		t.Fatalf("bank with 4 lanes: %d bets, problems %v", res.Bets, res.Problems)
	}
}
