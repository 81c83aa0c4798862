package rng_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"
)

// testConfig never issues checkpoints on a timer during a test, so which
// checkpoints exist depends only on entry counts and explicit requests.
func testConfig(mut ...func(*rng.Config)) rng.Config {
	c := rng.Config{
		Origin:             origin,
		Jurisdiction:       "US-NJ",
		CheckpointInterval: time.Hour,
		CheckpointEvery:    1 << 40,
		Clock:              &buzzer.FixedClock{T: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
	}
	for _, m := range mut {
		m(&c)
	}
	return c
}

func startService(t *testing.T, store rng.Store, key rng.Signer, cfg rng.Config) *rng.Service {
	t.Helper()
	s, err := rng.NewService(context.Background(), store, key, cfg)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func intReq(n int64, count int) rng.DrawRequest {
	return rng.DrawRequest{Purpose: "test.draw", Ref: "ref-1", Requester: "tester", Kind: rng.KindInt, N: n, Count: count}
}

func mustDraw(t *testing.T, s *rng.Service, req rng.DrawRequest) rng.Draw {
	t.Helper()
	d, err := s.Draw(context.Background(), req)
	if err != nil {
		t.Fatalf("Draw: %v", err)
	}
	return d
}

func mustVerify(t *testing.T, s *rng.Service, key rng.Signer, d rng.Draw) rng.Checkpoint {
	t.Helper()
	p, err := s.Proof(context.Background(), d.ID)
	if err != nil {
		t.Fatalf("Proof(%s): %v", d.ID, err)
	}
	rec, cp, err := rng.VerifyDraw(p, verifierOf(t, key))
	if err != nil {
		t.Fatalf("VerifyDraw(%s): %v", d.ID, err)
	}
	if p.Index != d.Index || !reflect.DeepEqual(rec, d.Record) {
		t.Fatalf("proved record %+v at %d, drawn %+v at %d", rec, p.Index, d.Record, d.Index)
	}
	return cp
}

func TestDrawKindsAreLoggedAndVerifiable(t *testing.T) {
	key := newKey(t, origin)
	s := startService(t, rngtest.NewMemStore(), key, testConfig())
	reqs := []rng.DrawRequest{
		intReq(6, 10),
		{Purpose: "blackjack.shoe", Ref: "table-3", Requester: "table-service", Kind: rng.KindShuffle, N: 416},
		{Purpose: "seed", Requester: "ops", Kind: rng.KindBytes, N: 32},
		intReq(rng.MaxIntN, rng.MaxCount),
	}
	for i, req := range reqs {
		d := mustDraw(t, s, req)
		if d.Index != int64(i) {
			t.Fatalf("draw %d got log index %d", i, d.Index)
		}
		if err := d.Record.Validate(); err != nil {
			t.Fatalf("draw %d record invalid: %v", i, err)
		}
		if d.Jurisdiction != "US-NJ" || d.Purpose != req.Purpose || d.Requester != req.Requester || d.Kind != req.Kind {
			t.Fatalf("draw %d record does not reflect its request: %+v", i, d.Record)
		}
		cp := mustVerify(t, s, key, d)
		if cp.Size != int64(i+1) {
			t.Fatalf("proof of draw %d used checkpoint size %d, want %d (covering it)", i, cp.Size, i+1)
		}
	}
	if _, err := s.Proof(context.Background(), "5d0e1a2b-3c4d-4e5f-8a6b-7c8d9e0f1a2b"); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("Proof of an unknown draw: %v, want not_found", err)
	}
	if _, err := s.Proof(context.Background(), "nope"); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("Proof of a malformed id: %v, want invalid", err)
	}
	if _, err := s.Draw(context.Background(), intReq(0, 1)); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("Draw with n=0: %v, want invalid", err)
	}
}

// scriptReader serves bytes the test sets, so a test can see when the
// service reads randomness.
type scriptReader struct {
	mu   sync.Mutex
	fill byte
	read int
}

func (r *scriptReader) set(b byte) { r.mu.Lock(); r.fill = b; r.mu.Unlock() }
func (r *scriptReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range p {
		p[i] = r.fill
	}
	r.read += len(p)
	return len(p), nil
}

func TestDrawReadsRandomnessAtRequestTime(t *testing.T) {
	src := &scriptReader{fill: 0x11}
	key := newKey(t, origin)
	s := startService(t, rngtest.NewMemStore(), key, testConfig(func(c *rng.Config) { c.Random = src }))
	if src.read != 0 {
		t.Fatalf("the service read %d random bytes before any draw", src.read)
	}
	req := rng.DrawRequest{Purpose: "p", Requester: "r", Kind: rng.KindBytes, N: 16}
	d1 := mustDraw(t, s, req)
	src.set(0xee)
	d2 := mustDraw(t, s, req)
	if !bytes.Equal(d1.Bytes, bytes.Repeat([]byte{0x11}, 16)) || !bytes.Equal(d2.Bytes, bytes.Repeat([]byte{0xee}, 16)) {
		t.Fatalf("draws do not reflect the source at request time: %x then %x", d1.Bytes, d2.Bytes)
	}
	mustVerify(t, s, key, d2)
}

func TestAppendFailureReturnsNoValues(t *testing.T) {
	ctx := context.Background()
	mem := rngtest.NewMemStore()
	store := &rngtest.FaultStore{Store: mem}
	key := newKey(t, origin)
	s := startService(t, store, key, testConfig())
	ok := mustDraw(t, s, intReq(100, 5))

	store.SetAppendError(errors.New("disk on fire"))
	for _, req := range []rng.DrawRequest{intReq(100, 5), {Purpose: "p", Requester: "r", Kind: rng.KindBytes, N: 8}} {
		d, err := s.Draw(ctx, req)
		if buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
			t.Fatalf("Draw with a failing append: %v, want unavailable", err)
		}
		if d.Values != nil || d.Bytes != nil || d.ID != "" {
			t.Fatalf("a failed draw revealed %+v", d)
		}
	}
	if n, _ := mem.TreeSize(ctx); n != 1 {
		t.Fatalf("tree size after failed appends = %d, want 1", n)
	}

	store.SetAppendError(nil)
	d := mustDraw(t, s, intReq(100, 5))
	if d.Index != 1 {
		t.Fatalf("first draw after healing got index %d, want 1", d.Index)
	}
	mustVerify(t, s, key, ok)
	mustVerify(t, s, key, d)
	if _, err := rng.Audit(ctx, mem, verifierOf(t, key)); err != nil {
		t.Fatalf("Audit after failed appends: %v", err)
	}
}

// gateStore holds the first Append until released and records batch sizes.
type gateStore struct {
	rng.Store
	gate    chan struct{}
	entered chan struct{}
	once    sync.Once
	mu      sync.Mutex
	batches []int
}

func (g *gateStore) Append(ctx context.Context, old int64, recs []rng.StoredRecord, hs []tlog.Hash) error {
	g.once.Do(func() { close(g.entered); <-g.gate })
	g.mu.Lock()
	g.batches = append(g.batches, len(recs))
	g.mu.Unlock()
	return g.Store.Append(ctx, old, recs, hs)
}

func runGroupCommit(t *testing.T, maxBatch, draws, wantQueued int) []int {
	t.Helper()
	mem := rngtest.NewMemStore()
	g := &gateStore{Store: mem, gate: make(chan struct{}), entered: make(chan struct{})}
	key := newKey(t, origin)
	reg := prometheus.NewRegistry()
	s := startService(t, g, key, testConfig(func(c *rng.Config) { c.MaxBatch = maxBatch; c.Registerer = reg }))

	results := make(chan rng.Draw, draws)
	var wg sync.WaitGroup
	draw := func() {
		defer wg.Done()
		d, err := s.Draw(context.Background(), intReq(1000, 1))
		if err != nil {
			t.Error(err)
			return
		}
		results <- d
	}
	wg.Add(1)
	go draw()
	<-g.entered // the first append is in flight and held
	for i := 1; i < draws; i++ {
		wg.Add(1)
		go draw()
	}
	deadline := time.Now().Add(20 * time.Second)
	for rng.QueueLen(s) < wantQueued {
		if time.Now().After(deadline) {
			t.Fatalf("only %d draws queued", rng.QueueLen(s))
		}
		time.Sleep(time.Millisecond)
	}
	close(g.gate)
	wg.Wait()
	close(results)
	seen := map[int64]bool{}
	for d := range results {
		if seen[d.Index] || d.Index < 0 || d.Index >= int64(draws) {
			t.Fatalf("bad or repeated log index %d", d.Index)
		}
		seen[d.Index] = true
	}
	if len(seen) != draws {
		t.Fatalf("%d draws returned, want %d", len(seen), draws)
	}
	if _, err := rng.Audit(context.Background(), mem, verifierOf(t, key)); err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "buzzer_rng_append_batch_size" {
			found = true
			if got := mf.GetMetric()[0].GetHistogram().GetSampleSum(); int(got) != draws {
				t.Fatalf("batch size histogram sums to %v, want %d", got, draws)
			}
		}
	}
	if !found {
		t.Fatal("batch size metric not registered")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.batches
}

func TestConcurrentDrawsShareOneAppend(t *testing.T) {
	batches := runGroupCommit(t, 128, 100, 99)
	if !reflect.DeepEqual(batches, []int{1, 99}) {
		t.Fatalf("appends carried %v draws, want [1 99] (99 queued draws in one commit)", batches)
	}
}

func TestBatchSizeIsBounded(t *testing.T) {
	batches := runGroupCommit(t, 10, 45, 10)
	total := 0
	for _, b := range batches {
		if b > 10 {
			t.Fatalf("an append carried %d draws, more than MaxBatch 10: %v", b, batches)
		}
		total += b
	}
	if total != 45 {
		t.Fatalf("appends carried %d draws, want 45", total)
	}
}

func TestCheckpointEveryNEntries(t *testing.T) {
	ctx := context.Background()
	mem := rngtest.NewMemStore()
	key := newKey(t, origin)
	s := startService(t, mem, key, testConfig(func(c *rng.Config) { c.CheckpointEvery = 5 }))
	for i := 0; i < 12; i++ {
		mustDraw(t, s, intReq(10, 1))
	}
	cps, err := mem.Checkpoints(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, c := range cps {
		sizes = append(sizes, c.Size)
	}
	if !reflect.DeepEqual(sizes, []int64{0, 5, 10}) {
		t.Fatalf("checkpoint sizes %v, want [0 5 10]", sizes)
	}
	latest, err := s.Checkpoint(ctx)
	if err != nil || latest.Size != 10 {
		t.Fatalf("Checkpoint() = size %d, %v; want 10", latest.Size, err)
	}
}

func TestCheckpointOnInterval(t *testing.T) {
	ctx := context.Background()
	mem := rngtest.NewMemStore()
	key := newKey(t, origin)
	s := startService(t, mem, key, testConfig(func(c *rng.Config) { c.CheckpointInterval = time.Millisecond }))
	mustDraw(t, s, intReq(10, 1))
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := s.Checkpoint(ctx)
		if err == nil && c.Size == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covering the draw was issued on the interval")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRestartContinuesTheLog(t *testing.T) {
	ctx := context.Background()
	mem := rngtest.NewMemStore()
	keyPath := filepath.Join(t.TempDir(), "rng.key")
	key1, err := rng.LoadOrCreateKeyFile(keyPath, origin)
	if err != nil {
		t.Fatal(err)
	}
	v := verifierOf(t, key1)
	s1, err := rng.NewService(ctx, mem, key1, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	var before []rng.Draw
	for i := 0; i < 7; i++ {
		before = append(before, mustDraw(t, s1, intReq(52, 2)))
	}
	trusted := mustVerify(t, s1, key1, before[6])
	s1.Close()
	if _, err := s1.Draw(ctx, intReq(52, 1)); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("Draw after Close: %v, want unavailable", err)
	}

	key2, err := rng.LoadOrCreateKeyFile(keyPath, origin)
	if err != nil {
		t.Fatal(err)
	}
	s2 := startService(t, mem, key2, testConfig())
	var after []rng.Draw
	for i := 0; i < 5; i++ {
		d := mustDraw(t, s2, intReq(52, 2))
		if d.Index != int64(7+i) {
			t.Fatalf("draw after restart got index %d, want %d", d.Index, 7+i)
		}
		after = append(after, d)
	}
	latest := mustVerify(t, s2, key2, after[4])
	for _, d := range before {
		if cp := mustVerify(t, s2, key2, d); cp.Size != 12 {
			t.Fatalf("old draw proved against size %d, want 12", cp.Size)
		}
	}
	p, err := s2.Consistency(ctx, trusted.Size, latest.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := rng.VerifyConsistency(trusted, latest, p.Hashes); err != nil {
		t.Fatalf("log across restart is not consistent: %v", err)
	}
	rep, err := rng.Audit(ctx, mem, v)
	if err != nil || rep.Records != 12 || rep.Root != latest.Hash {
		t.Fatalf("Audit = %+v, %v", rep, err)
	}
}

func wantTamper(t *testing.T, err error, index, checkpoint int64) {
	t.Helper()
	var te *rng.TamperError
	if !errors.As(err, &te) {
		t.Fatalf("error %v is not a TamperError", err)
	}
	if te.Index != index || te.Checkpoint != checkpoint {
		t.Fatalf("tamper error names record %d checkpoint %d (%v), want record %d checkpoint %d", te.Index, te.Checkpoint, err, index, checkpoint)
	}
	if buzzer.ErrorCode(err) != buzzer.ECONFLICT {
		t.Fatalf("tamper error code %q, want conflict", buzzer.ErrorCode(err))
	}
	if index >= 0 && !bytes.Contains([]byte(buzzer.ErrorMessage(err)), []byte(fmt.Sprintf("record %d", index))) {
		t.Fatalf("message %q does not name record %d", buzzer.ErrorMessage(err), index)
	}
}

// logWithDraws returns a store holding n draws and checkpoints every 4.
func logWithDraws(t *testing.T, n int) (*rngtest.MemStore, *rng.KeySigner, []rng.Draw) {
	t.Helper()
	mem := rngtest.NewMemStore()
	key := newKey(t, origin)
	s, err := rng.NewService(context.Background(), mem, key, testConfig(func(c *rng.Config) { c.CheckpointEvery = 4 }))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ds []rng.Draw
	for i := 0; i < n; i++ {
		ds = append(ds, mustDraw(t, s, intReq(1000, 3)))
	}
	return mem, key, ds
}

func TestAuditDetectsChangedRecord(t *testing.T) {
	ctx := context.Background()
	mem, key, ds := logWithDraws(t, 20)
	v := verifierOf(t, key)
	if _, err := rng.Audit(ctx, mem, v); err != nil {
		t.Fatalf("Audit of an untouched log: %v", err)
	}
	// Rewrite draw 13's values to something else, still a valid record.
	rec := ds[13].Record
	rec.Values = []int64{1, 2, 3}
	data, _ := rec.MarshalBinary()
	mem.TamperRecord(13, data)
	_, err := rng.Audit(ctx, mem, v)
	wantTamper(t, err, 13, -1)

	// A verifier fetching the draw's proof from the tampered store also fails on 13.
	s := startService(t, mem, key, testConfig())
	p, err := s.Proof(ctx, ds[13].ID)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = rng.VerifyDraw(p, v)
	wantTamper(t, err, 13, 20)
	mustVerify(t, s, key, ds[12]) // the rest still verifies
}

func TestAuditDetectsChangedHash(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		level     int
		n         int64
		wantIndex int64
	}{
		{0, 6, 6},   // the leaf hash of record 6
		{2, 1, 4},   // the subtree over records 4..7
		{0, 19, 19}, // the last leaf
	} {
		mem, key, _ := logWithDraws(t, 20)
		var h tlog.Hash
		h[0] = 0xde
		mem.TamperHash(tlog.StoredHashIndex(tc.level, tc.n), h)
		_, err := rng.Audit(ctx, mem, verifierOf(t, key))
		wantTamper(t, err, tc.wantIndex, -1)
	}
}

// rewrite builds a new store holding records (re-hashed consistently, as an
// operator rewriting history would) and copies the given checkpoints.
func rewrite(t *testing.T, recs []rng.StoredRecord, cps []rng.SavedCheckpoint) *rngtest.MemStore {
	t.Helper()
	ctx := context.Background()
	out := rngtest.NewMemStore()
	var all []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			hs[i] = all[x]
		}
		return hs, nil
	})
	for i, r := range recs {
		hs, err := tlog.StoredHashes(int64(i), r.Data, reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := out.Append(ctx, int64(i), []rng.StoredRecord{r}, hs); err != nil {
			t.Fatal(err)
		}
		all = append(all, hs...)
	}
	for _, c := range cps {
		if err := out.SaveCheckpoint(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestAuditDetectsRewrittenHistory(t *testing.T) {
	ctx := context.Background()
	mem, key, ds := logWithDraws(t, 10)
	recs, _ := mem.Records(ctx, 0, 100)
	cps, _ := mem.Checkpoints(ctx, 0, 100) // sizes 0, 4, 8
	rec := ds[5].Record
	rec.Values = []int64{7, 7, 7}
	recs[5].Data, _ = rec.MarshalBinary()
	forged := rewrite(t, recs, cps)
	// Every stored hash matches the forged records; only the signed checkpoint
	// at 8 (covering records 4..7) exposes the change.
	_, err := rng.Audit(ctx, forged, verifierOf(t, key))
	wantTamper(t, err, 4, 8)
}

func TestAuditRejectsCheckpointByAnotherKey(t *testing.T) {
	ctx := context.Background()
	mem, key, _ := logWithDraws(t, 6)
	other := newKey(t, origin)
	_, err := rng.Audit(ctx, mem, verifierOf(t, other))
	wantTamper(t, err, -1, 0)

	// A checkpoint signed by another key slipped into the store.
	root, _ := tlog.TreeHash(6, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) { return mem.ReadHashes(ctx, idx) }))
	forged, _ := rng.SignCheckpoint(rng.Checkpoint{Origin: origin, Size: 6, Hash: root}, other)
	if err := mem.SaveCheckpoint(ctx, rng.SavedCheckpoint{Size: 6, Note: forged, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err = rng.Audit(ctx, mem, verifierOf(t, key))
	wantTamper(t, err, -1, 6)
}

func TestAuditDetectsTruncation(t *testing.T) {
	ctx := context.Background()
	mem, key, _ := logWithDraws(t, 9)
	recs, _ := mem.Records(ctx, 0, 100)
	cps, _ := mem.Checkpoints(ctx, 0, 100)
	cut := rewrite(t, recs[:6], cps)
	_, err := rng.Audit(ctx, cut, verifierOf(t, key))
	wantTamper(t, err, -1, 8)
}

func TestForkFailsConsistency(t *testing.T) {
	ctx := context.Background()
	key := newKey(t, origin)
	memA := rngtest.NewMemStore()
	a := startService(t, memA, key, testConfig())
	var ds []rng.Draw
	for i := 0; i < 10; i++ {
		ds = append(ds, mustDraw(t, a, intReq(1000, 1)))
	}
	trusted := mustVerify(t, a, key, ds[9]) // a verifier trusts size 10

	// The operator forks: keeps records 0..5, replaces the rest, signs with
	// the same key, and grows the log past the trusted size.
	recs, _ := memA.Records(ctx, 0, 6)
	memB := rewrite(t, recs, nil)
	b := startService(t, memB, key, testConfig())
	var last rng.Draw
	for i := 0; i < 8; i++ {
		last = mustDraw(t, b, intReq(1000, 1))
	}
	latest := mustVerify(t, b, key, last) // signature and inclusion are fine...
	p, err := b.Consistency(ctx, trusted.Size, latest.Size)
	if err != nil {
		t.Fatal(err)
	}
	err = rng.VerifyConsistency(trusted, latest, p.Hashes) // ...but it is not an extension
	if buzzer.ErrorCode(err) != buzzer.ECONFLICT || buzzer.ErrorReason(err) != "log_fork" {
		t.Fatalf("forked log: VerifyConsistency = %v, want conflict/log_fork", err)
	}
	// The honest log's own later checkpoint passes.
	d := mustDraw(t, a, intReq(1000, 1))
	newer := mustVerify(t, a, key, d)
	pa, err := a.Consistency(ctx, trusted.Size, newer.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := rng.VerifyConsistency(trusted, newer, pa.Hashes); err != nil {
		t.Fatalf("honest log: %v", err)
	}
	// Same size, different root; a log that shrank; another origin.
	sameSize := trusted
	sameSize.Hash[0] ^= 1
	for name, c := range map[string]rng.Checkpoint{
		"same size, other root": sameSize,
		"shrunk":                {Origin: origin, Size: 9, Hash: trusted.Hash},
		"other origin":          {Origin: "other", Size: newer.Size, Hash: newer.Hash},
	} {
		if err := rng.VerifyConsistency(trusted, c, pa.Hashes); buzzer.ErrorReason(err) != "log_fork" {
			t.Errorf("%s: VerifyConsistency = %v, want log_fork", name, err)
		}
	}
}

func TestConsistencyBounds(t *testing.T) {
	ctx := context.Background()
	key := newKey(t, origin)
	s := startService(t, rngtest.NewMemStore(), key, testConfig())
	d := mustDraw(t, s, intReq(10, 1))
	mustVerify(t, s, key, d) // checkpoint at 1
	for _, r := range [][2]int64{{-1, 1}, {2, 1}, {0, 2}} {
		if _, err := s.Consistency(ctx, r[0], r[1]); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("Consistency(%d, %d) = %v, want invalid", r[0], r[1], err)
		}
	}
	p, err := s.Consistency(ctx, 1, 1)
	if err != nil || len(p.Hashes) != 0 {
		t.Fatalf("Consistency(1, 1) = %+v, %v", p, err)
	}
}

func TestStartRefusesTamperedLog(t *testing.T) {
	mem, key, _ := logWithDraws(t, 8)
	var h tlog.Hash
	mem.TamperHash(tlog.StoredHashIndex(3, 0), h) // the root of records 0..7
	_, err := rng.NewService(context.Background(), mem, key, testConfig())
	wantTamper(t, err, -1, 8)
}

func TestNewServiceValidatesConfig(t *testing.T) {
	key := newKey(t, origin)
	for name, mut := range map[string]func(*rng.Config){
		"no origin":       func(c *rng.Config) { c.Origin = "" },
		"origin not key":  func(c *rng.Config) { c.Origin = "other.origin" },
		"no jurisdiction": func(c *rng.Config) { c.Jurisdiction = "" },
		"negative batch":  func(c *rng.Config) { c.MaxBatch = -1 },
		"long wait":       func(c *rng.Config) { c.BatchWait = time.Minute },
	} {
		if _, err := rng.NewService(context.Background(), rngtest.NewMemStore(), key, testConfig(mut)); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: NewService = %v, want invalid", name, err)
		}
	}
}
