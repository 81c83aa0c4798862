// Package audittest holds the audit capture's shared tests: the conformance
// suite every engine's outbox (audit.CaptureStore) runs, and the end-to-end
// pipeline test each engine runs with its real store and stream — the
// wallet's bank workload captured into the outbox, relayed to the stream,
// archived, replayed and compared with the database. It must never import
// an engine: the engines under test come in as audit's interfaces.
package audittest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// Capture is one engine's outbox under test.
type Capture struct {
	// Write captures recs in one transaction of the store (through the
	// engine's audit.Outbox), all or nothing.
	Write  func(ctx context.Context, recs ...*audit.Record) error
	Outbox audit.CaptureStore
}

var t0 = time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)

func rec(key string, seq uint64, i int) *audit.Record {
	r := &audit.Record{Jurisdiction: "US-NJ", Component: audit.ComponentTable, Key: key, Seq: seq,
		Time: t0.Add(time.Duration(i) * time.Millisecond), Type: audit.TypeTableEvent}
	if err := r.SetPayload(map[string]any{"n": i}); err != nil {
		panic(err)
	}
	return r
}

func pending(t *testing.T, ob audit.CaptureStore) []audit.Captured {
	t.Helper()
	cs, err := ob.Pending(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func seqsOf(cs []audit.Captured) string {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "%s#%d ", c.StreamKey, c.Seq)
	}
	return b.String()
}

// RunCaptureStoreTests checks an engine's outbox: dense per-key sequences
// assigned in the capturing transaction, all-or-nothing writes, pending
// order, and the sent/release/re-send rules of audit.CaptureStore.
func RunCaptureStoreTests(t *testing.T, newCapture func(t *testing.T) Capture) {
	ctx := context.Background()
	t.Run("sequences and order", func(t *testing.T) {
		c := newCapture(t)
		if err := c.Write(ctx, rec("a", 0, 1), rec("b", 0, 2), rec("a", 0, 3)); err != nil {
			t.Fatal(err)
		}
		if err := c.Write(ctx, rec("a", 3, 4)); err != nil { // a contract-fixed seq in turn
			t.Fatal(err)
		}
		// Out of turn: the whole transaction fails and nothing of it stays.
		if err := c.Write(ctx, rec("b", 0, 5), rec("a", 9, 6)); buzzer.ErrorReason(err) != "audit_capture_out_of_order" {
			t.Fatalf("out-of-turn seq: %v", err)
		}
		if err := c.Write(ctx, rec("b", 0, 7)); err != nil {
			t.Fatal(err)
		}
		cs := pending(t, c.Outbox)
		if got, want := seqsOf(cs), "US-NJ/table/a#1 US-NJ/table/b#1 US-NJ/table/a#2 US-NJ/table/a#3 US-NJ/table/b#2 "; got != want {
			t.Fatalf("pending %s, want %s", got, want)
		}
		ids := map[string]bool{}
		for _, cp := range cs {
			r, err := audit.DecodeCanonical(cp.Data)
			if err != nil {
				t.Fatal(err)
			}
			if r.ID != cp.ID || r.Seq != cp.Seq || r.StreamKey() != cp.StreamKey || r.Jurisdiction != cp.Jurisdiction || ids[r.ID] {
				t.Fatalf("stored record %+v does not match its row %+v", r, cp)
			}
			ids[r.ID] = true
			if cp.CapturedAt.IsZero() {
				t.Fatal("no capture time")
			}
		}
		b, err := c.Outbox.Backlog(ctx)
		if err != nil || b.Records != 5 || b.Oldest.IsZero() {
			t.Fatalf("backlog %+v %v", b, err)
		}
	})
	t.Run("runs of one key", func(t *testing.T) {
		// A table's events come as a run of one key, some with their
		// sequence fixed by the contract: the run takes consecutive ones.
		c := newCapture(t)
		if err := c.Write(ctx, rec("c", 0, 1), rec("c", 2, 2), rec("c", 0, 3), rec("d", 0, 4), rec("c", 0, 5)); err != nil {
			t.Fatal(err)
		}
		// A fixed sequence out of turn inside a run fails the whole write.
		if err := c.Write(ctx, rec("c", 0, 6), rec("c", 0, 7), rec("c", 5, 8)); buzzer.ErrorReason(err) != "audit_capture_out_of_order" {
			t.Fatalf("out-of-turn seq in a run: %v", err)
		}
		if err := c.Write(ctx, rec("c", 5, 9), rec("c", 6, 10)); err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, cp := range pending(t, c.Outbox) {
			got[fmt.Sprintf("%s#%d", cp.StreamKey, cp.Seq)] = true
		}
		for _, want := range []string{"US-NJ/table/c#1", "US-NJ/table/c#2", "US-NJ/table/c#3", "US-NJ/table/c#4", "US-NJ/table/c#5", "US-NJ/table/c#6", "US-NJ/table/d#1"} {
			if !got[want] {
				t.Fatalf("pending %v lacks %s", got, want)
			}
		}
		if len(got) != 7 {
			t.Fatalf("pending %v, want 7 records", got)
		}
	})
	t.Run("sent, released, re-sent", func(t *testing.T) {
		c := newCapture(t)
		for i := 1; i <= 6; i++ {
			if err := c.Write(ctx, rec(fmt.Sprint("k", i%2), 0, i)); err != nil {
				t.Fatal(err)
			}
		}
		cs := pending(t, c.Outbox)
		mark := func(from int, seqs ...uint64) {
			t.Helper()
			var ps []audit.Published
			for i, s := range seqs {
				ps = append(ps, audit.Published{StreamKey: cs[from+i].StreamKey, Seq: cs[from+i].Seq, Ref: cs[from+i].Ref, StreamSeq: s})
			}
			if err := c.Outbox.MarkSent(ctx, ps); err != nil {
				t.Fatal(err)
			}
		}
		release := func(p audit.Progress, wantDel, wantResent int) {
			t.Helper()
			d, r, err := c.Outbox.Release(ctx, p)
			if err != nil || d != wantDel || r != wantResent {
				t.Fatalf("Release(%+v) = %d deleted, %d resent, %v; want %d, %d", p, d, r, err, wantDel, wantResent)
			}
		}
		mark(0, 1, 2, 3)
		if n := len(pending(t, c.Outbox)); n != 3 {
			t.Fatalf("%d pending after 3 of 6 sent", n)
		}
		// Only what the archiver's floor passed is deleted.
		release(audit.Progress{First: 1, Last: 3, Archived: 2}, 2, 0)
		// The stream lost its tail (last sequence 2): the record it held at
		// 3 is pending again.
		release(audit.Progress{First: 1, Last: 2, Archived: 2}, 0, 1)
		resent := 0
		for _, cp := range pending(t, c.Outbox) {
			resent += cp.Resends
		}
		if n := len(pending(t, c.Outbox)); n != 4 || resent != 1 {
			t.Fatalf("%d pending (%d re-sends counted), want 4 (1)", n, resent)
		}
		cs = pending(t, c.Outbox)
		mark(0, 3, 4)
		// A new message at 3 (not a duplicate) means the stream reused its
		// numbers: the records it held at 3 and 4 go back to pending, the new
		// one is sent at 3.
		mark(2, 3)
		if n := len(pending(t, c.Outbox)); n != 3 {
			t.Fatalf("%d pending after a reused stream sequence, want 3", n)
		}
		// A duplicate acknowledgement at an old sequence resets nothing.
		cs = pending(t, c.Outbox)
		if err := c.Outbox.MarkSent(ctx, []audit.Published{{StreamKey: cs[0].StreamKey, Seq: cs[0].Seq, Ref: cs[0].Ref, StreamSeq: 1, Duplicate: true}}); err != nil {
			t.Fatal(err)
		}
		if n := len(pending(t, c.Outbox)); n != 2 {
			t.Fatalf("%d pending after a duplicate ack, want 2", n)
		}
		// Messages that expired from the stream unarchived are re-sent.
		release(audit.Progress{First: 5, Last: 9, Archived: 0}, 0, 2)
		cs = pending(t, c.Outbox)
		mark(0, 10, 11, 12, 13)
		// The floor also passes messages the stream dropped (purge,
		// expiry): only those it still holds are released, the rest go
		// back to pending.
		release(audit.Progress{First: 12, Last: 13, Archived: 13}, 2, 2)
		cs = pending(t, c.Outbox)
		mark(0, 14, 15)
		release(audit.Progress{First: 12, Last: 15, Archived: 15}, 2, 0)
		if b, err := c.Outbox.Backlog(ctx); err != nil || b.Records != 0 || !b.Oldest.IsZero() {
			t.Fatalf("backlog after everything was archived: %+v %v", b, err)
		}
	})
}

// Pipeline is one engine's capture path end to end.
type Pipeline struct {
	Wallet wallet.Store // the capturing wallet store
	Outbox audit.CaptureStore
	State  audit.StateReader
	Stream audit.Stream
	Source audit.Source
	Log    audit.LogOpener
	// Records reads the archive in dir (archive.Records); Verify checks it
	// end to end with the seal key (archive.VerifyRecords).
	Records func(dir string) audit.Records
	Verify  func(dir string, pub ed25519.PublicKey) error
}

// RunPipeline runs the wallet's bank-style workload (retries, concurrent
// duplicates, settlements and resettlements) on the capturing store with
// the relay and the archiver running, waits until the outbox is empty —
// every captured change archived and acknowledged end to end — and
// requires the archive to verify and its replay to equal the database
// exactly.
func RunPipeline(t *testing.T, p Pipeline, bank wallettest.BankConfig) {
	tr := StartTrail(t, p)
	res := wallettest.Bank(t, p.Wallet, bank)
	if len(res.Problems) > 0 {
		t.Fatalf("bank workload problems: %v", res.Problems[:min(5, len(res.Problems))])
	}
	tr.Drain(t, 60*time.Second)
	tr.Stop(t)
	tr.Verify(t)
	st, diffs := tr.Replay(t, p.State)
	if len(diffs) > 0 {
		t.Fatalf("archive and database differ in %d places, e.g. %v", len(diffs), diffs[:min(5, len(diffs))])
	}
	var sum buzzer.Amount
	for _, b := range st.Balances {
		sum += b
	}
	if sum != 0 || st.Transactions == 0 || len(st.Bets) == 0 || len(st.Markets) == 0 {
		t.Fatalf("replayed %d transactions, %d bets, %d markets, balances summing to %d", st.Transactions, len(st.Bets), len(st.Markets), sum)
	}
	t.Logf("pipeline: %d records archived and replayed: %d transactions, %d accounts, %d bets, %d markets; database equal",
		st.Records, st.Transactions, len(st.Balances), len(st.Bets), len(st.Markets))
}
