// Package pipelinetest builds the audit pipeline the store tests run their
// outboxes through: embedded JetStream for the stream and the local
// archive, as serve runs them.
package pipelinetest

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/audit/audittest"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/wallet"
)

// Pipeline is audittest.Pipeline with the NATS connection behind it.
type Pipeline struct {
	audittest.Pipeline
	Conn *nats.Conn
}

// JetStream returns a pipeline from ob (and, when set, the capturing wallet
// store w and the state reader st) through a new embedded JetStream into
// archive segments; everything stops at the end of the test.
func JetStream(t *testing.T, w wallet.Store, ob audit.CaptureStore, st audit.StateReader) Pipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ncfg := nats.DefaultConfig()
	ncfg.StoreDir = t.TempDir()
	conn, err := nats.Start(ctx, ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	stream, err := nats.NewAuditStream(ctx, conn, nats.AuditConfig{AckWait: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	src, err := nats.NewAuditSource(ctx, conn, nats.AuditConfig{AckWait: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return Pipeline{Conn: conn, Pipeline: audittest.Pipeline{
		Wallet: w, Outbox: ob, State: st, Stream: stream, Source: src, Log: archive.Opener{},
		Records: func(dir string) audit.Records { return archive.Records{Dir: dir} },
		Verify: func(dir string, pub ed25519.PublicKey) error {
			_, err := archive.VerifyRecords(nil, dir, pub)
			return err
		},
	}}
}
