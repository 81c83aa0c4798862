package postgres_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/nats"
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

// testPipeline is audittest.Pipeline with the NATS connection behind it.
type testPipeline struct {
	audittest.Pipeline
	Conn *nats.Conn
}

func pipeline(t *testing.T, store *postgres.AuditedWalletStore, ob audit.CaptureStore, st audit.StateReader) testPipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ncfg := nats.DefaultConfig()
	ncfg.StoreDir = t.TempDir()
	conn, err := nats.Start(ctx, ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	stream, err := nats.NewAuditStream(ctx, conn, nats.AuditConfig{AckWait: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	src, err := nats.NewAuditSource(ctx, conn, nats.AuditConfig{AckWait: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	p := audittest.Pipeline{
		Outbox: ob, State: st, Stream: stream, Source: src, Log: archive.Opener{},
		Records: func(dir string) audit.Records { return archive.Records{Dir: dir} },
		Verify: func(dir string, pub ed25519.PublicKey) error {
			_, err := archive.VerifyRecords(nil, dir, pub)
			return err
		},
	}
	if store != nil {
		p.Wallet = store
	}
	return testPipeline{Pipeline: p, Conn: conn}
}
