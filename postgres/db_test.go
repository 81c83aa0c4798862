package postgres_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
)

// writeSkew runs the classic on-call write skew: two doctors are on call and
// each transaction takes its own doctor off call if at least two are on. Both
// transactions read before either writes (a barrier forces the interleaving on
// the first attempt). Under SERIALIZABLE one of them must fail with 40001 and,
// rerun by InTx, see the other's write and leave its doctor on call.
func writeSkew(t *testing.T, db *postgres.DB, iso pgx.TxIsoLevel) (onCall int, retries int64) {
	t.Helper()
	ctx := context.Background()
	createOnCall(t, db)
	var read sync.WaitGroup
	read.Add(2)
	var wg sync.WaitGroup
	for _, doctor := range []string{"alice", "bob"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.InTxIsolation(ctx, iso, func(tx pgx.Tx) error {
				var n int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&n); err != nil {
					return err
				}
				return func() error {
					// Only the first attempts meet at the barrier.
					if retries := db.Retries(); retries == 0 {
						read.Done()
						read.Wait()
					}
					if n >= 2 {
						_, err := tx.Exec(ctx, "UPDATE oncall SET on_call=false WHERE doctor=$1", doctor)
						return err
					}
					return nil
				}()
			})
			if err != nil {
				t.Errorf("%s: %v", doctor, err)
			}
		}()
	}
	wg.Wait()
	return countOnCall(t, db), db.Retries()
}

// createOnCall creates the write skew's table: alice and bob on call.
func createOnCall(t *testing.T, db *postgres.DB) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), `CREATE TABLE oncall (doctor TEXT PRIMARY KEY, on_call BOOL NOT NULL);
		INSERT INTO oncall VALUES ('alice', true), ('bob', true)`); err != nil {
		t.Fatal(err)
	}
}

// countOnCall counts the doctors on call.
func countOnCall(t *testing.T, db *postgres.DB) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM oncall WHERE on_call").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestInTxRetriesWriteSkewToSuccess(t *testing.T) {
	db := enginetest.Postgres(t)
	onCall, retries := writeSkew(t, db, pgx.Serializable)
	if onCall != 1 {
		t.Fatalf("%d doctors on call after SERIALIZABLE write skew, want 1", onCall)
	}
	if retries < 1 {
		t.Fatalf("no serialization failure was retried (retries=%d): the conflict was not forced", retries)
	}
}

// The same workload at REPEATABLE READ shows the anomaly the retry loop and
// SERIALIZABLE exist to prevent: this proves the test above can fail.
func TestWriteSkewHappensBelowSerializable(t *testing.T) {
	db := enginetest.Postgres(t)
	onCall, _ := writeSkew(t, db, pgx.RepeatableRead)
	if onCall != 0 {
		t.Fatalf("%d doctors on call at REPEATABLE READ; expected the write skew to leave 0", onCall)
	}
}

// A group commit's last batch carries its COMMIT (sendFinal): the writes
// are committed when the batch is read, with no transaction left open for
// finishTx's Commit; a statement that fails keeps the COMMIT from running,
// so none of the batch's writes (nor earlier ones) stay.
func TestFinalBatchCommitsOrRollsBackWhole(t *testing.T) {
	db := enginetest.Postgres(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE fin (k INT PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	final := func(rows ...int) error {
		return db.InLazyTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO fin VALUES (100 + $1::INT)`, rows[0]); err != nil {
				return err
			}
			b := &pgx.Batch{}
			for _, k := range rows {
				b.Queue(`INSERT INTO fin VALUES ($1)`, k)
			}
			br := postgres.SendFinal(ctx, tx, b)
			defer br.Close()
			for range rows {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			if err := br.Close(); err != nil {
				return err
			}
			if st := tx.Conn().PgConn().TxStatus(); st != 'I' {
				t.Errorf("after the final batch the connection is in transaction state %q, want idle (committed)", st)
			}
			return nil
		})
	}
	if err := final(1, 2); err != nil {
		t.Fatalf("final batch: %v", err)
	}
	// 2 is taken: the batch fails at its second statement, and the
	// transaction's earlier rows (103, and 3 in the same batch) go with it.
	if err := final(3, 2); err == nil {
		t.Fatal("a final batch with a duplicate key succeeded")
	}
	var got []int
	rows, err := db.Pool.Query(ctx, `SELECT k FROM fin ORDER BY k`)
	if err != nil {
		t.Fatal(err)
	}
	if got, err = pgx.CollectRows(rows, pgx.RowTo[int]); err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 101}; !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v", got, want)
	}
}

// A serialization failure found at the COMMIT of a final batch reaches the
// retry loop like one from finishTx's Commit: the write skew below can only
// fail at commit (both transactions have read and written before either
// sends its last batch, which holds no statement that touches a table), and
// it ends with exactly one doctor taken off call, by the transaction that
// reported its commit.
func TestFinalBatchCommitFailureIsRetried(t *testing.T) {
	db := enginetest.Postgres(t)
	ctx := context.Background()
	createOnCall(t, db)
	var read, wrote sync.WaitGroup
	read.Add(2)
	wrote.Add(2)
	var wg sync.WaitGroup
	for _, doctor := range []string{"alice", "bob"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, updated := true, false
			err := db.InLazyTx(ctx, func(tx pgx.Tx) error {
				updated = false
				var n int
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&n); err != nil {
					return err
				}
				if first {
					read.Done()
					read.Wait()
				}
				if n >= 2 {
					if _, err := tx.Exec(ctx, "UPDATE oncall SET on_call = false WHERE doctor = $1", doctor); err != nil {
						return err
					}
					updated = true
				}
				if first {
					first = false
					wrote.Done()
					wrote.Wait()
				}
				b := &pgx.Batch{}
				b.Queue("SELECT 1")
				br := postgres.SendFinal(ctx, tx, b)
				defer br.Close()
				if _, err := br.Exec(); err != nil {
					return err
				}
				return br.Close()
			})
			if err != nil {
				t.Errorf("%s: %v", doctor, err)
				return
			}
			// What a transaction reported committed is there.
			var on bool
			if err := db.Pool.QueryRow(ctx, "SELECT on_call FROM oncall WHERE doctor = $1", doctor).Scan(&on); err != nil {
				t.Error(err)
			} else if updated && on {
				t.Errorf("%s: taken off call by a committed transaction, but on call", doctor)
			}
		}()
	}
	wg.Wait()
	if onCall := countOnCall(t, db); onCall != 1 {
		t.Fatalf("%d doctors on call, want 1", onCall)
	}
	if db.Retries() < 1 {
		t.Fatal("no serialization failure was retried: the conflict was not forced")
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	db := enginetest.Postgres(t)
	ctx := context.Background()
	var before int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if before == 0 {
		t.Fatal("template was not migrated")
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var after int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("re-migration applied %d more", after-before)
	}
}

func TestOpenRejectsBadConfig(t *testing.T) {
	cfg := postgres.DefaultConfig()
	cfg.URL = "mysql://x"
	if _, err := postgres.Open(context.Background(), cfg); err == nil {
		t.Fatal("accepted a non-postgres url")
	}
}
