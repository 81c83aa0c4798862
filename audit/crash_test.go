package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
)

// The crash test re-executes this test binary as an archiver child; TestMain
// sends it here when these variables are set.
const (
	envCrashDir  = "BUZZER_AUDIT_CRASH_DIR"
	envCrashTear = "BUZZER_AUDIT_CRASH_TEAR"
	crashRecords = 400
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(envCrashDir); dir != "" {
		tear, _ := strconv.Atoi(os.Getenv(envCrashTear))
		os.Exit(crashChild(dir, tear))
	}
	os.Exit(m.Run())
}

// crashRecordSet is the child's deterministic input: deposits over ten
// players, dense per player.
func crashRecordSet() ([][]byte, []string) {
	var recs [][]byte
	var ids []string
	seq := map[string]uint64{}
	t0 := time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)
	for i := 0; i < crashRecords; i++ {
		pl := fmt.Sprintf("p%d", i%10)
		seq[pl]++
		r := &audit.Record{ID: fmt.Sprintf("crash-%04d", i), Jurisdiction: "US-PA", Component: audit.ComponentWallet, Key: pl, Seq: seq[pl],
			Time: t0.Add(time.Duration(i) * time.Millisecond), Type: audit.TypeLedgerTransaction}
		if err := r.SetPayload(audit.LedgerTransaction{TxID: r.ID, Kind: "deposit", Player: pl, EffectKey: "e-" + r.ID,
			Postings: []audit.Posting{{acct(pl), "USD", 100}, {"house|US-PA|USD|cashier|0", "USD", -100}}}); err != nil {
			panic(err)
		}
		b, err := audit.Encode(r)
		if err != nil {
			panic(err)
		}
		recs, ids = append(recs, b), append(ids, r.ID)
	}
	return recs, ids
}

// tearFS lets the tear-th write through half-way, says so on stdout and
// blocks forever: the parent SIGKILLs the process in the middle of a flush.
type tearFS struct {
	archive.OSFS
	mu     sync.Mutex
	writes int
	tear   int
}

type tearFile struct {
	archive.File
	fs *tearFS
}

func (t *tearFS) OpenFile(name string, flag int, perm fs.FileMode) (archive.File, error) {
	f, err := t.OSFS.OpenFile(name, flag, perm)
	if err != nil || flag == os.O_RDONLY {
		return f, err
	}
	return &tearFile{File: f, fs: t}, nil
}

func (f *tearFile) Write(b []byte) (int, error) {
	f.fs.mu.Lock()
	f.fs.writes++
	n := f.fs.writes
	f.fs.mu.Unlock()
	if n == f.fs.tear {
		f.File.Write(b[:len(b)/2])
		fmt.Fprintf(os.Stdout, "TORN %d %d\n", len(b)/2, len(b))
		select {}
	}
	return f.File.Write(b)
}

// crashChild archives the record set from a stream that delivers all of it
// (already archived records included, as a relay re-sending after a crash
// would), printing each acknowledgement. It returns 0 after all are acked.
func crashChild(dir string, tear int) int {
	recs, _ := crashRecordSet()
	src := newMemSource()
	src.onAck = func(data []byte) error {
		r, err := audit.Decode(data)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(os.Stdout, "ACK %s\n", r.ID)
		return err
	}
	for _, b := range recs {
		src.Publish(b)
	}
	cfg := smallConfig(dir, &tearFS{tear: tear})
	cfg.SegmentRecords = 25
	cfg.FlushBytes = 2 << 10
	a, err := newArchiver(cfg, src, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for {
		src.mu.Lock()
		n := len(src.acks)
		ch := src.changed
		src.mu.Unlock()
		if n == crashRecords {
			break
		}
		select {
		case err := <-done:
			fmt.Fprintln(os.Stderr, "Run:", err)
			return 2
		case <-ch:
		}
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Fprintln(os.Stdout, "DONE")
	return 0
}

func TestArchiverSIGKILLMidFlushLosesAndDuplicatesNothing(t *testing.T) {
	dir := t.TempDir()
	_, all := crashRecordSet()
	known := map[string]bool{}
	for _, id := range all {
		known[id] = true
	}
	acked := map[string]bool{}
	torn := 0
	for round, tear := range []int{4, 7, 12, 3, 0} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envCrashDir+"="+dir, envCrashTear+"="+strconv.Itoa(tear))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		watchdog := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
		killed, done := false, false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "ACK "):
				acked[strings.TrimPrefix(line, "ACK ")] = true
			case strings.HasPrefix(line, "TORN "):
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				killed = true
			case line == "DONE":
				done = true
			}
		}
		err = cmd.Wait()
		watchdog.Stop()
		if tear > 0 && !killed || tear == 0 && (!done || err != nil) {
			t.Fatalf("round %d (tear at write %d): killed=%v done=%v err=%v\n%s", round, tear, killed, done, err, stderr.String())
		}

		// Recover as the next archiver would, then check the archive.
		w, err := archive.Open(dir, archive.Options{Key: testKey(), Identify: archive.IdentifyRecord})
		if err != nil {
			t.Fatalf("round %d: reopening after SIGKILL: %v", round, err)
		}
		rec := w.Recovery()
		w.Close()
		if rec.TruncatedBytes > 0 {
			torn++
		}
		ids := archivedIDs(t, dir)
		seen := map[string]bool{}
		for _, id := range ids {
			if seen[id] {
				t.Fatalf("round %d: record %s archived twice", round, id)
			}
			if !known[id] {
				t.Fatalf("round %d: unknown record %s archived", round, id)
			}
			seen[id] = true
		}
		for id := range acked {
			if !seen[id] {
				t.Fatalf("round %d: acknowledged record %s is not in the archive", round, id)
			}
		}
		t.Logf("round %d: tear at write %d, %d acknowledged, %d archived, recovery %+v", round, tear, len(acked), len(ids), rec)
	}
	if len(acked) != crashRecords {
		t.Fatalf("%d of %d acknowledged after the last round", len(acked), crashRecords)
	}
	checkExactlyOnce(t, dir, all)
	if torn == 0 {
		t.Fatal("no round left a torn tail write to recover: the kill never landed mid-flush")
	}
}
