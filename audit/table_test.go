package audit_test

import (
	"context"
	"database/sql"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/table"
)

// tableWriter appends events to tables of a table store as a table's
// single writer does.
type tableWriter struct {
	t     *testing.T
	store *inmem.TableStore
	lease map[string]table.Lease
	ver   map[string]int64
	seq   map[string]int64
}

func (w *tableWriter) add(id string, n int) {
	w.t.Helper()
	ctx := context.Background()
	l, ok := w.lease[id]
	if !ok {
		var err error
		if l, err = w.store.Acquire(ctx, id, "node-1", time.Hour); err != nil {
			w.t.Fatal(err)
		}
		w.lease[id] = l
	}
	var evs []table.Event
	for i := 0; i < n; i++ {
		w.seq[id]++
		evs = append(evs, table.Event{Seq: w.seq[id], Table: id, Round: w.seq[id] / 4, Kind: table.EventAction, Seat: 1,
			Action: table.Hit, Cards: []table.Card{9}, At: time.Date(2026, 2, 8, 23, 30, 0, int(w.seq[id]), time.UTC)})
	}
	v, err := w.store.Write(ctx, table.Write{Lease: l, Version: w.ver[id], State: []byte("state"), Events: evs})
	if err != nil {
		w.t.Fatal(err)
	}
	w.ver[id] = v
}

// TestTableCaptureCopiesEveryEventOnce: table events reach the outbox in
// table order with seq = table_seq, each exactly once however often and
// however concurrently capture runs; the outbox replays to the table
// store's sequence numbers; the capture's trim floor keeps events the
// store would otherwise trim until they are captured; a gap left by a
// capture lagging past the store's bound is reported, never skipped.
func TestTableCaptureCopiesEveryEventOnce(t *testing.T) {
	ctx := context.Background()
	db := enginetest.SQLite(t)
	store := inmem.NewTableStore(buzzer.SystemClock{}, inmem.TableStoreConfig{Retain: 4, MaxRetain: 20})
	w := &tableWriter{t: t, store: store, lease: map[string]table.Lease{}, ver: map[string]int64{}, seq: map[string]int64{}}
	tables := func() []string { return []string{"t1", "t2", "t3"} } // t3 is never written
	inTx := func(ctx context.Context, fn func(audit.Outbox) error) error {
		return db.InTx(ctx, func(tx *sql.Tx) error { return fn(sqlite.NewOutbox(tx)) })
	}
	reg := prometheus.NewRegistry()
	c, err := audit.NewTableCapture(audit.TableCaptureConfig{Jurisdiction: "US-NJ", Tables: tables, Batch: 4}, store, inTx, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	capture := func(want int) {
		t.Helper()
		if n, err := c.CaptureOnce(ctx); err != nil || n != want {
			t.Fatalf("CaptureOnce = %d, %v; want %d", n, err, want)
		}
	}
	capture(0) // sets every table's trim floor, written or not
	w.add("t1", 3)
	w.add("t2", 6) // more than Retain: the floor keeps them
	capture(3 + 4) // at most Batch per table per pass
	capture(2)
	capture(0)
	w.add("t1", 5)
	// Concurrent passes: each event is written by exactly one of them.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = c.CaptureOnce(ctx) // a loser of the race fails its transaction, which is the point
		}()
	}
	wg.Wait()
	drain := func() {
		t.Helper()
		for {
			n, err := c.CaptureOnce(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
	}
	drain()
	w.add("t1", 10) // beyond Retain again, above the moved floor
	drain()

	ob := sqlite.NewAuditOutbox(db)
	pending, err := ob.Pending(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	st := audit.NewState()
	seen := map[string]bool{}
	for _, p := range pending {
		r, err := audit.DecodeCanonical(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if seen[r.ID] {
			t.Fatalf("record %s captured twice", r.ID)
		}
		seen[r.ID] = true
		if err := st.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != 24 {
		t.Fatalf("%d records captured, want 24", len(pending))
	}
	d, err := audit.Compare(ctx, st, audit.TableLogState{Log: store, Tables: tables})
	if err != nil || len(d) != 0 {
		t.Fatalf("captured tables differ from the store: %v %v", d, err)
	}

	// More events than the store keeps above its floor (MaxRetain) arrive
	// before capture runs: the store trims anyway, and the capture reports
	// the gap and writes nothing past it.
	w.add("t2", 25)
	_, err = c.CaptureOnce(ctx)
	if buzzer.ErrorReason(err) != table.ReasonEventsTrimmed {
		t.Fatalf("capture across a trimmed gap: %v", err)
	}
	if n := metricValue(t, reg, "buzzer_audit_table_capture_gaps_total"); n != 1 {
		t.Fatalf("gaps counted %v", n)
	}
	after, _ := ob.Pending(ctx, 1000)
	if len(after) != len(pending) {
		t.Fatalf("%d records captured across the gap", len(after)-len(pending))
	}

	// The table store restarts empty (memory) and t1 starts again at seq
	// 1: the capture refuses rather than skipping or overwriting.
	fresh := inmem.NewTableStore(buzzer.SystemClock{}, inmem.TableStoreConfig{})
	w = &tableWriter{t: t, store: fresh, lease: map[string]table.Lease{}, ver: map[string]int64{}, seq: map[string]int64{}}
	w.add("t1", 2)
	c2, err := audit.NewTableCapture(audit.TableCaptureConfig{Jurisdiction: "US-NJ", Tables: func() []string { return []string{"t1"} }}, fresh, inTx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.CaptureOnce(ctx); buzzer.ErrorReason(err) != audit.ReasonTableLogRegressed {
		t.Fatalf("capture of a table log that went back: %v", err)
	}
}

// TestTableCaptureGroupsBusyTables: once the capture knows the tables'
// cursors, a pass over many busy tables takes one store transaction per
// TablesPerTx tables, not one per table; a group whose transaction fails
// because one table's cursor moved under it (another capturer) falls back
// to one transaction per table, and every event is still captured once.
func TestTableCaptureGroupsBusyTables(t *testing.T) {
	ctx := context.Background()
	db := enginetest.SQLite(t)
	store := inmem.NewTableStore(buzzer.SystemClock{}, inmem.TableStoreConfig{Retain: 4, MaxRetain: 100})
	w := &tableWriter{t: t, store: store, lease: map[string]table.Lease{}, ver: map[string]int64{}, seq: map[string]int64{}}
	var ids []string
	for i := range 50 {
		ids = append(ids, "t"+strconv.Itoa(i))
	}
	var txs atomic.Int64
	inTx := func(ctx context.Context, fn func(audit.Outbox) error) error {
		txs.Add(1)
		return db.InTx(ctx, func(tx *sql.Tx) error { return fn(sqlite.NewOutbox(tx)) })
	}
	cfg := audit.TableCaptureConfig{Jurisdiction: "US-NJ", Tables: func() []string { return ids }, TablesPerTx: 16}
	c, err := audit.NewTableCapture(cfg, store, inTx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	pass := func(want int) int64 {
		t.Helper()
		before := txs.Load()
		if n, err := c.CaptureOnce(ctx); err != nil || n != want {
			t.Fatalf("CaptureOnce = %d, %v; want %d", n, err, want)
		}
		return txs.Load() - before
	}
	for _, id := range ids {
		w.add(id, 3)
	}
	if n := pass(150); n != 50 {
		t.Fatalf("first pass (cursors unknown) took %d transactions, want one per table", n)
	}
	for _, id := range ids {
		w.add(id, 2)
	}
	if n := pass(100); n != 4 {
		t.Fatalf("a pass over 50 busy tables took %d transactions, want 4 (16 tables each)", n)
	}
	if n := pass(0); n != 0 {
		t.Fatalf("an idle pass took %d transactions", n)
	}

	// Another capturer takes t3's new events first: this capture's group
	// holding t3 fails, and its tables are captured one by one.
	for _, id := range ids {
		w.add(id, 1)
	}
	other, err := audit.NewTableCapture(audit.TableCaptureConfig{Jurisdiction: "US-NJ", Tables: func() []string { return []string{"t3"} }}, store, inTx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := other.CaptureOnce(ctx); err != nil || n != 1 {
		t.Fatalf("other capturer: %d, %v", n, err)
	}
	if n := pass(49); n != 4+16 {
		t.Fatalf("a pass with one failed group took %d transactions, want 4 + 16", n)
	}
	pending, err := sqlite.NewAuditOutbox(db).Pending(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	st := audit.NewState()
	for _, p := range pending {
		r, err := audit.DecodeCanonical(p.Data)
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(r); err != nil {
			t.Fatal(err)
		}
	}
	if len(pending) != 50*6 {
		t.Fatalf("%d records captured, want %d", len(pending), 50*6)
	}
	if d, err := audit.Compare(ctx, st, audit.TableLogState{Log: store, Tables: func() []string { return ids }}); err != nil || len(d) != 0 {
		t.Fatalf("captured tables differ from the store: %v %v", d, err)
	}
}
