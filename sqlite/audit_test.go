package sqlite_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/internal/pipelinetest"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

func TestAuditCaptureStore(t *testing.T) {
	audittest.RunCaptureStoreTests(t, func(t *testing.T) audittest.Capture {
		db := enginetest.SQLite(t)
		return audittest.Capture{
			Write: func(ctx context.Context, recs ...*audit.Record) error {
				return db.InTx(ctx, func(tx *sql.Tx) error { return sqlite.WriteOutbox(ctx, tx, recs...) })
			},
			Outbox: sqlite.NewAuditOutbox(db),
		}
	})
}

// TestAuditPipeline: the wallet's bank workload on SQLite with capture,
// relayed through embedded JetStream into the archive; replay equals the
// database.
func TestAuditPipeline(t *testing.T) {
	db := enginetest.SQLite(t)
	audittest.RunPipeline(t, pipeline(t, sqlite.NewAuditedWalletStore(db, "default"), sqlite.NewAuditOutbox(db), sqlite.NewAuditState(db)).Pipeline, bankConfig())
}

func bankConfig() wallettest.BankConfig {
	cfg := wallettest.DefaultBankConfig()
	cfg.Clients, cfg.Ops, cfg.Players, cfg.Events = 8, 160, 16, 8
	// A slow machine under -race must not turn into timeouts.
	cfg.Wallet = wallet.DefaultConfig()
	cfg.Wallet.SettleBatch, cfg.Wallet.EffectTimeout = 20, time.Minute
	return cfg
}

func pipeline(t *testing.T, store *sqlite.AuditedWalletStore, ob audit.CaptureStore, st audit.StateReader) pipelinetest.Pipeline {
	t.Helper()
	var w wallet.Store
	if store != nil {
		w = store // a nil *AuditedWalletStore must stay a nil interface
	}
	return pipelinetest.JetStream(t, w, ob, st)
}

// TestAuditRelayResendsWhatTheStreamLost: the stream loses messages it had
// acknowledged (here purged before the archiver read them); the relay, which
// deleted nothing on the publish acknowledgement, sees the stream no longer
// holds them and publishes them again, and the archive ends up with every
// record exactly once.
func TestAuditRelayResendsWhatTheStreamLost(t *testing.T) {
	ctx := context.Background()
	db := enginetest.SQLite(t)
	var want []string
	for i := 0; i < 20; i++ {
		r := &audit.Record{Jurisdiction: "NJ", Component: audit.ComponentTable, Key: "t1", Type: audit.TypeTableEvent}
		if err := r.SetPayload(audit.TableEvent{TableID: "t1", TableSeq: uint64(i + 1), Action: "deal"}); err != nil {
			t.Fatal(err)
		}
		if err := db.InTx(ctx, func(tx *sql.Tx) error { return sqlite.WriteOutbox(ctx, tx, r) }); err != nil {
			t.Fatal(err)
		}
		want = append(want, r.ID)
	}
	p := pipeline(t, nil, sqlite.NewAuditOutbox(db), nil)
	relay, err := audit.NewRelay(audit.RelayConfig{Poll: 5 * time.Millisecond, ReleaseEvery: 10 * time.Millisecond}, p.Outbox, p.Stream, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := relay.PublishOnce(ctx); n != 20 || err != nil {
		t.Fatalf("published %d: %v", n, err)
	}
	if pending, _ := p.Outbox.Pending(ctx, 100); len(pending) != 0 {
		t.Fatalf("%d still pending after publishing", len(pending))
	}
	st, err := p.Conn.JS.Stream(ctx, nats.DefaultAuditConfig().Stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if err := relay.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if pending, _ := p.Outbox.Pending(ctx, 100); len(pending) != 20 {
		t.Fatalf("%d pending after the stream lost everything, want 20", len(pending))
	}
	dir := t.TempDir()
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	arch, err := audit.NewArchiver(audit.Config{Dir: dir, FlushAge: 10 * time.Millisecond}, p.Source, p.Log, key, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { _ = arch.Run(runCtx); done <- struct{}{} }()
	go func() { _ = relay.Run(runCtx); done <- struct{}{} }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := p.Outbox.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Records == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d records never archived", b.Records)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	<-done
	var got []string
	if err := p.Records(dir).Walk(func(b []byte) error {
		r, err := audit.Decode(b)
		if err == nil {
			got = append(got, r.ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("archive holds %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("archive record %d is %s, want %s", i, got[i], want[i])
		}
	}
}
