package sqlite_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// BenchmarkTableStakes is the wallet path of a live table's bet on serve's
// store (SQLite, synchronous=FULL, audit capture in the same transaction):
// 1,000 concurrent callers, one player each, as 1,000 tables each debiting
// one stake at a time. It reports stakes/s and the p50/p99 of one debit.
func BenchmarkTableStakes(b *testing.B) {
	const clients = 1000
	db := enginetest.SQLite(b)
	e := wallettest.NewEnv(b, sqlite.NewAuditedWalletStore(db, "NJ"), nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.Deposit(b, fmt.Sprint("tp", c), 1_000_000)
		}()
	}
	wg.Wait()
	wallettest.Concurrently(b, clients, "stakes/s", func(c int, i int64) error {
		key := fmt.Sprintf("bj-%d:%d:1:bet", c, i)
		_, err := e.Svc.TableStake(ctx, fmt.Sprint("tp", c), key, wallet.TableMoneyRequest{Amount: 200, Currency: "USD", Reference: key})
		return err
	})
}
