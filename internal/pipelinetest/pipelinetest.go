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
// archive segments; everything stops at the end of the test. The archiver's
// consumer redelivers after 3 s, so a test that kills it sees redelivery soon.
func JetStream(t *testing.T, w wallet.Store, ob audit.CaptureStore, st audit.StateReader) Pipeline {
	return JetStreamWith(t, Options{Wallet: w, Outbox: ob, State: st, AckWait: 3 * time.Second})
}

// Options are what JetStreamWith builds a pipeline from; zero fields take
// the defaults of serve (the archive through the operating system's files,
// nats.AuditConfig's ack wait).
type Options struct {
	Wallet  wallet.Store
	Outbox  audit.CaptureStore
	State   audit.StateReader
	Log     audit.LogOpener
	AckWait time.Duration
}

// JetStreamWith is JetStream from o.
func JetStreamWith(t *testing.T, o Options) Pipeline {
	t.Helper()
	if o.Log == nil {
		o.Log = archive.Opener{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ncfg := nats.DefaultConfig()
	ncfg.StoreDir = t.TempDir()
	conn, err := nats.Start(ctx, ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	stream, err := nats.NewAuditStream(ctx, conn, nats.AuditConfig{AckWait: o.AckWait})
	if err != nil {
		t.Fatal(err)
	}
	src, err := nats.NewAuditSource(ctx, conn, nats.AuditConfig{AckWait: o.AckWait})
	if err != nil {
		t.Fatal(err)
	}
	return Pipeline{Conn: conn, Pipeline: audittest.Pipeline{
		Wallet: o.Wallet, Outbox: o.Outbox, State: o.State, Stream: stream, Source: src, Log: o.Log,
		Records: func(dir string) audit.Records { return archive.Records{Dir: dir} },
		Verify: func(dir string, pub ed25519.PublicKey) error {
			_, err := archive.VerifyRecords(nil, dir, pub)
			return err
		},
	}}
}
