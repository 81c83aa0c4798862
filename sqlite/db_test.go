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
