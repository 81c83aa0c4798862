package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/wallet"
)

// newTableAuditNode builds serve's node with one in-memory table and a short
// betting window.
func newTableAuditNode(t *testing.T) (*node, *Config) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.HTTPAddr, cfg.HTTP.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Odds.Football, cfg.Odds.AmericanFootball = 2, 0
	cfg.Tables.Count = 1
	cfg.Tables.BettingWindow, cfg.Tables.ActionTimeout = time.Second, 5*time.Second
	cfg.Tables.TickInterval = 50 * time.Millisecond
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := buildNode(context.Background(), &cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.close)
	return n, &cfg
}

// playTableRound funds player, seats them at seat 1 of id, plays one round
// to its settlement by basic strategy and leaves the table.
func playTableRound(t *testing.T, n *node, id, player string) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.wallet.Deposit(ctx, player, "fund-"+player, wallet.MoneyRequest{Amount: 100_000, Currency: n.cfg.Tables.Currency, Decision: testDecision(n.cfg.Jurisdiction)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.tables.Sit(ctx, id, player, 1); err != nil {
		t.Fatal(err)
	}
	snapshot := func() table.View {
		v, err := n.tables.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := snapshot()
	tableWaitFor(t, "betting to open", func() bool {
		v = snapshot()
		return v.Phase == table.TableBetting || v.Phase == table.TableSettled
	})
	if _, err := n.tables.Act(ctx, id, table.Request{Player: player, Seat: 1, Round: v.Round, Seq: v.Seq, Action: table.PlaceBet, Amount: n.cfg.Tables.MinBet}); err != nil {
		t.Fatalf("bet: %v", err)
	}
	round := v.Round
	settled := func(v table.View) bool { return v.Round != round || v.Phase == table.TableSettled }
	tableWaitFor(t, "the round to settle", func() bool {
		v = snapshot()
		if settled(v) {
			return true
		}
		if v.Turn != nil && v.Turn.Seat == 1 {
			_, err := n.tables.Act(ctx, id, table.Request{Player: player, Seat: 1, Round: v.Round, Seq: v.Seq, Action: tableDecide(v)})
			if err != nil && buzzer.ErrorReason(err) != table.ReasonStaleSeq {
				t.Fatalf("act: %v", err)
			}
		}
		return false
	})
	if _, err := n.tables.Leave(ctx, id, player, 1); err != nil {
		t.Fatalf("leave: %v", err)
	}
}

// outboxBacklog is how many records wait in the node's two outboxes: the
// store's (the round's stakes and payouts) and the table-audit
// database's (the table's events).
func outboxBacklog(t *testing.T, n *node) int {
	t.Helper()
	total := 0
	for _, db := range []*sqlite.DB{n.store.lite, n.store.tableAudit} {
		b, err := sqlite.NewAuditOutbox(db).Backlog(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += b.Records
	}
	return total
}

// waitTableCaptured waits until the audit capture has put the table's log
// up to its current sequence number into the table-audit outbox and the
// outboxes' backlog is down to at most stuck records (the relays archived
// everything else); it returns that sequence number.
func waitTableCaptured(t *testing.T, n *node, id string, stuck func(seq int64) int) int64 {
	t.Helper()
	ctx := context.Background()
	var seq int64
	var captured uint64
	var backlog int
	defer func() {
		if t.Failed() {
			t.Logf("table %s at %d, captured %d, outbox backlog %d", id, seq, captured, backlog)
		}
	}()
	tableWaitFor(t, "the table's events to be captured and archived", func() bool {
		v, err := n.tables.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		seq = v.Seq
		err = n.store.tableAudit.InTx(ctx, func(tx *sql.Tx) error {
			var err error
			captured, err = sqlite.NewOutbox(tx).LastSeq(ctx, n.cfg.Jurisdiction, audit.ComponentTable, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		backlog = outboxBacklog(t, n)
		return seq > 0 && captured == uint64(seq) && backlog <= stuck(seq)
	})
	return seq
}

func noneStuck(int64) int { return 0 }

// tableAt is the table store's last sequence number of id, as audit.Compare
// reads a table store (State.Tables).
func tableAt(t *testing.T, n *node, id string) audit.State {
	t.Helper()
	v, err := n.tables.Snapshot(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return audit.State{Tables: map[string]uint64{id: uint64(v.Seq)}}
}

// TestServeNodeAuditsItsTables: a round played at serve's table reaches the
// audit archive — every table event, in order, next to the round's stakes
// and payouts — and the archive verifies and replays to the store.
func TestServeNodeAuditsItsTables(t *testing.T) {
	n, cfg := newTableAuditNode(t)
	playTableRound(t, n, "bj-1", "tp1")
	seq := waitTableCaptured(t, n, "bj-1", noneStuck)
	if got := testutilGauge(t, n.reg, "buzzer_audit_table_events_captured_total"); got < float64(seq) {
		t.Fatalf("captured %v table events, the table is at %d", got, seq)
	}
	// The events went to the table-audit database beside the store, not
	// through the store's own writer; its checkpoints are watched.
	if got := n.store.tableAudit.Path; got != filepath.Join(cfg.DataDir, "buzzer-table-audit.db") {
		t.Fatalf("table-audit database at %s", got)
	}
	if got := testutilGauge(t, n.reg, "buzzer_table_audit_checkpoint_failures_total"); got != 0 {
		t.Fatalf("%v checkpoints of the table-audit database failed", got)
	}
	err := n.store.lite.InTx(context.Background(), func(tx *sql.Tx) error {
		inStore, err := sqlite.NewOutbox(tx).LastSeq(context.Background(), n.cfg.Jurisdiction, audit.ComponentTable, "bj-1")
		if err == nil && inStore != 0 {
			err = fmt.Errorf("the store's outbox numbered %d of the table's events", inStore)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n.close()

	dir := verifiedArchive(t, cfg.DataDir)
	replayMatches(t, dir, cfg.Store, " 1 tables")
	st, err := audit.Replay(archive.Records{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// The archive holds the whole log, in order: every event up to the last
	// the table store has (the node's close captures any that came after
	// the wait).
	if d := audit.Diff(st, tableAt(t, n, "bj-1")); len(d) != 0 || st.Tables["bj-1"] < uint64(seq) {
		t.Fatalf("the archive's table log differs from the table store's: %v (archive at %d)", d, st.Tables["bj-1"])
	}
}

// TestServeNodeTableAuditGap: a table event record that vanishes from the
// outbox before the relay sends it (a trigger deletes it as it is
// inserted) is never papered over: the archiver holds every later event of
// the table back (out of order, left pending in the outbox), so the archive
// still verifies, and replay finds the archive's table log short of the
// table store's — a "table" difference naming the table and both ends.
func TestServeNodeTableAuditGap(t *testing.T) {
	n, cfg := newTableAuditNode(t)
	ctx := context.Background()
	v, err := n.tables.Snapshot(ctx, "bj-1")
	if err != nil {
		t.Fatal(err)
	}
	// The second event after the ones already there is lost.
	lost := v.Seq + 2
	err = n.store.tableAudit.InTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`CREATE TRIGGER lose_table_event AFTER INSERT ON audit_outbox
			WHEN NEW.stream_key LIKE '%%/table/bj-1' AND NEW.seq = %d
			BEGIN DELETE FROM audit_outbox WHERE stream_key = NEW.stream_key AND seq = NEW.seq; END`, lost))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	playTableRound(t, n, "bj-1", "tp2")
	// Every event after the lost one stays in the outbox, and whatever the
	// stream holds behind them (the archiver's acknowledgement floor cannot
	// pass them): wait until the rest is archived and the backlog settles.
	waitTableCaptured(t, n, "bj-1", func(int64) int { return 1 << 30 })
	prev, still := -1, 0
	tableWaitFor(t, "the outbox backlog to settle", func() bool {
		b := outboxBacklog(t, n)
		if b == prev {
			still++
		} else {
			prev, still = b, 0
		}
		return still >= 20 // a second without change
	})
	n.close()
	store := tableAt(t, n, "bj-1")

	dir := verifiedArchive(t, cfg.DataDir)
	st, err := audit.Replay(archive.Records{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if st.Tables["bj-1"] != uint64(lost-1) {
		t.Fatalf("the archive holds table bj-1 up to event %d, want %d: nothing past the lost event", st.Tables["bj-1"], lost-1)
	}
	if prev < int(store.Tables["bj-1"]-uint64(lost)) {
		t.Fatalf("%d records left in the outbox, want at least the %d table events after the lost one", prev, store.Tables["bj-1"]-uint64(lost))
	}
	want := audit.Difference{Kind: "table", Key: "bj-1", Archive: fmt.Sprint(lost - 1), Store: fmt.Sprint(store.Tables["bj-1"])}
	if d := audit.Diff(st, store); len(d) != 1 || d[0] != want {
		t.Fatalf("replay of an archive missing table event %d: %v, want %v", lost, d, want)
	}
}
