package enginetest

import (
	"context"
	"testing"
)

func TestEngines(t *testing.T) {
	db := Postgres(t)
	var one int
	if err := db.Pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("postgres: %v", err)
	}
	c, prefix := Redis(t)
	if err := c.Set(context.Background(), prefix+"k", "v", 0).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	s := SQLite(t)
	if err := s.SQL.QueryRow("SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("sqlite: %v", err)
	}
}

// Two tests get two databases: nothing one writes is seen by the other.
func TestPostgresIsolatedPerTest(t *testing.T) {
	a, b := PostgresURL(t), PostgresURL(t)
	if a == b {
		t.Fatal("two calls returned one database")
	}
}
