// Package enginetest gives integration tests real engines: PostgreSQL, SQLite,
// Redis and embedded NATS JetStream. PostgreSQL and Redis come from
// BUZZER_TEST_POSTGRES_URL / BUZZER_TEST_REDIS_URL, or else from a throwaway
// instance started from the installed binaries in a temp dir on a free port.
// Each test gets its own database or key prefix. When an engine cannot be had,
// the test is skipped with a loud reason — except when CI is set, where it
// fails, so CI can never pass by skipping. It never mocks an engine.
package enginetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// Unavailable skips the test with a loud reason, or fails it when CI is set.
func Unavailable(t testing.TB, engine string, err error) {
	t.Helper()
	msg := fmt.Sprintf("ENGINE UNAVAILABLE: %s: %v — this integration test did NOT run", engine, err)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set: failing instead of skipping)")
	}
	t.Skip(msg)
}

// RandomName returns prefix followed by 12 random hex characters.
func RandomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

var pg struct {
	once     sync.Once
	adminURL string // a URL to the maintenance database
	template string // a migrated template database
	err      error
}

// Postgres returns a migrated database of its own for this test, dropped at
// cleanup.
func Postgres(t testing.TB) *postgres.DB {
	t.Helper()
	u := PostgresURL(t)
	cfg := postgres.DefaultConfig()
	cfg.URL = u
	cfg.MaxConns = 16
	db, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// PostgresURL returns the URL of a fresh, migrated database of this test's
// own (for tests that start processes), dropped at cleanup.
func PostgresURL(t testing.TB) string {
	t.Helper()
	pg.once.Do(func() { pg.adminURL, pg.template, pg.err = setupPostgres() })
	if pg.err != nil {
		Unavailable(t, "PostgreSQL", pg.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, pg.adminURL)
	if err != nil {
		Unavailable(t, "PostgreSQL", err)
	}
	defer admin.Close(ctx)
	name := RandomName("buzzer_t_")
	// Copying a migrated template is much faster than migrating each database.
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, pg.template)); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, pg.adminURL); err == nil {
			_, _ = c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
			c.Close(ctx)
		}
	})
	return withDatabase(pg.adminURL, name)
}

func withDatabase(raw, db string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = "/" + db
	return u.String()
}

func setupPostgres() (adminURL, template string, err error) {
	adminURL = os.Getenv("BUZZER_TEST_POSTGRES_URL")
	if adminURL == "" {
		adminURL, err = startPostgres()
		if err != nil {
			return "", "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", "", fmt.Errorf("connect %s: %w", redact(adminURL), err)
	}
	defer admin.Close(ctx)
	template = RandomName("buzzer_tmpl_")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+template); err != nil {
		return "", "", err
	}
	cfg := postgres.DefaultConfig()
	cfg.URL = withDatabase(adminURL, template)
	db, err := postgres.Open(ctx, cfg)
	if err != nil {
		return "", "", err
	}
	err = db.Migrate(ctx)
	db.Close()
	if err != nil {
		return "", "", fmt.Errorf("migrate template: %w", err)
	}
	return adminURL, template, nil
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable url)"
	}
	return p.Redacted()
}

// pgBinDir finds initdb: on PATH, else the newest /usr/lib/postgresql/*/bin.
func pgBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("BUZZER_TEST_POSTGRES_URL is not set and no initdb is installed")
}

// startPostgres runs a throwaway server for this test binary. PostgreSQL
// refuses to run as root, so as root it runs as the postgres user.
func startPostgres() (string, error) {
	bin, err := pgBinDir()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "buzzer-pg-")
	if err != nil {
		return "", err
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	run := func(name string, args ...string) error {
		cmdArgs := append([]string{filepath.Join(bin, name)}, args...)
		if os.Geteuid() == 0 {
			cmdArgs = append([]string{"runuser", "-u", "postgres", "--"}, cmdArgs...)
		}
		out, err := exec.Command(cmdArgs[0], cmdArgs[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			return "", fmt.Errorf("chown: %v: %s", err, out)
		}
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		return "", err
	}
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300", port, dir)
	if err := run("pg_ctl", "-D", data, "-o", opts, "-w", "-t", "60", "-l", filepath.Join(dir, "log"), "start"); err != nil {
		return "", err
	}
	stop := fmt.Sprintf("%s -D %s -m immediate stop", filepath.Join(bin, "pg_ctl"), data)
	if os.Geteuid() == 0 {
		stop = "runuser -u postgres -- " + stop
	}
	reapWhenGone(stop + "; rm -rf " + dir)
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SQLite returns a migrated database in the test's temp dir.
func SQLite(t testing.TB) *sqlite.DB {
	t.Helper()
	cfg := sqlite.DefaultConfig()
	cfg.Path = filepath.Join(t.TempDir(), "buzzer.db")
	db, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open sqlite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate sqlite: %v", err)
	}
	return db
}

// SQLitePath returns the path of a fresh, migrated SQLite file.
func SQLitePath(t testing.TB) string {
	t.Helper()
	return SQLite(t).Path
}

// reapWhenGone starts a detached watchdog that runs stop (a shell command) once
// this test process has exited, so a throwaway engine never outlives its tests
// even when the binary is killed.
func reapWhenGone(stop string) {
	script := fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 1; done; %s", os.Getpid(), stop)
	cmd := exec.Command("sh", "-c", script)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, nil, nil
	_ = cmd.Start()
	go func() { _ = cmd.Wait() }()
}
