package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/internal/pipelinetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

func TestAuditCaptureStore(t *testing.T) {
	audittest.RunCaptureStoreTests(t, func(t *testing.T) audittest.Capture {
		db := enginetest.Postgres(t)
		return audittest.Capture{
			Write: func(ctx context.Context, recs ...*audit.Record) error {
				return db.InTx(ctx, func(tx pgx.Tx) error { return postgres.WriteOutbox(ctx, tx, recs...) })
			},
			Outbox: postgres.NewAuditOutbox(db),
		}
	})
}

// TestAuditPipeline: the wallet's bank workload on PostgreSQL with capture,
// relayed through embedded JetStream into the archive; replay equals the
// database.
func TestAuditPipeline(t *testing.T) {
	db := enginetest.Postgres(t)
	audittest.RunPipeline(t, pipeline(t, postgres.NewAuditedWalletStore(db, "default"), postgres.NewAuditOutbox(db), postgres.NewAuditState(db)).Pipeline, bankConfig())
}

func bankConfig() wallettest.BankConfig {
	cfg := wallettest.DefaultBankConfig()
	cfg.Clients, cfg.Ops, cfg.Players, cfg.Events = 8, 160, 16, 8
	// A slow machine under -race must not turn into timeouts.
	cfg.Wallet = wallet.DefaultConfig()
	cfg.Wallet.SettleBatch, cfg.Wallet.EffectTimeout = 20, time.Minute
	return cfg
}

func pipeline(t *testing.T, store *postgres.AuditedWalletStore, ob audit.CaptureStore, st audit.StateReader) pipelinetest.Pipeline {
	t.Helper()
	var w wallet.Store
	if store != nil {
		w = store // a nil *AuditedWalletStore must stay a nil interface
	}
	return pipelinetest.JetStream(t, w, ob, st)
}
