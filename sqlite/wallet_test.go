package sqlite_test

import (
	"testing"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

func newWalletStore(t *testing.T) wallet.Store {
	return sqlite.NewWalletStore(enginetest.SQLite(t))
}

func TestWalletStore(t *testing.T) {
	wallettest.RunStoreTests(t, newWalletStore)
}

func TestWalletBank(t *testing.T) {
	wallettest.RunBank(t, newWalletStore)
}

// TestWalletBankCatchesDroppedKey: see the PostgreSQL test of that name.
func TestWalletBankCatchesDroppedKey(t *testing.T) {
	wallettest.RunBankCatchesDroppedKey(t, newWalletStore)
}
