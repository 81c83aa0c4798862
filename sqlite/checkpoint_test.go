package sqlite

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// openInternal opens a fresh database with the default configuration
// changed by mutate (nil: none), closed at the end of the test.
func openInternal(t *testing.T, mutate func(*Config)) *DB {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "internal.db")
	if mutate != nil {
		mutate(&cfg)
	}
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Checkpoints run in the background: the database file takes the WAL's
// pages without any commit reaching SQLite's automatic checkpoint (1,000
// pages; this writes about 600).
func TestBackgroundCheckpointCopiesTheWAL(t *testing.T) {
	db := openInternal(t, func(c *Config) { c.CheckpointEvery = 20 * time.Millisecond })
	st, err := os.Stat(db.Path)
	if err != nil {
		t.Fatal(err)
	}
	before := st.Size()
	if err := db.InTx(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`CREATE TABLE pad (b BLOB);
			WITH RECURSIVE k(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM k WHERE x < 2000) INSERT INTO pad SELECT randomblob(1000) FROM k`)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := os.Stat(db.Path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > before+1<<20 {
			if runs, failures, _ := db.CheckpointStats(); runs == 0 || failures != 0 {
				t.Fatalf("checkpoint stats: %d runs, %d failures", runs, failures)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("database file still %d bytes (%d before): no checkpoint ran", st.Size(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
