package sqlite_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				key := fmt.Sprintf("bj-%d:%d:1:bet", c, i)
				if _, err := e.Svc.TableStake(ctx, fmt.Sprint("tp", c), key, wallet.TableMoneyRequest{Amount: 200, Currency: "USD", Reference: key}); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/el.Seconds(), "stakes/s")
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
	}
}
