package nats_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/odds/oddstest"
)

func startEmbedded(t *testing.T) *nats.Conn {
	t.Helper()
	cfg := nats.DefaultConfig()
	cfg.StoreDir = t.TempDir()
	c, err := nats.Start(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestOddsBusConformance runs the shared odds.Bus suite against JetStream:
// one embedded server, a fresh stream per subtest.
func TestOddsBusConformance(t *testing.T) {
	c := startEmbedded(t)
	var n atomic.Int64
	oddstest.RunBus(t, func(t *testing.T) odds.Bus {
		i := n.Add(1)
		cfg := nats.OddsConfig{Stream: fmt.Sprintf("ODDS_T%d", i), Subject: fmt.Sprintf("odds%d.delta", i),
			RawStream: fmt.Sprintf("RAW_T%d", i), RawSubject: fmt.Sprintf("raw%d", i)}
		bus, err := nats.NewOddsBus(context.Background(), c, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return bus
	})
}

func TestSubjectToken(t *testing.T) {
	for in, want := range map[string]string{
		"ev-12":        "ev-12",
		"sr:match:1":   "sr~3Amatch~3A1",
		"a.b*c>":       "a~2Eb~2Ac~3E",
		"":             "~",
		"~":            "~7E",
		"x y\x00":      "x~20y~00",
		"Under_Score9": "Under_Score9",
	} {
		if got := nats.SubjectToken(in); got != want {
			t.Errorf("SubjectToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOddsJournalCapturesRawMessages shows every raw provider message lands
// on the raw stream with its provider and receipt time.
func TestOddsJournalCapturesRawMessages(t *testing.T) {
	c := startEmbedded(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	j, err := nats.NewOddsJournal(ctx, c, nats.OddsConfig{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 2, 8, 23, 30, 1, 123456789, time.UTC)
	for i, p := range []string{"uof", "betfair", "uof"} {
		j.Record(ctx, feed.RawMessage{Provider: p, Received: at.Add(time.Duration(i)), Payload: []byte(fmt.Sprintf("<msg n=%d/>", i))})
	}
	if err := c.NC.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := c.JS.Stream(ctx, nats.DefaultOddsConfig().RawStream)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		var m *jetstream.RawStreamMsg
		for deadline := time.Now().Add(10 * time.Second); ; {
			if m, err = s.GetMsg(ctx, seq); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("raw message %d: %v", seq, err)
		}
		i := int(seq - 1)
		wantProv := []string{"uof", "betfair", "uof"}[i]
		if m.Subject != "odds.raw."+wantProv || m.Header.Get(nats.HeaderProvider) != wantProv ||
			m.Header.Get(nats.HeaderReceived) != at.Add(time.Duration(i)).Format(time.RFC3339Nano) ||
			string(m.Data) != fmt.Sprintf("<msg n=%d/>", i) {
			t.Fatalf("raw message %d = %s %v %q", seq, m.Subject, m.Header, m.Data)
		}
	}
	if j.Failed() != 0 {
		t.Fatalf("journal failed %d records", j.Failed())
	}
}
