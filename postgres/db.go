// Package postgres is Buzzer's engine package for PostgreSQL and CockroachDB
// (one pgx code path over pgwire). It opens the pool, applies the embedded
// migrations, runs every state change under SERIALIZABLE with the shared retry
// mechanism, and implements the domain stores. It translates database errors
// by SQLSTATE or constraint name only, never by message text, and it must
// never hold business rules: those live in the domain packages.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/migrate"
	"github.com/buzzer-bet/buzzer/internal/txretry"
)

//go:embed migrations
var migrationsFS embed.FS

// Config configures the pool. URL is a postgres:// or postgresql:// URL.
type Config struct {
	URL            string         `yaml:"url" secret:"true"`
	MaxConns       int32          `yaml:"max_conns"`
	ConnectTimeout time.Duration  `yaml:"connect_timeout"`
	Retry          txretry.Policy `yaml:"retry"`
}

// DefaultConfig returns safe defaults; URL must still be set.
func DefaultConfig() Config {
	return Config{MaxConns: 32, ConnectTimeout: 5 * time.Second, Retry: txretry.DefaultPolicy()}
}

// Validate names the bad field.
func (c Config) Validate() error {
	if !strings.HasPrefix(c.URL, "postgres://") && !strings.HasPrefix(c.URL, "postgresql://") {
		return buzzer.Errorf(buzzer.EINVALID, "store url must start with postgres:// or postgresql://")
	}
	if c.MaxConns < 1 || c.MaxConns > 10000 {
		return buzzer.Errorf(buzzer.EINVALID, "store max_conns must be 1..10000, got %d", c.MaxConns)
	}
	if c.ConnectTimeout <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "store connect_timeout must be > 0")
	}
	return c.Retry.Validate()
}

// Flavor tells PostgreSQL from CockroachDB, detected at Open.
type Flavor int

const (
	FlavorPostgres Flavor = iota
	FlavorCockroach
)

// DB is an open pool with the retrying SERIALIZABLE transaction helper.
type DB struct {
	Pool    *pgxpool.Pool
	Flavor  Flavor
	retry   txretry.Policy
	retries atomic.Int64
	// OnTx, when set before the store is used, is told how long each
	// transaction took as its caller saw it (retries and waits included):
	// the store layer's latency histogram.
	OnTx func(time.Duration)
}

// Open connects, pings within ConnectTimeout, and detects the flavor. It does
// not migrate; call Migrate.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "store url cannot be parsed")
	}
	pc.MaxConns = cfg.MaxConns
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	ctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open the PostgreSQL pool")
	}
	var version string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		pool.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot reach the PostgreSQL store")
	}
	db := &DB{Pool: pool, retry: cfg.Retry}
	if strings.Contains(version, "CockroachDB") {
		db.Flavor = FlavorCockroach
	}
	return db, nil
}

// Close closes the pool.
func (db *DB) Close() { db.Pool.Close() }

// Ping checks the store answers within ctx.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.Pool.Ping(ctx); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the store is not reachable")
	}
	return nil
}

// Retries reports how many transaction attempts were retried since Open.
func (db *DB) Retries() int64 { return db.retries.Load() }

// InTx runs fn in a SERIALIZABLE transaction and commits it. When PostgreSQL
// or CockroachDB aborts the attempt with a serialization failure or deadlock
// (SQLSTATE 40001, 40P01), the whole function runs again, so fn must do all its
// reads and writes through tx and keep no side effects outside it.
func (db *DB) InTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return db.inTx(ctx, pgx.Serializable, fn)
}

// InTxIsolation is InTx at a chosen isolation level. Production code uses
// InTx; this exists so tests can prove that the invariant checks catch the
// anomalies a weaker level lets through.
func (db *DB) InTxIsolation(ctx context.Context, iso pgx.TxIsoLevel, fn func(pgx.Tx) error) error {
	return db.inTx(ctx, iso, fn)
}

func (db *DB) inTx(ctx context.Context, iso pgx.TxIsoLevel, fn func(pgx.Tx) error) error {
	return db.retrying(ctx, func() error {
		tx, err := db.Pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
		if err != nil {
			return translateConnErr(err)
		}
		return finishTx(ctx, tx, fn)
	})
}

// retrying runs attempt (one whole transaction) until it does not lose a
// serialization race, counting the reruns and observing the total time
// (OnTx) as the caller waited for it.
func (db *DB) retrying(ctx context.Context, attempt func() error) error {
	if db.OnTx != nil {
		defer func(start time.Time) { db.OnTx(time.Since(start)) }(time.Now())
	}
	obs := func(int, error) { db.retries.Add(1) }
	return txretry.Do(ctx, db.retry, IsRetryable, obs, func(int) error { return attempt() })
}

// finishTx runs fn in tx, then commits, or rolls back if fn failed.
func finishTx(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) error {
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return translateConnErr(err)
	}
	return nil
}

// IsRetryable reports whether err says the transaction lost a serialization
// race and may be run again from the start. 53200 is included because under
// SERIALIZABLE it is PostgreSQL saying its conflict-tracking memory
// (RWConflictPool) is momentarily full: the transaction was rolled back whole,
// and backing off lets the transactions in flight finish.
func IsRetryable(err error) bool {
	switch SQLState(err) {
	case "40001", "40P01", "53200":
		return true
	default:
		return false
	}
}

// SQLState returns the SQLSTATE of err's *pgconn.PgError, or "".
func SQLState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// IsUniqueViolation reports whether err violates the named unique constraint
// (any unique constraint when constraint is "").
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "23505" {
		return false
	}
	return constraint == "" || pe.ConstraintName == constraint
}

// translateConnErr keeps retryable SQLSTATEs as they are (so the loop sees
// them) and marks anything else from the connection as unavailable.
func translateConnErr(err error) error {
	if IsRetryable(err) {
		return err
	}
	var be *buzzer.Error
	if errors.As(err, &be) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "The store did not answer in time.")
	}
	return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "The store is not available.")
}

// Migrate applies every embedded migration not yet applied, each in its own
// transaction with its bookkeeping row. On PostgreSQL an advisory lock
// serializes concurrent migrators; CockroachDB has no advisory locks, so there
// the primary key on schema_migrations makes a racing migrator fail cleanly
// and the next start finds the work done.
func (db *DB) Migrate(ctx context.Context) error {
	ms, err := migrate.Load(migrationsFS, "migrations", db.Flavor == FlavorCockroach)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "embedded migrations are broken")
	}
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  TEXT NOT NULL,
		version    INT NOT NULL,
		name       TEXT NOT NULL,
		applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
		PRIMARY KEY (component, version))`); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create schema_migrations")
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if db.Flavor == FlavorPostgres {
				if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(8215577)"); err != nil {
					return err
				}
			}
			var n int
			if err := tx.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE component=$1 AND version=$2",
				m.Component, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply %s: %w", m.ID(), err)
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (component, version, name) VALUES ($1,$2,$3)",
				m.Component, m.Version, m.Name)
			return err
		})
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "migration %s failed", m.ID())
		}
	}
	return nil
}
