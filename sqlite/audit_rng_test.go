package sqlite_test

import (
	"testing"

	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// TestAuditRNGPipeline: RNG draws captured in their append's transaction on
// SQLite, relayed and archived; replay rebuilds the log's size and
// root, and fails when draws bypass the capture.
func TestAuditRNGPipeline(t *testing.T) {
	db := enginetest.SQLite(t)
	p := pipeline(t, nil, sqlite.NewAuditOutbox(db), nil).Pipeline
	audittest.RunRNGPipeline(t, audittest.RNGPipeline{Pipeline: p,
		Audited: sqlite.NewAuditedRNGStore(db, audittest.RNGJurisdiction, audittest.RNGOrigin), Plain: sqlite.NewRNGStore(db)})
}

// TestAuditedRNGStoreConformance: capture changes nothing of what an
// rng.Store promises (all-or-nothing appends, conflicts, reads).
func TestAuditedRNGStoreConformance(t *testing.T) {
	rngtest.RunStoreTests(t, func(t *testing.T) rng.Store {
		return sqlite.NewAuditedRNGStore(enginetest.SQLite(t), "US-NJ", "conformance")
	})
}

// BenchmarkRNGDrawAuditedSQLite is BenchmarkRNGDrawSQLite with every draw
// captured into the audit outbox in its append's transaction (no relay
// draining it).
func BenchmarkRNGDrawAuditedSQLite(b *testing.B) {
	rngtest.BenchmarkDraws(b, sqlite.NewAuditedRNGStore(enginetest.SQLite(b), "US-NJ", "bench"), 64)
}
