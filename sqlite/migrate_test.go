package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// TestMigrationsKeepLedgerAndOutbox writes a ledger and an audit outbox
// under the schema before wallet/0003 (postings clustered by owner) and
// audit/0002 (outbox without its stream-key index), migrates, and finds
// every posting, balance, history page and outbox record as it was: the
// pending ones still pending (at the same row), the sent ones still sent
// at their stream sequences.
func TestMigrationsKeepLedgerAndOutbox(t *testing.T) {
	ctx := context.Background()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "buzzer.db")
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := sqlite.MigrateBefore(ctx, db, map[string]int{"wallet": 3, "audit": 2}); err != nil {
		t.Fatal(err)
	}
	if withoutRowid(t, db, "wallet_postings") || !hasIndexOn(t, db, "audit_outbox", "stream_key, seq") {
		t.Fatal("the older schema is not the one the migrations start from")
	}

	e := wallettest.NewEnv(t, sqlite.NewAuditedWalletStore(db, "NJ"), nil)
	const players = 12
	for p := range players {
		e.Deposit(t, fmt.Sprint("mp", p), 50_000)
		for i := range 3 {
			key := fmt.Sprintf("bj-m:%d:%d:bet", p, i)
			if _, err := e.Svc.TableStake(ctx, fmt.Sprint("mp", p), key, wallet.TableMoneyRequest{Amount: 700, Currency: "USD", Reference: key}); err != nil {
				t.Fatal(err)
			}
		}
	}
	ob := sqlite.NewAuditOutbox(db)
	captured, err := ob.Pending(ctx, 1000)
	if err != nil || len(captured) < players*4 {
		t.Fatalf("%d records captured, %v", len(captured), err)
	}
	// The first half is sent at stream sequences 1..n.
	half := len(captured) / 2
	var sent []audit.Published
	for i, c := range captured[:half] {
		sent = append(sent, audit.Published{StreamKey: c.StreamKey, Seq: c.Seq, Ref: c.Ref, StreamSeq: uint64(i + 1)})
	}
	if err := ob.MarkSent(ctx, sent); err != nil {
		t.Fatal(err)
	}
	type ledger struct {
		Entries  map[string][]wallet.Entry
		Balances map[string][]wallet.Account
		Check    *wallet.CheckReport
		Pending  []audit.Captured
		Backlog  audit.Backlog
	}
	read := func() ledger {
		t.Helper()
		l := ledger{Entries: map[string][]wallet.Entry{}, Balances: map[string][]wallet.Account{}}
		for p := range players {
			player := fmt.Sprint("mp", p)
			// Two entries a page: the cursor walks the history index.
			for cursor := ""; ; {
				page, next, err := e.Svc.Entries(ctx, player, cursor, 2)
				if err != nil {
					t.Fatal(err)
				}
				l.Entries[player] = append(l.Entries[player], page...)
				if cursor = next; next == "" {
					break
				}
			}
			if l.Balances[player], err = e.Svc.Balances(ctx, player); err != nil {
				t.Fatal(err)
			}
		}
		if l.Check, err = e.Svc.Check(ctx); err != nil {
			t.Fatal(err)
		}
		if l.Pending, err = ob.Pending(ctx, 1000); err != nil {
			t.Fatal(err)
		}
		if l.Backlog, err = ob.Backlog(ctx); err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := read()
	if !before.Check.OK || len(before.Entries["mp0"]) != 4 || len(before.Pending) != len(captured)-half {
		t.Fatalf("before migrating: check %+v, %d entries of mp0, %d pending", before.Check, len(before.Entries["mp0"]), len(before.Pending))
	}

	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if !withoutRowid(t, db, "wallet_postings") || hasIndexOn(t, db, "audit_outbox", "stream_key, seq") {
		t.Fatal("the migrations did not change the schema")
	}
	if after := read(); !reflect.DeepEqual(after, before) {
		t.Fatalf("the migrations changed what the store holds:\nbefore %+v\nafter  %+v", before, after)
	}
	// The sent half is still sent at its stream sequences: the archiver's
	// progress releases exactly it.
	if del, resent, err := ob.Release(ctx, audit.Progress{First: 1, Last: uint64(half), Archived: uint64(half)}); err != nil || del != half || resent != 0 {
		t.Fatalf("Release = %d deleted, %d resent, %v; want %d, 0", del, resent, err, half)
	}
	// The ledger keeps working on the new schema.
	if _, err := e.Svc.TableStake(ctx, "mp0", "bj-m:0:9:bet", wallet.TableMoneyRequest{Amount: 700, Currency: "USD", Reference: "bj-m:0:9:bet"}); err != nil {
		t.Fatal(err)
	}
	if rep, err := e.Svc.Check(ctx); err != nil || !rep.OK {
		t.Fatalf("check after a stake on the new schema: %+v, %v", rep, err)
	}
}

func withoutRowid(t *testing.T, db *sqlite.DB, table string) bool {
	t.Helper()
	var ddl string
	if err := db.SQL.QueryRow(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = $1`, table).Scan(&ddl); err != nil {
		t.Fatal(err)
	}
	return strings.Contains(strings.ToUpper(ddl), "WITHOUT ROWID")
}

// hasIndexOn reports whether table has an index (declared or a key's)
// whose columns are cols, e.g. "stream_key, seq".
func hasIndexOn(t *testing.T, db *sqlite.DB, table, cols string) bool {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT il.name, group_concat(ii.name, ', ') FROM pragma_index_list($1) il, pragma_index_info(il.name) ii GROUP BY il.name`, table)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		var name, got string
		if err := rows.Scan(&name, &got); err != nil {
			t.Fatal(err)
		}
		found = found || got == cols
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return found
}
