package sqlite_test

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"github.com/buzzer-bet/buzzer/sqlite"
)

func TestRNGStoreConformance(t *testing.T) {
	rngtest.RunStoreTests(t, func(t *testing.T) rng.Store {
		return sqlite.NewRNGStore(enginetest.SQLite(t))
	})
}

func TestRNGServiceOnSQLite(t *testing.T) {
	rngtest.RunServiceTests(t, func(t *testing.T) rngtest.Harness {
		db := enginetest.SQLite(t)
		exec := func(t *testing.T, q string, args ...any) {
			t.Helper()
			if _, err := db.SQL.ExecContext(context.Background(), q, args...); err != nil {
				t.Fatal(err)
			}
		}
		return rngtest.Harness{
			Store: sqlite.NewRNGStore(db),
			// A new handle on the same file, as a restarted process opens it.
			Reopen: func(t *testing.T) rng.Store {
				cfg := sqlite.DefaultConfig()
				cfg.Path = db.Path
				db2, err := sqlite.Open(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db2.Close() })
				return sqlite.NewRNGStore(db2)
			},
			SetRecordData: func(t *testing.T, i int64, data []byte) {
				exec(t, `UPDATE rng_records SET data = ? WHERE idx = ?`, data, i)
			},
			SetHash: func(t *testing.T, i int64, h tlog.Hash) {
				exec(t, `UPDATE rng_hashes SET hash = ? WHERE idx = ?`, h[:], i)
			},
			// The database itself refuses the insert, inside the append's transaction.
			FailAppends: func(t *testing.T, fail bool) {
				if fail {
					exec(t, `CREATE TRIGGER rng_refuse BEFORE INSERT ON rng_hashes BEGIN SELECT RAISE(ABORT, 'injected append failure'); END`)
				} else {
					exec(t, `DROP TRIGGER rng_refuse`)
				}
			},
		}
	})
}

// BenchmarkRNGDrawSQLite measures durable draws through the group-commit
// batcher with 64 concurrent clients (draws/s, p50/p95/p99 latency).
func BenchmarkRNGDrawSQLite(b *testing.B) {
	rngtest.BenchmarkDraws(b, sqlite.NewRNGStore(enginetest.SQLite(b)), 64)
}
