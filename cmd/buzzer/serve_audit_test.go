package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// TestServeNodeAuditsItsMoney: the node `serve` builds writes every wallet
// change and every RNG draw through the audited stores, and its own
// archiver and relay carry them into the archive, which then replays to
// exactly the store (balances, and the RNG log's size and root).
func TestServeNodeAuditsItsMoney(t *testing.T) {
	ctx := context.Background()
	n := testNode(t, func(c *Config) { c.Odds.Football, c.Tables.Count = 2, 0 })
	cfg := *n.cfg
	for i := range 6 {
		player := fmt.Sprintf("p%d", i%3)
		if _, err := n.wallet.Deposit(ctx, player, fmt.Sprint("d-", i), wallet.MoneyRequest{Amount: 10_000, Currency: "USD", Decision: testDecision(cfg.Jurisdiction)}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.wallet.Withdraw(ctx, player, fmt.Sprint("w-", i), wallet.MoneyRequest{Amount: 2_500, Currency: "USD", Decision: testDecision(cfg.Jurisdiction)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := n.rng.Draw(ctx, rng.DrawRequest{Purpose: "test.audit", Ref: fmt.Sprint("r-", i), Requester: "p0", Kind: rng.KindInt, N: 6, Count: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// The node's wallet itself refuses money that arrives without a location
	// decision (a route mounted without the gate fails closed).
	if _, err := n.wallet.Deposit(ctx, "p9", "no-decision", wallet.MoneyRequest{Amount: 10_000, Currency: "USD"}); buzzer.ErrorReason(err) != "compliance_required" {
		t.Fatalf("deposit without a decision: %v", err)
	}
	// A refused withdrawal changes nothing and so captures nothing.
	if _, err := n.wallet.Withdraw(ctx, "p0", "w-too-much", wallet.MoneyRequest{Amount: 1 << 40, Currency: "USD", Decision: testDecision(cfg.Jurisdiction)}); err == nil {
		t.Fatal("an overdraft was accepted")
	}
	waitOutboxDrained(t, sqlite.NewAuditOutbox(n.store.lite))
	if got := testutilGauge(t, n.reg, "buzzer_audit_records_archived_total"); got < 15 {
		t.Fatalf("the node archived %v records, want at least the 12 movements and 3 draws", got)
	}
	if got := histogramCount(t, n.reg, "buzzer_store_tx_duration_seconds"); got < 12 {
		t.Fatalf("the store layer histogram saw %d transactions, want at least the 12 movements", got)
	}
	// The SQLite store's background checkpoints are watched, and none failed.
	if got := testutilGauge(t, n.reg, "buzzer_store_checkpoint_failures_total"); got != 0 {
		t.Fatalf("%v background checkpoints failed", got)
	}
	testutilGauge(t, n.reg, "buzzer_store_wal_pages")
	n.close()

	replayMatches(t, verifiedArchive(t, cfg.DataDir), cfg.Store, "1 RNG logs")
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// testDecision is an edge decision for a test that calls the wallet
// directly, as the geolocation gate would have passed it.
func testDecision(jurisdiction string) *wallet.Decision {
	return &wallet.Decision{Jurisdiction: jurisdiction, TokenHash: strings.Repeat("ab", 32), DecidedAt: time.Now(), Source: wallet.DecisionEdge}
}

// testNode builds the node `serve` would run, in-process, on a fresh data
// dir and free ports (embedded SQLite and JetStream, dev keys), with mutate
// applied to the defaults; it is closed when the test ends.
func testNode(t *testing.T, mutate func(*Config)) *node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.HTTPAddr, cfg.HTTP.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Odds.AmericanFootball = 0
	if mutate != nil {
		mutate(&cfg)
	}
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(context.Background(), &cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	return n
}

// backlogged is an outbox whose undelivered records can be counted.
type backlogged interface {
	Backlog(ctx context.Context) (audit.Backlog, error)
}

// waitOutboxDrained waits (bounded: a hang guard, not a timing check) until
// the relay has delivered every captured change.
func waitOutboxDrained(t *testing.T, ob backlogged) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := ob.Backlog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if b.Records == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d captured changes never left the outbox", b.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
