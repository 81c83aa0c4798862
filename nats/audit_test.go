package nats_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/nats"
)

// startAudit starts an embedded audit stream that carries one record a
// message (the message-level behaviour these tests look at); see
// TestAuditStreamBatchesRecords for several.
func startAudit(t *testing.T) (*nats.Conn, *nats.AuditStream, *nats.AuditSource) {
	return startAuditBatch(t, 1)
}

func startAuditBatch(t *testing.T, batch int) (*nats.Conn, *nats.AuditStream, *nats.AuditSource) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := nats.DefaultConfig()
	cfg.StoreDir = t.TempDir()
	c, err := nats.Start(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	acfg := nats.AuditConfig{AckWait: 2 * time.Second, FetchWait: 200 * time.Millisecond, BatchRecords: batch}
	st, err := nats.NewAuditStream(ctx, c, acfg)
	if err != nil {
		t.Fatal(err)
	}
	src, err := nats.NewAuditSource(ctx, c, acfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, st, src
}

func captured(n int) []audit.Captured {
	var out []audit.Captured
	for i := 1; i <= n; i++ {
		out = append(out, audit.Captured{ID: fmt.Sprintf("id-%d", i), Jurisdiction: "NJ", StreamKey: "NJ/table/t", Seq: uint64(i),
			Data: fmt.Appendf(nil, `{"n":%d}`, i)})
	}
	return out
}

func progress(t *testing.T, st *nats.AuditStream) audit.Progress {
	t.Helper()
	p, err := st.Progress(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func fetchAll(t *testing.T, src *nats.AuditSource, want int) []audit.Message {
	t.Helper()
	var got []audit.Message
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < want {
		ms, err := src.Fetch(context.Background(), want-len(got), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ms...)
		if time.Now().After(deadline) {
			t.Fatalf("fetched %d of %d", len(got), want)
		}
	}
	return got
}

// The ack floor, which the relay releases the outbox by, moves only over
// messages the archiver acknowledged (or dead-lettered), never over a
// delivered, unacknowledged or nak'ed one.
func TestAuditStreamAckFloorFollowsTheArchiver(t *testing.T) {
	ctx := context.Background()
	c, st, src := startAudit(t)
	recs := captured(5)
	acks, err := st.Publish(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range acks {
		if a.StreamSeq != uint64(i+1) || a.Duplicate {
			t.Fatalf("ack %d = %+v", i, a)
		}
	}
	// Re-publishing a record id is a duplicate at its original sequence.
	again, err := st.Publish(ctx, recs[1:2])
	if err != nil || again[0] != (audit.Ack{StreamSeq: 2, Duplicate: true}) {
		t.Fatalf("re-publish: %+v %v", again, err)
	}
	if p := progress(t, st); p.First != 1 || p.Last != 5 || p.Archived != 0 {
		t.Fatalf("progress before any ack %+v", p)
	}

	ms := fetchAll(t, src, 5)
	for i, m := range ms {
		if string(m.Data()) != string(recs[i].Data) {
			t.Fatalf("message %d is %s, want %s", i, m.Data(), recs[i].Data)
		}
	}
	if err := ms[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ms[2].Nak(ctx, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := ms[3].Reject(ctx, "cannot be archived"); err != nil {
		t.Fatal(err)
	}
	waitFloor := func(want uint64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			p := progress(t, st)
			if p.Archived == want {
				return
			}
			if p.Archived > want || time.Now().After(deadline) {
				t.Fatalf("ack floor %d, want %d", p.Archived, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFloor(2) // #3 was sent back, #5 is unacknowledged
	// The nak'ed message comes again; acking it lets the floor pass the
	// dead-lettered #4 up to the unacknowledged #5.
	re := fetchAll(t, src, 1)
	if string(re[0].Data()) != string(recs[2].Data) {
		t.Fatalf("redelivered %s, want #3", re[0].Data())
	}
	if err := re[0].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	waitFloor(4)
	if err := ms[4].Ack(ctx); err != nil {
		t.Fatal(err)
	}
	waitFloor(5)

	// The rejected record is kept in the dead-letter stream, with its id.
	dead, err := c.JS.Stream(ctx, nats.DefaultAuditConfig().DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != string(recs[3].Data) || m.Header.Get("Nats-Msg-Id") != "id-4" || m.Header.Get("Buzzer-Audit-Reject-Reason") != "cannot be archived" || m.Subject != "audit.dead.NJ" {
		t.Fatalf("dead letter %s %s %v", m.Subject, m.Data, m.Header)
	}
}

// An unacknowledged delivery (an archiver that died before its fsync) is
// delivered again after AckWait, and Fetch returns nothing, without error,
// when the stream is idle.
func TestAuditSourceRedeliversWhatWasNotAcknowledged(t *testing.T) {
	ctx := context.Background()
	_, st, src := startAudit(t)
	ms, err := src.Fetch(ctx, 10, 1<<20)
	if err != nil || len(ms) != 0 {
		t.Fatalf("idle fetch: %d messages, %v", len(ms), err)
	}
	if _, err := st.Publish(ctx, captured(3)); err != nil {
		t.Fatal(err)
	}
	first := fetchAll(t, src, 3)
	_ = first // dropped: never acknowledged
	// Each message's ack wait runs from its own delivery, so JetStream
	// may redeliver them in another order (the archiver sends a record
	// that arrives before its predecessor back for redelivery): every one
	// of them must come back.
	again := fetchAll(t, src, 3)
	var got []string
	for _, m := range again {
		got = append(got, string(m.Data()))
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(got)
	if want := []string{`{"n":1}`, `{"n":2}`, `{"n":3}`}; !slices.Equal(got, want) {
		t.Fatalf("redelivered %v, want %v", got, want)
	}
}

func TestAuditConfigValidation(t *testing.T) {
	if err := nats.DefaultAuditConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*nats.AuditConfig){
		"same streams":       func(c *nats.AuditConfig) { c.DeadStream = c.Stream },
		"wildcard subject":   func(c *nats.AuditConfig) { c.Subject = "audit.*" },
		"overlapping":        func(c *nats.AuditConfig) { c.DeadSubject = c.Subject + ".dead" },
		"no ack wait":        func(c *nats.AuditConfig) { c.AckWait = -1 },
		"no pending allowed": func(c *nats.AuditConfig) { c.MaxAckPending = -1 },
		"negative batch":     func(c *nats.AuditConfig) { c.BatchRecords = -1 },
		"huge batch":         func(c *nats.AuditConfig) { c.BatchRecords = 5000 },
	} {
		c := nats.DefaultAuditConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestAuditStreamBatchesRecords: consecutive records of one jurisdiction
// travel BatchRecords to a message, newline-separated, each acknowledged
// with its message's stream sequence; the same records sent again are a
// duplicate of that message, and a record sent again after a loss (a
// higher resend count) makes a new one. Records of another jurisdiction
// start a message of their own subject.
func TestAuditStreamBatchesRecords(t *testing.T) {
	ctx := context.Background()
	_, st, src := startAuditBatch(t, 2)
	recs := captured(5)
	recs[4].Jurisdiction = "PA"
	acks, err := st.Publish(ctx, recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{1, 1, 2, 2, 3} {
		if acks[i].StreamSeq != want || acks[i].Duplicate {
			t.Fatalf("ack %d = %+v, want stream seq %d", i, acks[i], want)
		}
	}
	again, err := st.Publish(ctx, recs[:2])
	if err != nil || again[0] != (audit.Ack{StreamSeq: 1, Duplicate: true}) || again[1] != again[0] {
		t.Fatalf("re-publish: %+v %v", again, err)
	}
	recs[1].Resends = 1
	resent, err := st.Publish(ctx, recs[:2])
	if err != nil || resent[0].StreamSeq != 4 || resent[0].Duplicate {
		t.Fatalf("resend after a loss: %+v %v", resent, err)
	}
	ms := fetchAll(t, src, 4)
	want := []string{"{\"n\":1}\n{\"n\":2}", "{\"n\":3}\n{\"n\":4}", "{\"n\":5}", "{\"n\":1}\n{\"n\":2}"}
	for i, m := range ms {
		if string(m.Data()) != want[i] {
			t.Fatalf("message %d is %q, want %q", i, m.Data(), want[i])
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
