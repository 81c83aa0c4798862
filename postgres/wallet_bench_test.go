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
// and the audit capture (see docs/benchmarks.md).
func BenchmarkWalletPlaceBet(b *testing.B) {
	for _, audited := range []bool{false, true} {
		for _, batch := range []int{1, 128} {
			b.Run(fmt.Sprintf("audited=%v/batch=%d", audited, batch), func(b *testing.B) {
				db := enginetest.Postgres(b)
				var s wallet.Store = postgres.NewWalletStore(db)
				if audited {
					s = postgres.NewAuditedWalletStore(db, "default")
				}
				cfg := wallet.DefaultConfig()
				cfg.BatchMax = batch
				wallettest.BenchPlaceBets(b, s, cfg, 64, 500)
				b.ReportMetric(float64(db.Retries()), "retries")
			})
		}
	}
}
