package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// outboxDB opens a fresh database with MigrateOutbox only.
func outboxDB(t *testing.T) *sqlite.DB {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "buzzer-table-audit.db")
	db, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.MigrateOutbox(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func tableNames(t *testing.T, db *sqlite.DB) map[string]bool {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	names := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names[n] = true
	}
	return names
}

// TestMigrateOutboxHoldsOnlyTheOutbox: the table-audit database gets the
// outbox and its counters, and none of the wallet's or the RNG log's tables.
func TestMigrateOutboxHoldsOnlyTheOutbox(t *testing.T) {
	db := outboxDB(t)
	names := tableNames(t, db)
	for _, want := range []string{"audit_outbox", "audit_sequences", "store_meta", "schema_migrations"} {
		if !names[want] {
			t.Errorf("table %s missing; have %v", want, names)
		}
	}
	for n := range names {
		if n != "audit_outbox" && n != "audit_sequences" && n != "store_meta" && n != "schema_migrations" {
			t.Errorf("outbox database has table %s", n)
		}
	}
	// Running it again changes nothing.
	if err := db.MigrateOutbox(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func writeRecords(t *testing.T, db *sqlite.DB, recs ...*audit.Record) {
	t.Helper()
	ctx := context.Background()
	if err := db.InTx(ctx, func(tx *sql.Tx) error { return sqlite.WriteOutbox(ctx, tx, recs...) }); err != nil {
		t.Fatal(err)
	}
}

func rec(c audit.Component, key string) *audit.Record {
	r := &audit.Record{Jurisdiction: "NJ", Component: c, Key: key, Type: "test.thing", Time: time.Unix(1_800_000_000, 0)}
	if err := r.SetPayload(map[string]string{"k": key}); err != nil {
		panic(err)
	}
	return r
}

func lastSeq(t *testing.T, db *sqlite.DB, c audit.Component, key string) uint64 {
	t.Helper()
	var n uint64
	err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		var err error
		n, err = sqlite.NewOutbox(tx).LastSeq(context.Background(), "NJ", c, key)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAdoptStreamCursors: a component's capture moving to another outbox
// continues each of its streams after the last record the old outbox
// numbered; other components' counters stay where they are, the old
// outbox keeps its records, and adopting again (every start) never moves a
// counter back.
func TestAdoptStreamCursors(t *testing.T) {
	ctx := context.Background()
	main, tables := enginetest.SQLite(t), outboxDB(t)
	writeRecords(t, main, rec(audit.ComponentTable, "T1"), rec(audit.ComponentTable, "T1"), rec(audit.ComponentTable, "T1"),
		rec(audit.ComponentTable, "T2"), rec(audit.ComponentWallet, "T1"), rec(audit.ComponentWallet, "p-1"))
	pa := rec(audit.ComponentTable, "T1")
	pa.Jurisdiction = "PA"
	writeRecords(t, main, pa)

	moved, err := tables.AdoptStreamCursors(ctx, main, "NJ", audit.ComponentTable)
	if err != nil || moved != 2 {
		t.Fatalf("moved %d, %v; want 2 (T1, T2)", moved, err)
	}
	if got := lastSeq(t, tables, audit.ComponentTable, "T1"); got != 3 {
		t.Fatalf("T1 continues after %d, want 3", got)
	}
	if got := lastSeq(t, tables, audit.ComponentWallet, "T1"); got != 0 {
		t.Fatalf("a wallet stream moved too (at %d)", got)
	}
	var paMoved int
	if err := tables.SQL.QueryRow(`SELECT count(*) FROM audit_sequences WHERE stream_key = 'PA/table/T1'`).Scan(&paMoved); err != nil || paMoved != 0 {
		t.Fatalf("another jurisdiction's table stream moved (%d, %v)", paMoved, err)
	}
	// The next table record is T1#4 in the new outbox.
	writeRecords(t, tables, rec(audit.ComponentTable, "T1"))
	pending, err := sqlite.NewAuditOutbox(tables).Pending(ctx, 10)
	if err != nil || len(pending) != 1 || pending[0].Seq != 4 || pending[0].StreamKey != "NJ/table/T1" {
		t.Fatalf("new outbox holds %+v, %v; want NJ/table/T1#4", pending, err)
	}
	old, err := sqlite.NewAuditOutbox(main).Pending(ctx, 10)
	if err != nil || len(old) != 7 {
		t.Fatalf("old outbox holds %d records, %v; want its 7 still to relay", len(old), err)
	}
	// Again (the next start): the new outbox is ahead, nothing moves back.
	if moved, err := tables.AdoptStreamCursors(ctx, main, "NJ", audit.ComponentTable); err != nil || moved != 0 {
		t.Fatalf("second adoption moved %d, %v", moved, err)
	}
	if got := lastSeq(t, tables, audit.ComponentTable, "T1"); got != 4 {
		t.Fatalf("T1 at %d after the second adoption, want 4", got)
	}
	if _, err := tables.AdoptStreamCursors(ctx, main, "NJ", audit.Component("nope")); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("unknown component: %v", err)
	}
	if _, err := tables.AdoptStreamCursors(ctx, main, "N/J", audit.ComponentTable); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("a jurisdiction with a slash: %v", err)
	}
}
