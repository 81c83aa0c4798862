package postgres_test

import (
	"fmt"
	"testing"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// BenchmarkWalletPlaceBet places single bets at 64 concurrent callers
// through the wallet service on PostgreSQL, with and without group commit
// (at several lane counts) and the audit capture (see docs/benchmarks.md).
func BenchmarkWalletPlaceBet(b *testing.B) {
	for _, audited := range []bool{false, true} {
		for _, c := range []struct{ batch, lanes int }{{1, 0}, {128, 1}, {128, 2}, {128, 4}, {128, 8}, {128, 16}} {
			name := fmt.Sprintf("audited=%v/batch=%d", audited, c.batch)
			if c.batch > 1 {
				name += fmt.Sprintf("/lanes=%d", c.lanes)
			}
			b.Run(name, func(b *testing.B) {
				db := enginetest.Postgres(b)
				var s wallet.Store = postgres.NewWalletStore(db)
				if audited {
					s = postgres.NewAuditedWalletStore(db, "default")
				}
				cfg := wallet.DefaultConfig()
				cfg.BatchMax = c.batch
				if c.lanes > 0 {
					cfg.BatchLanes = c.lanes
				}
				wallettest.BenchPlaceBets(b, s, cfg, 64, 500)
				b.ReportMetric(float64(db.Retries()), "retries")
			})
		}
	}
}
