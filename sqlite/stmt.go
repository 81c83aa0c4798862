package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps one prepared statement per query text for a database.
// database/sql hands a transaction the statement already prepared on the
// transaction's connection (Tx.StmtContext), so a hot statement is parsed
// once per connection rather than once per transaction: parsing took about
// 4 % of serve's CPU under the tables bench, all of it while holding the
// one write lock. Only fixed query texts may go through it.
type stmtCache struct {
	db *sql.DB
	m  sync.Map // query → *sql.Stmt
}

// prepare returns tx's handle on query. A nil cache prepares on tx alone.
// The handle is closed with tx (or by the caller); the cached statement
// stays for the next transaction.
func (c *stmtCache) prepare(ctx context.Context, tx *sql.Tx, query string) (*sql.Stmt, error) {
	if c == nil {
		return tx.PrepareContext(ctx, query)
	}
	v, ok := c.m.Load(query)
	if !ok {
		s, err := c.db.PrepareContext(ctx, query)
		if err != nil {
			return nil, err
		}
		if v, ok = c.m.LoadOrStore(query, s); ok {
			s.Close()
		} else {
			v = s
		}
	}
	return tx.StmtContext(ctx, v.(*sql.Stmt)), nil
}
