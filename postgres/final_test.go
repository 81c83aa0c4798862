package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
)

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
	if want := []int{1, 2, 101}; len(got) != len(want) || got[0] != 1 || got[1] != 2 || got[2] != 101 {
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
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE oncall (doctor TEXT PRIMARY KEY, on_call BOOL NOT NULL);
		INSERT INTO oncall VALUES ('alice', true), ('bob', true)`); err != nil {
		t.Fatal(err)
	}
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
	var onCall int
	if err := db.Pool.QueryRow(ctx, "SELECT count(*) FROM oncall WHERE on_call").Scan(&onCall); err != nil {
		t.Fatal(err)
	}
	if onCall != 1 {
		t.Fatalf("%d doctors on call, want 1", onCall)
	}
	if db.Retries() < 1 {
		t.Fatal("no serialization failure was retried: the conflict was not forced")
	}
}
