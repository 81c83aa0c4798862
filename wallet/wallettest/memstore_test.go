package wallettest

import (
	"testing"

	"github.com/buzzer-bet/buzzer/wallet"
)

func TestMemStore(t *testing.T) {
	RunStoreTests(t, func(*testing.T) wallet.Store { return NewMemStore() })
}
