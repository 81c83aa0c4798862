package sqlite_test

import (
	"context"
	"database/sql"
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
)

// Concurrent read-modify-write transactions must not lose an update: every
// InTx is serializable, and busy writers are retried, not failed.
func TestInTxSerializesWriters(t *testing.T) {
	db := enginetest.SQLite(t)
	ctx := context.Background()
	if _, err := db.SQL.Exec("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL); INSERT INTO counter VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 16, 25
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				err := db.InTx(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, "SELECT n FROM counter WHERE id=1").Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, "UPDATE counter SET n=$1 WHERE id=1", n+1)
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var n int
	if err := db.SQL.QueryRow("SELECT n FROM counter WHERE id=1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != workers*each {
		t.Fatalf("counter = %d, want %d: an update was lost", n, workers*each)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	db := enginetest.SQLite(t)
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.SQL.QueryRow("SELECT count(*) FROM schema_migrations WHERE component='core'").Scan(&n); err != nil || n != 1 {
		t.Fatalf("core migrations recorded %d times (%v)", n, err)
	}
}

// Transactions whose context ends mid-way (the caller gives up between two
// writes) are all or nothing, and the connections they ran on stay usable
// for the next ones: every pair of rows is whole.
func TestInTxCancelledTransactionsLeaveNoHalf(t *testing.T) {
	db := enginetest.SQLite(t)
	if _, err := db.SQL.Exec("CREATE TABLE pairs (id INTEGER NOT NULL, half INTEGER NOT NULL, PRIMARY KEY (id, half))"); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := w*each + i
				ctx, cancel := context.WithCancel(context.Background())
				err := db.InTx(ctx, func(tx *sql.Tx) error {
					if _, err := tx.ExecContext(ctx, "INSERT INTO pairs VALUES ($1, 0)", id); err != nil {
						return err
					}
					if id%3 == 0 {
						cancel() // the caller gives up between the two halves
					}
					_, err := tx.ExecContext(ctx, "INSERT INTO pairs VALUES ($1, 1)", id)
					return err
				})
				cancel()
				if err != nil && id%3 != 0 {
					t.Errorf("pair %d: %v", id, err)
				}
			}
		}()
	}
	wg.Wait()
	var halves, whole int
	if err := db.SQL.QueryRow("SELECT count(*) FROM (SELECT id FROM pairs GROUP BY id HAVING count(*) = 1)").Scan(&halves); err != nil {
		t.Fatal(err)
	}
	if err := db.SQL.QueryRow("SELECT count(*) FROM (SELECT id FROM pairs GROUP BY id HAVING count(*) = 2)").Scan(&whole); err != nil {
		t.Fatal(err)
	}
	if halves != 0 {
		t.Fatalf("%d pairs are half written", halves)
	}
	if want := workers * each * 2 / 3; whole < want {
		t.Fatalf("%d whole pairs, want at least the %d never cancelled", whole, want)
	}
	// The store still takes writes after all of that.
	if err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT INTO pairs VALUES (-1, 0), (-1, 1)")
		return err
	}); err != nil {
		t.Fatal(err)
	}
}
