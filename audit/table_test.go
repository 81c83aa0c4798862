package audit_test

import (
	"context"
	"database/sql"
	"sync"
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
