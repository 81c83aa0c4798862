package postgres_test

import (
	"context"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
)

func TestRNGStoreConformance(t *testing.T) {
	rngtest.RunStoreTests(t, func(t *testing.T) rng.Store {
		return postgres.NewRNGStore(enginetest.Postgres(t))
	})
}

func openPostgres(t *testing.T, url string) *postgres.DB {
	t.Helper()
	cfg := postgres.DefaultConfig()
	cfg.URL = url
	cfg.MaxConns = 8
	db, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

func TestRNGServiceOnPostgres(t *testing.T) {
	rngtest.RunServiceTests(t, func(t *testing.T) rngtest.Harness {
		url := enginetest.PostgresURL(t)
		db := openPostgres(t, url)
		exec := func(t *testing.T, sql string, args ...any) {
			t.Helper()
			if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
				t.Fatal(err)
			}
		}
		return rngtest.Harness{
			Store:  postgres.NewRNGStore(db),
			Reopen: func(t *testing.T) rng.Store { return postgres.NewRNGStore(openPostgres(t, url)) },
			SetRecordData: func(t *testing.T, i int64, data []byte) {
				exec(t, `UPDATE rng_records SET data = $2 WHERE idx = $1`, i, data)
			},
			SetHash: func(t *testing.T, i int64, h tlog.Hash) {
				exec(t, `UPDATE rng_hashes SET hash = $2 WHERE idx = $1`, i, h[:])
			},
			// The database itself refuses the insert, inside the append's transaction.
			FailAppends: func(t *testing.T, fail bool) {
				if fail {
					exec(t, `CREATE FUNCTION rng_refuse() RETURNS trigger LANGUAGE plpgsql AS
						$$ BEGIN RAISE EXCEPTION 'injected append failure'; END $$;
						CREATE TRIGGER rng_refuse BEFORE INSERT ON rng_hashes FOR EACH STATEMENT EXECUTE FUNCTION rng_refuse()`)
				} else {
					exec(t, `DROP TRIGGER rng_refuse ON rng_hashes; DROP FUNCTION rng_refuse()`)
				}
			},
		}
	})
}

// BenchmarkRNGDrawPostgres measures durable draws through the group-commit
// batcher with 64 concurrent clients (draws/s, p50/p95/p99 latency).
func BenchmarkRNGDrawPostgres(b *testing.B) {
	rngtest.BenchmarkDraws(b, postgres.NewRNGStore(enginetest.Postgres(b)), 64)
}
