package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// runAudit runs one `buzzer audit ...` command and returns its output and
// exit code (0 on success).
func runAudit(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	c, ok := auditCommands()[name]
	if !ok {
		t.Fatalf("no command %q", name)
	}
	var out, errb bytes.Buffer
	err := c.run(context.Background(), args, &out, &errb)
	code := 0
	if err != nil {
		code = exitCode(err)
		out.WriteString("ERROR: " + describe(err) + "\n")
	}
	return out.String(), code
}

func writePub(t *testing.T, dataDir string) string {
	t.Helper()
	pem, code := runAudit(t, "audit key", "--data-dir", dataDir)
	if code != 0 || !strings.HasPrefix(pem, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("audit key: exit %d %s", code, pem)
	}
	path := filepath.Join(t.TempDir(), "audit.pub")
	if err := os.WriteFile(path, []byte(pem), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// verifiedArchive checks that the archive a node wrote under dataDir
// verifies against its seal key, and returns the archive's directory.
func verifiedArchive(t *testing.T, dataDir string) string {
	t.Helper()
	dir := filepath.Join(dataDir, "audit")
	if out, code := runAudit(t, "audit verify", "--archive", dir, "--pubkey", writePub(t, dataDir)); code != 0 {
		t.Fatalf("verify: exit %d %s", code, out)
	}
	return dir
}

// replayMatches checks that the archive in dir replays to a MATCH against
// store, with a report that says each of want.
func replayMatches(t *testing.T, dir, store string, want ...string) {
	t.Helper()
	out, code := runAudit(t, "audit replay", "--archive", dir, "--store", store)
	ok := code == 0 && strings.Contains(out, "MATCH")
	for _, w := range want {
		ok = ok && strings.Contains(out, w)
	}
	if !ok {
		t.Fatalf("replay: exit %d %s", code, out)
	}
}

func TestAuditKeyAndVerifyNameAFlippedByte(t *testing.T) {
	dataDir := t.TempDir()
	if _, code := runAudit(t, "audit key", "--data-dir", dataDir); code != 1 {
		t.Fatalf("audit key without a key: exit %d, want 1", code)
	}
	key, err := archive.LoadOrCreateKey(auditKeyFile(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, "audit")
	log, _, err := archive.Opener{}.OpenLog(audit.LogOptions{Dir: dir, Key: key, SegmentRecords: 4})
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	t0 := time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)
	for i := 0; i < 10; i++ {
		r, err := audit.NewLedgerTransaction(fmt.Sprint("r", i), "NJ", uint64(i+1), t0.Add(time.Duration(i)*time.Second), audit.LedgerTransaction{
			TxID: fmt.Sprint("tx", i), Kind: "deposit", Player: "p1", EffectKey: fmt.Sprint("e", i),
			Postings: []audit.Posting{{Account: "p1|NJ|USD|cash|0", Currency: "USD", Amount: 100}, {Account: "~house|NJ|USD|deposits_clearing|0", Currency: "USD", Amount: -100}}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := audit.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	if _, err := log.Append(bodies); err != nil {
		t.Fatal(err)
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	log.Close()

	pub := writePub(t, dataDir)
	if out, code := runAudit(t, "audit verify", "--archive", dir, "--pubkey", pub); code != 0 || !strings.Contains(out, "PASS: 10 records in 3 segments (2 sealed)") {
		t.Fatalf("verify of a good archive: exit %d %s", code, out)
	}
	if _, code := runAudit(t, "audit verify", "--archive", dir); code != 2 {
		t.Fatalf("verify without --pubkey: exit %d, want 2", code)
	}

	// Flip one byte inside record #6 (the third record of the second,
	// sealed segment): verify exits 1 naming that record, file and offset.
	var file string
	var off int64
	if _, err := archive.Walk(nil, dir, nil, 0, func(ri archive.RecordInfo) error {
		if ri.Number == 6 {
			file, off = ri.File, ri.Offset
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[off+50] ^= 0x20
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runAudit(t, "audit verify", "--archive", dir, "--pubkey", pub)
	want := fmt.Sprintf("FAIL: first bad record #6 in %s at byte offset %d", file, off)
	if code != 1 || !strings.Contains(out, want) {
		t.Fatalf("verify of a flipped byte: exit %d\n%s\nwant %q", code, out, want)
	}
}

// capturedStore opens a migrated SQLite store at path, runs the wallet's
// bank workload on it with capture, and closes it.
func capturedStore(t *testing.T, path string, ops int) {
	t.Helper()
	ctx := context.Background()
	cfg := sqlite.DefaultConfig()
	cfg.Path = path
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	bank := wallettest.DefaultBankConfig()
	bank.Clients, bank.Ops, bank.Players, bank.Events = 2, ops, 8, 6
	bank.Wallet = wallet.DefaultConfig()
	bank.Wallet.Jurisdiction, bank.Wallet.EffectTimeout = "NJ", time.Minute
	if res := wallettest.Bank(t, sqlite.NewAuditedWalletStore(db, "NJ"), bank); len(res.Problems) > 0 {
		t.Fatalf("bank: %v", res.Problems)
	}
}

func TestAuditReplayComparesTheArchiveWithTheStore(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	dbPath := filepath.Join(base, "buzzer.db")
	capturedStore(t, dbPath, 80)

	// Archive everything the outbox captured (here without a stream: the
	// relay and archiver have their own tests).
	cfg := sqlite.DefaultConfig()
	cfg.Path = dbPath
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := sqlite.NewAuditOutbox(db).Pending(ctx, 100000)
	if err != nil || len(pending) == 0 {
		t.Fatalf("outbox: %d records, %v", len(pending), err)
	}
	slices.SortFunc(pending, func(a, b audit.Captured) int {
		return cmp.Or(strings.Compare(a.StreamKey, b.StreamKey), cmp.Compare(a.Seq, b.Seq))
	})
	dataDir := filepath.Join(base, "data")
	key, err := archive.LoadOrCreateKey(auditKeyFile(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(dataDir, "audit")
	log, _, err := archive.Opener{}.OpenLog(audit.LogOptions{Dir: dir, Key: key, SegmentRecords: 50})
	if err != nil {
		t.Fatal(err)
	}
	var bodies [][]byte
	for _, c := range pending {
		bodies = append(bodies, c.Data)
	}
	st, err := log.Append(bodies)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != audit.Appended {
			t.Fatalf("record %d: %v", i, s)
		}
	}
	if err := log.Sync(); err != nil {
		t.Fatal(err)
	}
	log.Close()

	store := "sqlite://" + dbPath
	pub := writePub(t, dataDir)
	out, code := runAudit(t, "audit replay", "--archive", dir, "--store", store, "--pubkey", pub)
	if code != 0 || !strings.Contains(out, "MATCH") {
		t.Fatalf("replay of a complete archive: exit %d\n%s", code, out)
	}

	// One unit of money moved outside the ledger, and a bet's payout
	// changed: replay lists exactly these differences and exits 1.
	var acct, bet string
	var bal int64
	if err := db.SQL.QueryRowContext(ctx, `SELECT id, balance FROM wallet_accounts WHERE kind = 'cash' ORDER BY id LIMIT 1`).Scan(&acct, &bal); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL.QueryRowContext(ctx, `SELECT id FROM wallet_bets ORDER BY id LIMIT 1`).Scan(&bet); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.ExecContext(ctx, `UPDATE wallet_accounts SET balance = balance + 1 WHERE id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.ExecContext(ctx, `UPDATE wallet_bets SET doc = json_set(doc, '$.payout', json_extract(doc, '$.payout') + 5) WHERE id = $1`, bet); err != nil {
		t.Fatal(err)
	}
	db.Close()
	out, code = runAudit(t, "audit replay", "--archive", dir, "--store", store)
	wantBal := fmt.Sprintf("DIFF: balance %s: archive %d, store %d", acct, bal, bal+1)
	if code != 1 || !strings.Contains(out, wantBal) || !strings.Contains(out, "DIFF: bet "+bet+":") || strings.Count(out, "DIFF:") != 2 {
		t.Fatalf("replay of a tampered store: exit %d\n%s\nwant %q and bet %s", code, out, wantBal, bet)
	}
}

// TestStartAuditArchivesEveryCapturedChange wires the audit trail as serve
// does (startAudit on a node with an embedded JetStream), runs captured
// wallet traffic, waits until the outbox is empty — released only after the
// archiver acknowledged — and checks the archive with the CLI.
func TestStartAuditArchivesEveryCapturedChange(t *testing.T) {
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := &node{cfg: &cfg, log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), reg: prometheus.NewRegistry()}
	defer n.close()
	var err error
	if n.store, err = openStore(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	n.onClose(n.store.close)
	if err := n.store.migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if n.nats, err = nats.Start(ctx, cfg.NATS, n.log); err != nil {
		t.Fatal(err)
	}
	n.onClose(n.nats.Close)
	if err := startAudit(ctx, n); err != nil {
		t.Fatal(err)
	}
	bank := wallettest.DefaultBankConfig()
	bank.Clients, bank.Ops, bank.Players, bank.Events = 2, 40, 6, 4
	bank.Wallet = wallet.DefaultConfig()
	bank.Wallet.Jurisdiction, bank.Wallet.EffectTimeout = cfg.Jurisdiction, time.Minute
	if res := wallettest.Bank(t, sqlite.NewAuditedWalletStore(n.store.lite, cfg.Jurisdiction), bank); len(res.Problems) > 0 {
		t.Fatalf("bank: %v", res.Problems)
	}
	waitOutboxDrained(t, sqlite.NewAuditOutbox(n.store.lite))
	if got := testutilGauge(t, n.reg, "buzzer_audit_records_archived_total"); got == 0 {
		t.Fatal("the archiver archived nothing")
	}
	n.close()

	replayMatches(t, verifiedArchive(t, cfg.DataDir), cfg.Store)
}

func testutilGauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			return m.Gauge.GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// TestAuditArchiveRole runs `buzzer audit archive` against an external NATS:
// what the relay published ends up archived, and the role stops cleanly.
func TestAuditArchiveRole(t *testing.T) {
	ctx := context.Background()
	ncfg := nats.DefaultConfig()
	ncfg.StoreDir, ncfg.Listen = t.TempDir(), "127.0.0.1:0"
	conn, err := nats.Start(ctx, ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := nats.NewAuditStream(ctx, conn, nats.AuditConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Captured
	for i := 1; i <= 5; i++ {
		r, err := audit.NewRNGDraw(fmt.Sprint("d", i), "NJ", time.Date(2026, 2, 8, 23, 0, i, 0, time.UTC),
			audit.RNGDraw{DrawID: fmt.Sprint("d", i), Log: "rng-nj", Index: uint64(i - 1)})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := audit.Encode(r)
		recs = append(recs, audit.Captured{ID: r.ID, Jurisdiction: "NJ", StreamKey: r.StreamKey(), Seq: r.Seq, Data: b})
	}
	acks, err := stream.Publish(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	// The relay's batching may put several records in one message; the
	// role is done when the stream's ack floor passes the last of them.
	last := acks[len(acks)-1].StreamSeq
	dataDir := t.TempDir()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- auditCommands()["audit archive"].run(runCtx, []string{"--data-dir", dataDir, "--nats-url", conn.ClientURL(), "--log-level", "warn"}, &out, &errb)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := stream.Progress(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Archived == last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the archive role acknowledged %d of %d messages: %s", p.Archived, last, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pub := writePub(t, dataDir)
	if out, code := runAudit(t, "audit verify", "--archive", filepath.Join(dataDir, "audit"), "--pubkey", pub); code != 0 || !strings.Contains(out, "PASS: 5 records") {
		t.Fatalf("verify: exit %d %s", code, out)
	}
}
