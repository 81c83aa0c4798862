package sqlite

import (
	"context"
	"database/sql"
	"testing"
)

// A query goes through the cache once: every transaction after the first
// gets the same statement (re-prepared by database/sql only on a
// connection that has not run it yet), concurrent transactions included,
// and what they write is what a freshly prepared statement would write.
func TestStmtCacheKeepsOneStatementPerQuery(t *testing.T) {
	db := openInternal(t, nil)
	if _, err := db.SQL.Exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	const q = "INSERT INTO t (id, v) VALUES ($1, $2)"
	var first *sql.Stmt
	concurrently(8, 25, func(w, i int) {
		id := w*100 + i
		err := db.InTx(context.Background(), func(tx *sql.Tx) error {
			st, err := db.stmts.prepare(context.Background(), tx, q)
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = st.Exec(id, id*2)
			return err
		})
		if err != nil {
			t.Error(err)
		}
	})
	n := 0
	db.stmts.m.Range(func(k, v any) bool {
		n++
		first = v.(*sql.Stmt)
		return true
	})
	if n != 1 || first == nil {
		t.Fatalf("%d cached statements, want 1", n)
	}
	var rows, bad int
	if err := db.SQL.QueryRow("SELECT count(*), count(*) FILTER (WHERE v != 2*id) FROM t").Scan(&rows, &bad); err != nil {
		t.Fatal(err)
	}
	if rows != 200 || bad != 0 {
		t.Fatalf("%d rows (%d wrong), want 200", rows, bad)
	}
}
