package audit_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
)

type running struct {
	a      *audit.Archiver
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

func startArchiver(t *testing.T, cfg testConfig, src audit.Source) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := newArchiver(cfg, src, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1), reg: reg}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

// testConfig is an archiver's configuration and the filesystem its archive
// is written through.
type testConfig struct {
	audit.Config
	FS archive.FS
}

func newArchiver(c testConfig, src audit.Source, reg prometheus.Registerer) (*audit.Archiver, error) {
	return audit.NewArchiver(c.Config, src, archive.Opener{FS: c.FS}, testKey(), reg, nil)
}

func smallConfig(dir string, fsys archive.FS) testConfig {
	return testConfig{FS: fsys, Config: audit.Config{
		Dir:      dir,
		FlushAge: 5 * time.Millisecond, FlushBytes: 8 << 10, MaxBufferBytes: 64 << 10, FetchMax: 64,
		MaxRecordBytes: 4 << 10, SegmentBytes: 64 << 10, SegmentRecords: 200,
		NakDelay: 5 * time.Millisecond, RetryMin: time.Millisecond, RetryMax: 20 * time.Millisecond,
	}}
}

// checkExactlyOnce asserts the archive verifies and holds exactly ids, each
// once.
func checkExactlyOnce(t *testing.T, dir string, ids []string) {
	t.Helper()
	got := archivedIDs(t, dir)
	count := map[string]int{}
	for _, id := range got {
		count[id]++
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Fatalf("record %s archived %d times", id, count[id])
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("archive holds %d records, want %d", len(got), len(ids))
	}
}

func TestArchiverAcknowledgesOnlyDurableRecords(t *testing.T) {
	dir := t.TempDir()
	fsys := newGateFS()
	src := newMemSource()
	var ackErr error
	var mu sync.Mutex
	src.onAck = func(data []byte) error {
		r, err := audit.Decode(data)
		if err == nil {
			var body []byte
			if body, err = audit.Encode(r); err == nil && !fsys.isDurable(body) {
				err = errors.New("acknowledged before fsync: " + r.ID)
			}
		}
		if err != nil {
			mu.Lock()
			ackErr = err
			mu.Unlock()
		}
		return nil
	}
	w := newWorkload(t)
	want := w.mixed(12, 8)
	// Re-sent duplicates and records ahead of their predecessor.
	src.Publish(w.recs[5])
	src.Publish(w.recs[1])
	for i := len(w.recs) - 1; i >= len(w.recs)-20; i-- {
		src.Publish(w.recs[i])
	}
	for _, b := range w.recs {
		src.Publish(b)
	}
	for _, b := range w.recs[:50] {
		src.Publish(b)
	}
	src.Publish([]byte(`{"not":"a record"}`))
	// A different record claiming an archived place (a capture bug) is
	// dead-lettered, neither archived nor acknowledged as a duplicate.
	impostor, err := audit.Decode(w.recs[3])
	if err != nil {
		t.Fatal(err)
	}
	impostor.ID = "impostor"
	ib, _ := audit.Encode(impostor)
	src.Publish(ib)
	r := startArchiver(t, smallConfig(dir, fsys), src)
	src.waitAcked(t, w.ids)
	src.waitFor(t, func() bool { return src.rejected == 2 })
	r.stop(t)
	if ackErr != nil {
		t.Fatal(ackErr)
	}
	checkArchived(t, dir, r, w, want)
	if src.rejected != 2 || src.acks["impostor"] != 0 {
		t.Fatalf("%d messages rejected, want the malformed one and the impostor", src.rejected)
	}
	if n := metricValue(t, r.reg, "buzzer_audit_segments_sealed_total"); n < 1 {
		t.Fatalf("no seals counted")
	}
	if n := metricValue(t, r.reg, "buzzer_audit_flush_duration_seconds"); n < 1 {
		t.Fatalf("no flush latency observed")
	}
	if n := metricValue(t, r.reg, "buzzer_audit_buffer_bytes"); n != 0 {
		t.Fatalf("buffer gauge %v after draining", n)
	}
}

// TestArchiverTakesRelayBatches: messages that carry several records (the
// relay's batches) are archived record by record and acknowledged once all
// of theirs are durable; batches published newest first are sent back
// until their predecessors are in; a batch with one record that can never
// be archived is dead-lettered whole, and its other records are archived
// only from the messages that also carry them.
func TestArchiverTakesRelayBatches(t *testing.T) {
	dir := t.TempDir()
	src := newMemSource()
	w := newWorkload(t)
	want := w.mixed(10, 6)
	join := func(recs [][]byte) []byte { return bytes.Join(recs, []byte{'\n'}) }
	var batches [][]byte
	for i := 0; i < len(w.recs); i += 7 {
		batches = append(batches, join(w.recs[i:min(i+7, len(w.recs))]))
	}
	for i := len(batches) - 1; i >= 0; i-- {
		src.Publish(batches[i])
	}
	src.Publish(join([][]byte{w.recs[0], []byte(`{"not":"a record"}`), w.recs[1]}))
	r := startArchiver(t, smallConfig(dir, nil), src)
	src.waitAcked(t, w.ids)
	src.waitFor(t, func() bool { return src.rejected == 1 })
	r.stop(t)
	checkArchived(t, dir, r, w, want)
	if n := metricValue(t, r.reg, "buzzer_audit_records_out_of_order_total"); n == 0 {
		t.Fatal("batches published newest first were never sent back")
	}
}

// checkArchived asserts that the archive in dir holds w's records exactly
// once, replays to want, and that r counted each as archived once.
func checkArchived(t *testing.T, dir string, r *running, w *workload, want audit.State) {
	t.Helper()
	checkExactlyOnce(t, dir, w.ids)
	st, err := audit.Replay(archive.Records{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if d := audit.Diff(st, want); len(d) > 0 {
		t.Fatalf("replay differs from the workload: %v", d)
	}
	if n := metricValue(t, r.reg, "buzzer_audit_records_archived_total"); n != float64(len(w.recs)) {
		t.Fatalf("records archived metric %v, want %d", n, len(w.recs))
	}
}

// metricValue reads a counter, gauge or histogram (its sample count) from reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestArchiverFlushTriggers(t *testing.T) {
	for _, c := range []struct {
		name  string
		age   time.Duration
		bytes int
		n     int
	}{
		{"age", 10 * time.Millisecond, 60 << 10, 3}, // far below the size trigger
		{"size", time.Hour, 2 << 10, 200},           // the age trigger never fires
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := smallConfig(dir, nil)
			cfg.FlushAge, cfg.FlushBytes = c.age, c.bytes
			src := newMemSource()
			w := newWorkload(t)
			for i := 0; i < c.n; i++ {
				w.draw("log")
			}
			for _, b := range w.recs {
				src.Publish(b)
			}
			r := startArchiver(t, cfg, src)
			if c.name == "age" {
				src.waitAcked(t, w.ids)
			} else {
				// Everything but a tail smaller than FlushBytes is flushed
				// by size alone; stopping flushes the tail.
				src.waitAckedAtLeast(t, len(w.ids)-c.bytes/200)
			}
			r.stop(t)
			src.waitAcked(t, w.ids)
			checkExactlyOnce(t, dir, w.ids)
		})
	}
}

func TestArchiverStalledVolumeBacksUpUpstreamAndDrains(t *testing.T) {
	dir := t.TempDir()
	fsys := newGateFS()
	src := newMemSource()
	cfg := smallConfig(dir, fsys)
	r := startArchiver(t, cfg, src)

	w := newWorkload(t)
	for i := 0; i < 20; i++ {
		w.deposit("warmup", 100)
	}
	for _, b := range w.recs {
		src.Publish(b)
	}
	src.waitAcked(t, w.ids)

	fsys.Stall()
	// The producer (the relay publishing to the stream) runs while every
	// archive write is blocked, and never waits on the archiver.
	first := len(w.recs)
	w.mixed(20, 8)
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for _, b := range w.recs[first:] {
			src.Publish(b)
		}
	}()
	select {
	case <-produced:
	case <-time.After(30 * time.Second):
		t.Fatal("publishing blocked behind the stalled archive volume")
	}
	// The archiver fills its buffer, then stops pulling: the backlog waits
	// in the stream.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, backlog, _ := src.stats()
		if fsys.Blocked() > 0 && out > cfg.MaxBufferBytes-cfg.MaxRecordBytes && backlog > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("archiver never filled its buffer while stalled: outstanding %d, backlog %d, blocked %d", out, backlog, fsys.Blocked())
		}
		time.Sleep(2 * time.Millisecond)
	}
	_, _, _, fetches := src.stats()
	// While full, the fetcher waits for space instead of polling.
	time.Sleep(20 * time.Millisecond)
	if _, _, _, f := src.stats(); f != fetches {
		t.Fatalf("fetched %d more times while the buffer was full", f-fetches)
	}
	if n := metricValue(t, r.reg, "buzzer_audit_buffer_bytes"); n > float64(cfg.MaxBufferBytes) {
		t.Fatalf("buffer holds %v bytes, bound %d", n, cfg.MaxBufferBytes)
	}
	src.mu.Lock()
	for _, id := range w.ids[first:] {
		if src.acks[id] != 0 {
			src.mu.Unlock()
			t.Fatalf("record %s acknowledged while the volume was stalled", id)
		}
	}
	src.mu.Unlock()

	fsys.Resume()
	src.waitAcked(t, w.ids)
	r.stop(t)
	if _, maxOut, _, _ := src.stats(); maxOut > cfg.MaxBufferBytes {
		t.Fatalf("up to %d bytes were delivered and unacknowledged, bound %d", maxOut, cfg.MaxBufferBytes)
	}
	checkExactlyOnce(t, dir, w.ids)
	if _, err := audit.Replay(archive.Records{Dir: dir}); err != nil {
		t.Fatal(err)
	}
}

func TestArchiverSurvivesWriteErrors(t *testing.T) {
	dir := t.TempDir()
	fsys := newGateFS()
	src := newMemSource()
	r := startArchiver(t, smallConfig(dir, fsys), src)
	w := newWorkload(t)
	w.mixed(10, 6)
	half := len(w.recs) / 2
	for _, b := range w.recs[:half] {
		src.Publish(b)
	}
	src.waitAcked(t, w.ids[:half])
	for i := 0; i < 5; i++ {
		fsys.FailNext(1 + i%2)
		for _, b := range w.recs[half+i*(len(w.recs)-half)/5 : half+(i+1)*(len(w.recs)-half)/5] {
			src.Publish(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	src.waitAcked(t, w.ids)
	r.stop(t)
	if n := metricValue(t, r.reg, "buzzer_audit_flush_errors_total"); n == 0 {
		t.Fatal("no flush error was injected")
	}
	checkExactlyOnce(t, dir, w.ids)
}

func TestArchiverRefusesADamagedArchive(t *testing.T) {
	dir := t.TempDir()
	src := newMemSource()
	w := newWorkload(t)
	w.mixed(3, 3)
	for _, b := range w.recs {
		src.Publish(b)
	}
	r := startArchiver(t, smallConfig(dir, nil), src)
	src.waitAcked(t, w.ids)
	r.stop(t)
	checkExactlyOnce(t, dir, w.ids)
	flipFirstRecordOfLastSegment(t, dir)
	a, err := newArchiver(smallConfig(dir, nil), src, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("Run accepted an archive damaged in the middle")
	}
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	c := audit.Config{Dir: "/x"}.WithDefaults()
	if c != audit.DefaultConfig("/x") {
		t.Fatalf("WithDefaults = %+v", c)
	}
	if c.FlushAge != time.Second || c.FlushBytes != 256<<10 || c.MaxBufferBytes != 50<<20 {
		t.Fatalf("defaults are not the seed's: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]audit.Config{
		"no dir":           audit.DefaultConfig(""),
		"flush > buffer":   func() audit.Config { c := audit.DefaultConfig("/x"); c.FlushBytes = c.MaxBufferBytes + 1; return c }(),
		"buffer too small": func() audit.Config { c := audit.DefaultConfig("/x"); c.MaxBufferBytes = c.MaxRecordBytes; return c }(),
		"negative age":     func() audit.Config { c := audit.DefaultConfig("/x"); c.FlushAge = -1; return c }(),
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
