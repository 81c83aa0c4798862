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
