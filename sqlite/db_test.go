package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/sqlite"
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
	sqlite.Concurrently(workers, each, func(int, int) {
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
		}
	})
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
	sqlite.Concurrently(workers, each, func(w, i int) {
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
	})
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

// Every write transaction runs on the one writer connection, with its
// large page cache, so that its pages stay cached from one commit to the
// next; a transaction its caller abandons costs the connection (database/sql
// may leave it mid-rollback), never the next transaction; reads go to the
// rest of the pool while a write is open; and Close gives the connection
// back, so the last close checkpoints and removes the WAL.
func TestWritesKeepOneWarmConnection(t *testing.T) {
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "w.db")
	ctx := context.Background()
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.SQL.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	// A TEMP table lives in the connection that made it.
	mark := func(tx *sql.Tx) error {
		_, err := tx.Exec("CREATE TEMP TABLE writer_mark (x INTEGER)")
		return err
	}
	onWriter := func(tx *sql.Tx, marked bool) error {
		var cache int
		if err := tx.QueryRow("PRAGMA cache_size").Scan(&cache); err != nil {
			return err
		}
		if cache != -sqlite.WriterCacheKiB {
			return fmt.Errorf("writer cache_size = %d, want %d", cache, -sqlite.WriterCacheKiB)
		}
		if marked {
			var n int
			if err := tx.QueryRow("SELECT count(*) FROM temp.writer_mark").Scan(&n); err != nil {
				return fmt.Errorf("not the writer connection: %w", err)
			}
		}
		return nil
	}
	// writers runs 8 concurrent writers of 25 rows each from base; with
	// abandon, every fifth is abandoned before its commit.
	writers := func(base int, abandon bool, marked bool) {
		sqlite.Concurrently(8, 25, func(w, i int) {
			id := base + w*100 + i
			cctx, cancel := context.WithCancel(ctx)
			err := db.InTx(cctx, func(tx *sql.Tx) error {
				if err := onWriter(tx, marked); err != nil {
					return err
				}
				if _, err := tx.ExecContext(cctx, "INSERT INTO t VALUES ($1)", id); err != nil {
					return err
				}
				if abandon && i%5 == 0 {
					cancel()
				}
				return nil
			})
			cancel()
			if err != nil && !(abandon && i%5 == 0) {
				t.Errorf("write %d: %v", id, err)
			}
		})
	}
	if err := db.InTx(ctx, mark); err != nil {
		t.Fatal(err)
	}
	writers(0, false, true)
	writers(1000, true, false)
	if t.Failed() {
		return
	}
	if err := db.InTx(ctx, mark); err != nil {
		t.Fatal(err)
	}
	writers(2000, false, true)
	var n int
	if err := db.SQL.QueryRow("SELECT count(*) FROM t WHERE id >= 1000 AND id < 2000").Scan(&n); err != nil || n != 8*20 {
		t.Fatalf("%d rows of the abandoning writers (%v), want the %d not abandoned", n, err, 8*20)
	}

	// A read while a write transaction is open takes another connection.
	open, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- db.InTx(ctx, func(tx *sql.Tx) error {
			if _, err := tx.Exec("INSERT INTO t VALUES (-1)"); err != nil {
				return err
			}
			close(open)
			<-release
			return nil
		})
	}()
	<-open
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = db.SQL.QueryRowContext(rctx, "SELECT count(*) FROM t").Scan(&n)
	cancel()
	close(release)
	if err != nil {
		t.Fatalf("read during a write: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.Path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the WAL is still there after Close (%v): a connection was left open", err)
	}
}

func TestOneConnectionIsNotEnough(t *testing.T) {
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "w.db")
	cfg.MaxConns = 1
	if err := cfg.Validate(); err == nil {
		t.Fatal("max_conns 1 accepted: the writer would leave no connection for reads")
	}
}
