package postgres_test

import (
	"testing"

	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
)

// TestAuditRNGPipeline: RNG draws captured in their append's transaction on
// PostgreSQL, relayed and archived; replay rebuilds the log's size and
// root, and fails when draws bypass the capture.
func TestAuditRNGPipeline(t *testing.T) {
	db := enginetest.Postgres(t)
	p := pipeline(t, nil, postgres.NewAuditOutbox(db), nil).Pipeline
	audittest.RunRNGPipeline(t, audittest.RNGPipeline{Pipeline: p,
		Audited: postgres.NewAuditedRNGStore(db, audittest.RNGJurisdiction, audittest.RNGOrigin), Plain: postgres.NewRNGStore(db)})
}

// TestAuditedRNGStoreConformance: capture changes nothing of what an
// rng.Store promises (all-or-nothing appends, conflicts, reads).
func TestAuditedRNGStoreConformance(t *testing.T) {
	rngtest.RunStoreTests(t, func(t *testing.T) rng.Store {
		return postgres.NewAuditedRNGStore(enginetest.Postgres(t), "US-NJ", "conformance")
	})
}

// BenchmarkRNGDrawAuditedPostgres is BenchmarkRNGDrawPostgres with every
// draw captured into the audit outbox in its append's transaction (no
// relay draining it).
func BenchmarkRNGDrawAuditedPostgres(b *testing.B) {
	rngtest.BenchmarkDraws(b, postgres.NewAuditedRNGStore(enginetest.Postgres(b), "US-NJ", "bench"), 64)
}
