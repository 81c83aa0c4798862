package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
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
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.HTTPAddr, cfg.HTTP.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Odds.Football, cfg.Odds.AmericanFootball = 2, 0
	cfg.Tables.Count = 0
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(ctx, &cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
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
	ob := sqlite.NewAuditOutbox(n.store.lite)
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := ob.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.Records == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d captured changes never left the outbox", b.Records)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := testutilGauge(t, n.reg, "buzzer_audit_records_archived_total"); got < 15 {
		t.Fatalf("the node archived %v records, want at least the 12 movements and 3 draws", got)
	}
	if got := histogramCount(t, n.reg, "buzzer_store_tx_duration_seconds"); got < 12 {
		t.Fatalf("the store layer histogram saw %d transactions, want at least the 12 movements", got)
	}
	n.close()

	dir := filepath.Join(cfg.DataDir, "audit")
	if out, code := runAudit(t, "audit verify", "--archive", dir, "--pubkey", writePub(t, cfg.DataDir)); code != 0 {
		t.Fatalf("verify: exit %d %s", code, out)
	}
	out, code := runAudit(t, "audit replay", "--archive", dir, "--store", cfg.Store)
	if code != 0 || !strings.Contains(out, "MATCH") || !strings.Contains(out, "1 RNG logs") {
		t.Fatalf("replay: exit %d %s", code, out)
	}
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
