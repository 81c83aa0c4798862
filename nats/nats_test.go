package nats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer/nats"
)

func TestEmbeddedJetStreamPublishDedupAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := nats.DefaultConfig()
	cfg.StoreDir = dir
	c, err := nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureStream(ctx, nats.StreamSpec{Name: "T", Subjects: []string{"t.>"}, Regulated: true, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b", "a"} { // the second "a" is a duplicate publish
		ack, err := c.JS.Publish(ctx, "t.x", []byte(id), jetstream.WithMsgID(id))
		if err != nil {
			t.Fatal(err)
		}
		if (i == 2) != ack.Duplicate {
			t.Fatalf("publish %d duplicate=%v", i, ack.Duplicate)
		}
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// The store survives a restart: both distinct messages are still there.
	c, err = nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.JS.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages after restart, want 2", info.State.Msgs)
	}
}

func TestEmbeddedNeverTakesAFixedPort(t *testing.T) {
	cfg := nats.DefaultConfig()
	cfg.StoreDir = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	ctx := context.Background()
	a, err := nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cfg.StoreDir = t.TempDir()
	b, err := nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if a.ClientURL() == "" || a.ClientURL() == b.ClientURL() {
		t.Fatalf("urls %q %q", a.ClientURL(), b.ClientURL())
	}
}

func TestConfigValidate(t *testing.T) {
	if err := nats.DefaultConfig().Validate(); err == nil {
		t.Fatal("embedded config without a store dir accepted")
	}
}
