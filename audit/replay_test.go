package audit_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
)

// writeArchive archives recs directly (no stream) and returns the directory.
func writeArchive(t *testing.T, recs [][]byte, segRecords int) string {
	t.Helper()
	dir := t.TempDir()
	w, err := archive.Open(dir, archive.Options{Key: testKey(), Identify: archive.IdentifyRecord, SegmentRecords: segRecords})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	st, err := w.Append(recs)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range st {
		if s != archive.Appended {
			t.Fatalf("record %d: %v", i, s)
		}
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReplayRebuildsEveryBalanceBetAndLog(t *testing.T) {
	w := newWorkload(t)
	want := w.mixed(9, 7)
	dir := writeArchive(t, w.recs, 50)
	if _, err := archive.VerifyRecords(nil, dir, testPub()); err != nil {
		t.Fatal(err)
	}
	got, err := audit.Replay(archive.Records{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d := audit.Diff(got, want); len(d) != 0 {
		t.Fatalf("replay differs: %v", d)
	}
	if got.Records != want.Records {
		t.Fatalf("replayed %d records, archived %d", got.Records, want.Records)
	}
	var sum buzzer.Amount
	for _, b := range got.Balances {
		sum += b
	}
	if sum != 0 {
		t.Fatalf("balances sum to %d: money not conserved", sum)
	}

	// Every kind of difference is reported, and only it.
	store := func(mut func(*audit.State)) audit.State {
		s := audit.State{Balances: map[string]buzzer.Amount{}, Bets: map[string]audit.BetState{}, Markets: map[string]int64{},
			RNGLogs: map[string]uint64{}, Tables: map[string]uint64{}}
		for k, v := range want.Balances {
			s.Balances[k] = v
		}
		for k, v := range want.Bets {
			s.Bets[k] = v
		}
		for k, v := range want.RNGLogs {
			s.RNGLogs[k] = v
		}
		for k, v := range want.Markets {
			s.Markets[k] = v
		}
		for k, v := range want.Tables {
			s.Tables[k] = v
		}
		mut(&s)
		return s
	}
	for name, c := range map[string]struct {
		mut  func(*audit.State)
		want string
	}{
		"balance off by one": {func(s *audit.State) { s.Balances[acct("player-003")]++ }, "balance " + acct("player-003")},
		"extra account":      {func(s *audit.State) { s.Balances["ghost|US-NJ|USD|cash|0"] = 5 }, "balance ghost"},
		"bet payout":         {func(s *audit.State) { b := s.Bets["bet-001-001"]; b.Payout++; s.Bets["bet-001-001"] = b }, "bet bet-001-001"},
		"bet missing":        {func(s *audit.State) { delete(s.Bets, "bet-002-002") }, "bet bet-002-002: archive"},
		"rng log short":      {func(s *audit.State) { s.RNGLogs["bj-table-1"]-- }, "rng_log bj-table-1"},
		"table ahead":        {func(s *audit.State) { s.Tables["bj-table-1"]++ }, "table bj-table-1"},
		"market behind":      {func(s *audit.State) { s.Markets["m1"]-- }, "market m1"},
	} {
		d := audit.Diff(got, store(c.mut))
		if len(d) != 1 || !strings.HasPrefix(d[0].String(), c.want) {
			t.Errorf("%s: differences %v", name, d)
		}
	}
	// A zero balance absent from the store is no difference; a nil section
	// is not compared.
	zero := store(func(s *audit.State) { s.RNGLogs = nil })
	if d := audit.Diff(got, zero); len(d) != 0 {
		t.Fatalf("nil section compared: %v", d)
	}
	d, err := audit.Compare(context.Background(), got, stateFunc(func(context.Context) (audit.State, error) { return store(func(*audit.State) {}), nil }))
	if err != nil || len(d) != 0 {
		t.Fatalf("Compare: %v %v", d, err)
	}
	if _, err := audit.Compare(context.Background(), got, stateFunc(func(context.Context) (audit.State, error) {
		return audit.State{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "down")
	})); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("Compare error: %v", err)
	}
}

type stateFunc func(context.Context) (audit.State, error)

func (f stateFunc) ReadState(ctx context.Context) (audit.State, error) { return f(ctx) }

func TestApplyRejectsContractBreaches(t *testing.T) {
	cases := map[string]func(w *workload){
		"unbalanced": func(w *workload) {
			w.add(audit.ComponentWallet, "p", audit.TypeLedgerTransaction, audit.LedgerTransaction{TxID: "t", Kind: "deposit", Player: "p", EffectKey: "e",
				Postings: []audit.Posting{{acct("p"), "USD", 10}, {house(0), "USD", -9}}})
		},
		"same tx twice": func(w *workload) {
			w.deposit("p", 5)
			w.add(audit.ComponentWallet, "p", audit.TypeLedgerTransaction, audit.LedgerTransaction{TxID: "tx-1", Kind: "deposit", Player: "p", EffectKey: "e2",
				Postings: []audit.Posting{{acct("p"), "USD", 10}, {house(0), "USD", -10}}})
		},
		"currency switch": func(w *workload) {
			w.deposit("p", 5)
			w.add(audit.ComponentWallet, "p", audit.TypeLedgerTransaction, audit.LedgerTransaction{TxID: "t9", Kind: "deposit", Player: "p", EffectKey: "e9",
				Postings: []audit.Posting{{acct("p"), "EUR", 10}, {house(0), "EUR", -10}}})
		},
		"wrong key": func(w *workload) {
			w.add(audit.ComponentWallet, "q", audit.TypeLedgerTransaction, audit.LedgerTransaction{TxID: "t", Kind: "deposit", Player: "p", EffectKey: "e",
				Postings: []audit.Posting{{acct("p"), "USD", 10}, {house(0), "USD", -10}}})
		},
		"settled before placed": func(w *workload) {
			w.add(audit.ComponentBet, "b1", audit.TypeBetSettled, audit.BetSettled{BetID: "b1", Revision: 1, Status: "settled"})
		},
		"revision skipped": func(w *workload) {
			w.bet("p", "b1", 10)
			w.add(audit.ComponentBet, "b1", audit.TypeBetSettled, audit.BetSettled{BetID: "b1", Revision: 2, Status: "settled"})
		},
		"rng index gap": func(w *workload) {
			w.add(audit.ComponentRNG, "log", audit.TypeRNGDraw, audit.RNGDraw{DrawID: "d", Log: "log", Index: 1})
		},
		"table seq mismatch": func(w *workload) {
			w.add(audit.ComponentTable, "t1", audit.TypeTableEvent, audit.TableEvent{TableID: "t1", TableSeq: 2, Action: "deal"})
		},
		"unknown payload field": func(w *workload) {
			w.add(audit.ComponentRNG, "log", audit.TypeRNGDraw, map[string]any{"draw_id": "d", "log": "log", "index": 0, "seed": "x"})
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			w := newWorkload(t)
			build(w)
			dir := writeArchive(t, w.recs, 100)
			_, err := audit.Replay(archive.Records{Dir: dir})
			var d *archive.Damage
			if !errors.As(err, &d) {
				t.Fatalf("Replay: %v", err)
			}
			if last := w.ids[len(w.ids)-1]; !strings.Contains(d.Reason, "record "+last+" ") {
				t.Fatalf("did not blame the breaching record %s: %v", last, d)
			}
		})
	}
	// Records of types replay does not know are counted, not refused.
	w := newWorkload(t)
	w.add(audit.ComponentTable, "t1", "table.chat", map[string]any{"text": "gl"})
	st, err := audit.Replay(archive.Records{Dir: writeArchive(t, w.recs, 100)})
	if err != nil || st.Other["table.chat"] != 1 {
		t.Fatalf("unknown type: %v %v", st.Other, err)
	}
}

func TestVerifyNamesDamageAndDuplicates(t *testing.T) {
	w := newWorkload(t)
	w.mixed(3, 3)
	dir := writeArchive(t, w.recs, 10)
	if _, err := archive.VerifyRecords(nil, dir, testPub()); err != nil {
		t.Fatal(err)
	}
	flipFirstRecordOfLastSegment(t, dir)
	_, err := archive.VerifyRecords(nil, dir, testPub())
	var d *archive.Damage
	if !errors.As(err, &d) || !strings.Contains(d.Reason, "checksum") || buzzer.ErrorReason(err) != "archive_damaged" {
		t.Fatalf("Verify: %v", err)
	}
	if _, err := audit.Replay(archive.Records{Dir: dir}); !errors.As(err, &d) {
		t.Fatalf("Replay of a damaged archive: %v", err)
	}
	if _, err := archive.VerifyRecords(nil, t.TempDir(), testPub()[:5]); err == nil {
		t.Fatal("a short public key was accepted")
	}
}

// TestVerifySweepsFlippedBytes flips every fifth byte of a small archive of
// real records, one at a time, through archive.VerifyRecords: each is
// detected and blamed on the file that holds it, at an offset at or before
// it. (archive's own sweep flips every byte and checks the exact frame.)
func TestVerifySweepsFlippedBytes(t *testing.T) {
	w := newWorkload(t)
	w.bet("p", "b1", 100)
	w.settle("p", "b1", 1, 200, 200)
	w.draw("log")
	dir := writeArchive(t, w.recs, 3) // one sealed segment, one active
	files, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil || len(files) != 2 {
		t.Fatalf("segments %v %v", files, err)
	}
	n := 0
	for _, f := range files {
		orig, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(f, 0o644); err != nil {
			t.Fatal(err)
		}
		for pos := 0; pos < len(orig); pos += 5 {
			b := bytes.Clone(orig)
			b[pos] ^= 0x01
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := archive.VerifyRecords(nil, dir, testPub())
			var d *archive.Damage
			if !errors.As(err, &d) {
				t.Fatalf("%s byte %d flipped: %v", f, pos, err)
			}
			if d.File != f || d.Offset > int64(pos) {
				t.Fatalf("%s byte %d flipped: blamed %s offset %d", f, pos, d.File, d.Offset)
			}
			n++
		}
		if err := os.WriteFile(f, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := archive.VerifyRecords(nil, dir, testPub()); err != nil {
		t.Fatalf("restored archive: %v", err)
	}
	t.Logf("%d single-byte flips detected", n)
}
