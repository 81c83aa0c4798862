package rngtest

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"
)

// RunStoreTests is the rng.Store conformance suite. newStore must return an
// empty store, independent of every other store it returned.
func RunStoreTests(t *testing.T, newStore func(t *testing.T) rng.Store) {
	t.Run("Empty", func(t *testing.T) { testEmpty(t, newStore(t)) })
	t.Run("AppendAndRead", func(t *testing.T) { testAppendAndRead(t, newStore(t)) })
	t.Run("AppendWrongSize", func(t *testing.T) { testAppendWrongSize(t, newStore(t)) })
	t.Run("AppendDuplicateID", func(t *testing.T) { testAppendDuplicateID(t, newStore(t)) })
	t.Run("AppendBadShape", func(t *testing.T) { testAppendBadShape(t, newStore(t)) })
	t.Run("ConcurrentAppend", func(t *testing.T) { testConcurrentAppend(t, newStore(t)) })
	t.Run("Checkpoints", func(t *testing.T) { testCheckpoints(t, newStore(t)) })
}

// logBuilder produces well-formed appends for a store: records with the
// right indexes and the tlog stored hashes they need, keeping every hash so
// tests can compare what the store returns.
type logBuilder struct {
	size   int64
	hashes []tlog.Hash
	data   [][]byte
	ids    []string
}

func (b *logBuilder) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x >= int64(len(b.hashes)) {
			return nil, fmt.Errorf("no hash %d", x)
		}
		out[i] = b.hashes[x]
	}
	return out, nil
}

// batch builds n records with fresh IDs and data (including a zero byte and
// non-UTF-8 bytes, which a store must keep exactly). It does not commit them
// to the builder: call commit after the store accepted them.
func (b *logBuilder) batch(t *testing.T, n int) ([]rng.StoredRecord, []tlog.Hash) {
	t.Helper()
	c := *b
	c.hashes = append([]tlog.Hash(nil), b.hashes...)
	var recs []rng.StoredRecord
	var hs []tlog.Hash
	for i := 0; i < n; i++ {
		data := []byte(fmt.Sprintf("record %d \x00\xff\xfe", c.size))
		h, err := tlog.StoredHashes(c.size, data, &c)
		if err != nil {
			t.Fatal(err)
		}
		c.hashes = append(c.hashes, h...)
		hs = append(hs, h...)
		recs = append(recs, rng.StoredRecord{Index: c.size, ID: uuid.NewString(), Data: data})
		c.size++
	}
	return recs, hs
}

func (b *logBuilder) commit(recs []rng.StoredRecord, hs []tlog.Hash) {
	for _, r := range recs {
		b.data = append(b.data, r.Data)
		b.ids = append(b.ids, r.ID)
	}
	b.hashes = append(b.hashes, hs...)
	b.size += int64(len(recs))
}

func (b *logBuilder) appendTo(t *testing.T, s rng.Store, n int) {
	t.Helper()
	recs, hs := b.batch(t, n)
	if err := s.Append(context.Background(), b.size, recs, hs); err != nil {
		t.Fatalf("Append(%d records at %d): %v", n, b.size, err)
	}
	b.commit(recs, hs)
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	if got := buzzer.ErrorCode(err); got != code {
		t.Fatalf("%s: error code %q (%v), want %q", what, got, err, code)
	}
}

func wantSize(t *testing.T, s rng.Store, want int64) {
	t.Helper()
	got, err := s.TreeSize(context.Background())
	if err != nil || got != want {
		t.Fatalf("TreeSize = %d, %v; want %d", got, err, want)
	}
}

func testEmpty(t *testing.T, s rng.Store) {
	ctx := context.Background()
	wantSize(t, s, 0)
	_, err := s.LatestCheckpoint(ctx)
	wantCode(t, err, buzzer.ENOTFOUND, "LatestCheckpoint on an empty store")
	_, err = s.RecordByID(ctx, uuid.NewString())
	wantCode(t, err, buzzer.ENOTFOUND, "RecordByID on an empty store")
	_, err = s.ReadHashes(ctx, []int64{0})
	wantCode(t, err, buzzer.ENOTFOUND, "ReadHashes on an empty store")
	hs, err := s.ReadHashes(ctx, nil)
	if err != nil || len(hs) != 0 {
		t.Fatalf("ReadHashes(nil) = %v, %v; want empty", hs, err)
	}
	recs, err := s.Records(ctx, 0, 10)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Records on an empty store = %v, %v", recs, err)
	}
	cps, err := s.Checkpoints(ctx, 0, 10)
	if err != nil || len(cps) != 0 {
		t.Fatalf("Checkpoints on an empty store = %v, %v", cps, err)
	}
}

func testAppendAndRead(t *testing.T, s rng.Store) {
	ctx := context.Background()
	var b logBuilder
	for _, n := range []int{1, 2, 5, 1, 8, 13} {
		b.appendTo(t, s, n)
		wantSize(t, s, b.size)
	}
	// Every stored hash, in one call, in reverse order with a repeat.
	var idx []int64
	for i := len(b.hashes) - 1; i >= 0; i-- {
		idx = append(idx, int64(i))
	}
	idx = append(idx, 3)
	got, err := s.ReadHashes(ctx, idx)
	if err != nil || len(got) != len(idx) {
		t.Fatalf("ReadHashes(all) = %d hashes, %v", len(got), err)
	}
	for i, x := range idx {
		if got[i] != b.hashes[x] {
			t.Fatalf("stored hash %d differs", x)
		}
	}
	_, err = s.ReadHashes(ctx, []int64{0, int64(len(b.hashes))})
	wantCode(t, err, buzzer.ENOTFOUND, "ReadHashes past the end")

	// The tree root from the store's hashes equals the builder's.
	r1, err := tlog.TreeHash(b.size, tlog.HashReaderFunc(func(x []int64) ([]tlog.Hash, error) { return s.ReadHashes(ctx, x) }))
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := tlog.TreeHash(b.size, &b)
	if r1 != r2 {
		t.Fatal("tree hash from the store differs")
	}

	for i, id := range b.ids {
		r, err := s.RecordByID(ctx, id)
		if err != nil || r.Index != int64(i) || r.ID != id || !bytes.Equal(r.Data, b.data[i]) {
			t.Fatalf("RecordByID(%s) = %+v, %v; want index %d", id, r, err, i)
		}
	}
	// Paging from every offset with several limits.
	for _, limit := range []int{1, 3, 7, 100} {
		for from := int64(0); from <= b.size; from++ {
			recs, err := s.Records(ctx, from, limit)
			if err != nil {
				t.Fatal(err)
			}
			want := b.size - from
			if want > int64(limit) {
				want = int64(limit)
			}
			if int64(len(recs)) != want {
				t.Fatalf("Records(%d, %d) returned %d records, want %d", from, limit, len(recs), want)
			}
			for k, r := range recs {
				i := from + int64(k)
				if r.Index != i || r.ID != b.ids[i] || !bytes.Equal(r.Data, b.data[i]) {
					t.Fatalf("Records(%d, %d)[%d] = index %d, want %d", from, limit, k, r.Index, i)
				}
			}
		}
	}
	recs, err := s.Records(ctx, b.size+5, 10)
	if err != nil || len(recs) != 0 {
		t.Fatalf("Records past the end = %v, %v", recs, err)
	}
}

func testAppendWrongSize(t *testing.T, s rng.Store) {
	ctx := context.Background()
	var b logBuilder
	b.appendTo(t, s, 3)
	for _, old := range []int64{0, 2, 4, 10} {
		// Hashes shaped for the claimed size, so only the size is wrong.
		recs, hs := shapedBatch(old, 2)
		err := s.Append(ctx, old, recs, hs)
		wantCode(t, err, buzzer.ECONFLICT, fmt.Sprintf("Append at size %d when the log has 3", old))
	}
	wantSize(t, s, 3)
	if _, err := s.ReadHashes(ctx, []int64{tlog.StoredHashCount(3)}); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("a refused append left hashes behind: %v", err)
	}
	b.appendTo(t, s, 1) // the log still accepts the right size
	wantSize(t, s, 4)
}

// shapedBatch returns n records at oldSize with the right number of
// (meaningless) hashes.
func shapedBatch(oldSize int64, n int) ([]rng.StoredRecord, []tlog.Hash) {
	var recs []rng.StoredRecord
	for i := 0; i < n; i++ {
		recs = append(recs, rng.StoredRecord{Index: oldSize + int64(i), ID: uuid.NewString(), Data: []byte{byte(i), 1}})
	}
	hs := make([]tlog.Hash, tlog.StoredHashCount(oldSize+int64(n))-tlog.StoredHashCount(oldSize))
	for i := range hs {
		hs[i][0] = byte(i + 1)
	}
	return recs, hs
}

func testAppendDuplicateID(t *testing.T, s rng.Store) {
	ctx := context.Background()
	var b logBuilder
	b.appendTo(t, s, 2)
	recs, hs := b.batch(t, 3)
	recs[2].ID = b.ids[0] // already logged
	err := s.Append(ctx, b.size, recs, hs)
	wantCode(t, err, buzzer.ECONFLICT, "Append with a logged draw ID")
	wantSize(t, s, 2)
	if _, err := s.RecordByID(ctx, recs[0].ID); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("a refused append left record %s behind: %v", recs[0].ID, err)
	}
	if _, err := s.ReadHashes(ctx, []int64{tlog.StoredHashCount(2)}); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("a refused append left hashes behind: %v", err)
	}
	recs, hs = b.batch(t, 2)
	recs[1].ID = recs[0].ID // duplicate inside one batch
	err = s.Append(ctx, b.size, recs, hs)
	wantCode(t, err, buzzer.ECONFLICT, "Append with a draw ID twice in one batch")
	wantSize(t, s, 2)
	b.appendTo(t, s, 2)
	wantSize(t, s, 4)
}

func testAppendBadShape(t *testing.T, s rng.Store) {
	ctx := context.Background()
	recs, hs := shapedBatch(0, 3)
	cases := map[string]func() error{
		"no records":     func() error { return s.Append(ctx, 0, nil, nil) },
		"too few hashes": func() error { return s.Append(ctx, 0, recs, hs[:len(hs)-1]) },
		"too many hashes": func() error {
			return s.Append(ctx, 0, recs, append(append([]tlog.Hash(nil), hs...), tlog.Hash{}))
		},
		"wrong index": func() error {
			bad := append([]rng.StoredRecord(nil), recs...)
			bad[1].Index = 5
			return s.Append(ctx, 0, bad, hs)
		},
		"empty data": func() error {
			bad := append([]rng.StoredRecord(nil), recs...)
			bad[0].Data = nil
			return s.Append(ctx, 0, bad, hs)
		},
		"negative size": func() error { return s.Append(ctx, -1, recs, hs) },
	}
	for name, f := range cases {
		wantCode(t, f(), buzzer.EINVALID, name)
	}
	wantSize(t, s, 0)
}

func testConcurrentAppend(t *testing.T, s rng.Store) {
	ctx := context.Background()
	const writers = 8
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs, hs := shapedBatch(0, 3)
			errs[w] = s.Append(ctx, 0, recs, hs)
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch buzzer.ErrorCode(err) {
		case "":
			ok++
		case buzzer.ECONFLICT:
		default:
			t.Fatalf("concurrent Append: %v (want success or ECONFLICT)", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent appends at size 0 succeeded, want exactly 1", ok)
	}
	wantSize(t, s, 3)
	hs, err := s.ReadHashes(ctx, []int64{0, 1, 2, 3})
	if err != nil || len(hs) != 4 {
		t.Fatalf("ReadHashes after concurrent appends: %v", err)
	}
}

func testCheckpoints(t *testing.T, s rng.Store) {
	ctx := context.Background()
	base := time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	mk := func(size int64) rng.SavedCheckpoint {
		return rng.SavedCheckpoint{Size: size, Note: []byte(fmt.Sprintf("origin\n%d\nhash\n\n— sig %d\x00\n", size, size)), Time: base.Add(time.Duration(size) * time.Second)}
	}
	for _, size := range []int64{5, 1, 9, 3} {
		if err := s.SaveCheckpoint(ctx, mk(size)); err != nil {
			t.Fatalf("SaveCheckpoint(%d): %v", size, err)
		}
	}
	dup := mk(9)
	dup.Note = []byte("other")
	wantCode(t, s.SaveCheckpoint(ctx, dup), buzzer.ECONFLICT, "SaveCheckpoint of a stored size")

	same := func(got, want rng.SavedCheckpoint) {
		t.Helper()
		if got.Size != want.Size || !bytes.Equal(got.Note, want.Note) || !got.Time.Equal(want.Time) {
			t.Fatalf("checkpoint = {%d %q %v}, want {%d %q %v}", got.Size, got.Note, got.Time, want.Size, want.Note, want.Time)
		}
	}
	latest, err := s.LatestCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	same(latest, mk(9))

	for _, tc := range []struct {
		from  int64
		limit int
		want  []int64
	}{
		{0, 10, []int64{1, 3, 5, 9}},
		{0, 2, []int64{1, 3}},
		{3, 2, []int64{3, 5}},
		{4, 10, []int64{5, 9}},
		{10, 10, nil},
	} {
		got, err := s.Checkpoints(ctx, tc.from, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Fatalf("Checkpoints(%d, %d) returned %d, want %v", tc.from, tc.limit, len(got), tc.want)
		}
		for i, size := range tc.want {
			same(got[i], mk(size))
		}
	}
}
