// Package sqlite is Buzzer's embedded engine package (modernc.org/sqlite, pure
// Go, WAL): the default store of `buzzer serve`, so a newcomer needs nothing
// but Go. It applies the embedded migrations, runs every state change in an
// IMMEDIATE transaction (SQLite serializes writers, so every transaction is
// serializable) with the shared retry mechanism, and implements the domain
// stores. Errors are translated by SQLite result code only.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/migrate"
	"github.com/buzzer-bet/buzzer/internal/txretry"
)

//go:embed migrations
var migrationsFS embed.FS

// Config configures the embedded store. Path is a file path; the sqlite://
// prefix of --store is stripped by cmd.
type Config struct {
	Path        string        `yaml:"path"`
	BusyTimeout time.Duration `yaml:"busy_timeout"`
	// MaxConns bounds the connection pool, the writer's own connection
	// included.
	MaxConns int            `yaml:"max_conns"`
	Retry    txretry.Policy `yaml:"retry"`
	// CheckpointEvery is how often a background checkpoint copies the WAL
	// into the database file; 0 leaves it to SQLite's automatic
	// checkpoint, inside the commit that fills the WAL past 1,000 pages.
	CheckpointEvery time.Duration `yaml:"checkpoint_every"`
}

// DefaultConfig returns safe defaults; Path must still be set.
func DefaultConfig() Config {
	return Config{BusyTimeout: 5 * time.Second, MaxConns: 8, Retry: txretry.DefaultPolicy(), CheckpointEvery: 250 * time.Millisecond}
}

// Validate names the bad field.
func (c Config) Validate() error {
	if c.Path == "" {
		return buzzer.Errorf(buzzer.EINVALID, "store path must be set")
	}
	if c.BusyTimeout < 0 {
		return buzzer.Errorf(buzzer.EINVALID, "store busy_timeout must be >= 0")
	}
	if c.MaxConns < 2 || c.MaxConns > 256 {
		// One connection is the writer's; reads need at least one more.
		return buzzer.Errorf(buzzer.EINVALID, "store max_conns must be 2..256 (one is kept for writes), got %d", c.MaxConns)
	}
	if c.CheckpointEvery < 0 {
		return buzzer.Errorf(buzzer.EINVALID, "store checkpoint_every must be >= 0")
	}
	return c.Retry.Validate()
}

// DB is an open SQLite database with the retrying transaction helper.
type DB struct {
	SQL     *sql.DB
	Path    string
	retry   txretry.Policy
	retries atomic.Int64
	// writer queues this process's write transactions. SQLite admits one
	// writer at a time; without the queue every waiting writer busy-polls
	// the file lock with sleeps of up to 100 ms, which wastes most of the
	// time under contention. busy_timeout still covers other processes.
	writer chan struct{}
	// wconn is the connection every write transaction runs on, used only
	// by whoever holds writer. SQLite keeps a connection's page cache
	// across its transactions only while no other connection writes; with
	// writes spread over the pool, every transaction started on a cold
	// cache and read its b-tree pages back from the file (a system call
	// each), and a group commit's pages overflowed the default 2 MiB cache
	// into the WAL before its commit. One connection with a cache of
	// writerCacheKiB keeps the hot pages in memory.
	wconn *sql.Conn
	// OnTx, when set before the store is used, is told how long each write
	// transaction took as its caller saw it (queueing and retries included):
	// the store layer's latency histogram.
	OnTx func(time.Duration)

	stmts *stmtCache // the hot statements, prepared once per connection

	stop, stopped chan struct{}
	closeOnce     sync.Once
	ckpt          struct{ runs, failures, walFrames atomic.Int64 }
}

// Open opens (creating if needed) the database file with WAL, full fsync on
// commit, foreign keys, and IMMEDIATE transactions.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create the store directory")
		}
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	// synchronous(FULL): an acknowledged commit survives power loss in WAL mode.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", cfg.BusyTimeout.Milliseconds()))
	if cfg.CheckpointEvery > 0 {
		// Checkpoints run in the background (see checkpoints), not in
		// the commit that happens to fill the WAL.
		q.Add("_pragma", "wal_autocheckpoint(0)")
	}
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	db, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+q.Encode())
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open the SQLite store")
	}
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open the SQLite store")
	}
	d := &DB{SQL: db, Path: cfg.Path, retry: cfg.Retry, writer: make(chan struct{}, 1), stmts: &stmtCache{db: db},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	if cfg.CheckpointEvery > 0 {
		go d.checkpoints(cfg.CheckpointEvery)
	} else {
		close(d.stopped)
	}
	return d, nil
}

// Close stops the background checkpoints and closes the database (the
// last connection to close checkpoints the WAL into the database file).
func (db *DB) Close() error {
	db.closeOnce.Do(func() { close(db.stop) })
	<-db.stopped
	// The writer connection goes back first (after the transaction in
	// flight, if any), so that closing the pool closes every connection.
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case db.writer <- struct{}{}:
		db.dropWriterConn()
		<-db.writer
	case <-t.C:
	}
	return db.SQL.Close()
}

// writerCacheKiB is the writer connection's page cache: it holds the pages
// of the busy indexes and of the largest group commit, so a commit neither
// reads them back from the file nor spills them early. It is not larger
// because the cache costs at every commit in proportion to its size: when a
// b-tree balance swaps two pages' numbers, SQLite parks one under the
// locking page's number (page 262,145 at 4 KiB pages), far past the end of
// the database, and the commit then drops every cached page past the end by
// scanning the whole page hash. Group commits balance often; at 64 MiB the
// scan was 3.5-4.8 % of serve's CPU under the tables bench, inside the
// writer lock (docs/benchmarks.md, session 9).
const writerCacheKiB = 16 << 10

// writerConn returns the writer connection, opening it if needed. The
// caller holds writer.
func (db *DB) writerConn(ctx context.Context) (*sql.Conn, error) {
	if db.wconn != nil {
		return db.wconn, nil
	}
	c, err := db.SQL.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.ExecContext(ctx, fmt.Sprintf("PRAGMA cache_size(-%d)", writerCacheKiB)); err != nil {
		c.Close()
		return nil, err
	}
	db.wconn = c
	return c, nil
}

// dropWriterConn gives the writer connection back to the pool (closing
// it if it is broken); the next transaction opens another. The caller
// holds writer.
func (db *DB) dropWriterConn() {
	if db.wconn != nil {
		db.wconn.Close()
		db.wconn = nil
	}
}

// checkpoints copies the WAL into the database file every interval, in a
// PASSIVE checkpoint on a connection of its own. SQLite's automatic
// checkpoint runs inside the commit that fills the WAL past 1,000 pages:
// that commit, and every writer queued behind it, then waits for a
// thousand page copies and the database file's fsync. A PASSIVE
// checkpoint runs beside the writer instead: it copies what no reader
// still needs and never waits for or blocks a commit, like the automatic
// one, which is PASSIVE too. The WAL starts over at the first commit after
// a checkpoint that copied all of it; a reader that holds an old snapshot
// for long delays that, as it does under SQLite's own checkpoints
// (buzzer_store_wal_pages shows it). A RESTART or TRUNCATE checkpoint
// would force it, but blocks every writer while it waits for the readers.
func (db *DB) checkpoints(interval time.Duration) {
	defer close(db.stopped)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-db.stop:
			return
		case <-t.C:
			db.checkpoint()
		}
	}
}

// checkpoint runs one PASSIVE checkpoint, counting it (and a failure) and
// recording the WAL's length it found for CheckpointStats.
func (db *DB) checkpoint() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, frames, done int64
	err := db.SQL.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
	db.ckpt.runs.Add(1)
	if err != nil {
		db.ckpt.failures.Add(1)
		return
	}
	db.ckpt.walFrames.Store(frames)
}

// CheckpointStats reports the background checkpoints since Open: how many
// ran, how many failed, and the WAL's length in pages at the last one. A
// WAL that stops being checkpointed grows with every commit; these let an
// operator see it.
func (db *DB) CheckpointStats() (runs, failures, walFrames int64) {
	return db.ckpt.runs.Load(), db.ckpt.failures.Load(), db.ckpt.walFrames.Load()
}

// Ping checks the store answers within ctx.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.SQL.PingContext(ctx); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the store is not reachable")
	}
	return nil
}

// Retries reports how many transaction attempts were retried since Open.
func (db *DB) Retries() int64 { return db.retries.Load() }

// InTx runs fn in an IMMEDIATE transaction (the write lock is taken at BEGIN,
// so two writers never deadlock upgrading a read lock) and commits it,
// retrying SQLITE_BUSY/SQLITE_LOCKED with the shared backoff. fn must do all
// its reads and writes through tx and keep no side effects outside it.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) error {
	if db.OnTx != nil {
		defer func(start time.Time) { db.OnTx(time.Since(start)) }(time.Now())
	}
	obs := func(int, error) { db.retries.Add(1) }
	return txretry.Do(ctx, db.retry, IsRetryable, obs, func(int) error {
		select {
		case db.writer <- struct{}{}:
		case <-ctx.Done():
			return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "The store did not answer in time.")
		}
		defer func() { <-db.writer }()
		tx, err := db.beginWrite(ctx)
		if err != nil {
			return translateErr(err)
		}
		if err := fn(tx); err != nil {
			db.abort(ctx, tx)
			return err
		}
		if err := tx.Commit(); err != nil {
			db.abort(ctx, tx)
			return translateErr(err)
		}
		return nil
	})
}

// beginWrite begins a transaction on the writer connection. A connection
// that cannot begin one (gone, or somehow still inside a transaction) is
// replaced once. The caller holds writer.
func (db *DB) beginWrite(ctx context.Context) (*sql.Tx, error) {
	for attempt := 0; ; attempt++ {
		conn, err := db.writerConn(ctx)
		if err != nil {
			return nil, err
		}
		tx, err := conn.BeginTx(ctx, nil)
		if err == nil || attempt == 1 || ctx.Err() != nil {
			return tx, err
		}
		db.discardWriterConn()
	}
}

// abort rolls tx back after a failure. When the caller's context has
// ended, database/sql rolls the transaction back on its own, and a
// rollback cut short by that same cancellation can leave the connection
// inside the transaction; a pooled connection would be checked before its
// next use, the held writer connection is not. So the writer connection is
// replaced then, and whenever the rollback itself fails. The caller holds
// writer.
func (db *DB) abort(ctx context.Context, tx *sql.Tx) {
	err := tx.Rollback()
	if ctx.Err() != nil || (err != nil && !errors.Is(err, sql.ErrTxDone)) {
		db.discardWriterConn()
	}
}

// discardWriterConn closes the writer connection for good (returning
// driver.ErrBadConn from Raw makes database/sql close it rather than pool
// it); the next transaction opens another. The caller holds writer.
func (db *DB) discardWriterConn() {
	if db.wconn != nil {
		_ = db.wconn.Raw(func(any) error { return driver.ErrBadConn })
		db.wconn = nil
	}
}

// unwatched returns ctx without its cancellation, once it has checked that
// ctx has not ended. modernc's driver watches a cancellable context with a
// goroutine of its own for every statement, to interrupt it; a group
// commit runs hundreds of short statements under the one write lock, and
// those goroutines and their wake-ups cost more than interrupting a
// statement of a few microseconds is worth. The transaction keeps the
// caller's context: database/sql rolls it back when that context ends, so
// a caller that gives up still leaves all or nothing.
func unwatched(ctx context.Context) (context.Context, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return context.WithoutCancel(ctx), nil
}

// Code returns the primary SQLite result code of err, or 0.
func Code(err error) int {
	var se *msqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return 0
}

// IsRetryable reports whether err is a busy or locked database, which a rerun
// of the whole transaction may get past.
func IsRetryable(err error) bool {
	switch Code(err) {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	default:
		return false
	}
}

// IsUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY constraint
// failure (SQLITE_CONSTRAINT_UNIQUE / _PRIMARYKEY extended codes).
func IsUniqueViolation(err error) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	default:
		return false
	}
}

func translateErr(err error) error {
	if IsRetryable(err) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "The store did not answer in time.")
	}
	return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "The store is not available.")
}

// Migrate applies every embedded migration not yet applied, each in its own
// transaction with its bookkeeping row.
func (db *DB) Migrate(ctx context.Context) error {
	return db.migrate(ctx, func(migrate.Migration) bool { return true })
}

// MigrateOutbox applies only what a database that holds nothing but an
// audit outbox needs (the core and audit migrations): serve's table-audit
// database, which gives the table capture a writer of its own.
func (db *DB) MigrateOutbox(ctx context.Context) error {
	return db.migrate(ctx, func(m migrate.Migration) bool { return m.Component == "core" || m.Component == "audit" })
}

// migrate applies the embedded migrations not yet applied that want
// accepts (tests build an older schema with it).
func (db *DB) migrate(ctx context.Context, want func(migrate.Migration) bool) error {
	ms, err := migrate.Load(migrationsFS, "migrations", false)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "embedded migrations are broken")
	}
	ms = slices.DeleteFunc(ms, func(m migrate.Migration) bool { return !want(m) })
	if _, err := db.SQL.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  TEXT NOT NULL,
		version    INTEGER NOT NULL,
		name       TEXT NOT NULL,
		applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
		PRIMARY KEY (component, version))`); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create schema_migrations")
	}
	for _, m := range ms {
		err := db.InTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE component=$1 AND version=$2",
				m.Component, m.Version).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply %s: %w", m.ID(), err)
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO schema_migrations (component, version, name) VALUES ($1,$2,$3)",
				m.Component, m.Version, m.Name)
			return err
		})
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "migration %s failed", m.ID())
		}
	}
	return nil
}

// PathFromURL turns "sqlite://PATH" (or "sqlite:PATH") into PATH.
func PathFromURL(u string) (string, bool) {
	for _, p := range []string{"sqlite://", "sqlite:"} {
		if strings.HasPrefix(u, p) {
			return strings.TrimPrefix(u, p), true
		}
	}
	return "", false
}
