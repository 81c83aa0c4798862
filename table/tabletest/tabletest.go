// Package tabletest is the conformance suite every table.Store implementation
// must pass (memory, Redis): leases with fencing epochs, fenced and versioned
// writes, sequence continuity and the event log. It holds test code only and
// must never be imported by production code.
package tabletest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// Harness is one fresh, empty store and a way to move its clock forward.
type Harness struct {
	Store table.Store
	// Advance moves the time the store judges lease expiry by.
	Advance func(time.Duration)
}

const ttl = 10 * time.Second

// RunStoreTests runs the suite; newHarness must return an empty store each call.
func RunStoreTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		f    func(t *testing.T, h Harness)
	}{
		{"AcquireFresh", testAcquireFresh},
		{"LeaseHeld", testLeaseHeld},
		{"ReacquireKeepsEpoch", testReacquireKeepsEpoch},
		{"ExpiryTakeover", testExpiryTakeover},
		{"StaleEpochWriteRejected", testStaleEpochWrite},
		{"ExpiredLeaseWriteRejected", testExpiredLeaseWrite},
		{"RenewExtends", testRenewExtends},
		{"ReleaseHandsOver", testReleaseHandsOver},
		{"VersionMismatch", testVersionMismatch},
		{"SeqContinuity", testSeqContinuity},
		{"LoadNotFound", testLoadNotFound},
		{"EventLogPrefix", testEventLogPrefix},
		{"TablesIndependent", testTablesIndependent},
		{"OneWinnerPerTakeover", testOneWinner},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newHarness(t)) })
	}
}

func ctx(t *testing.T) context.Context { return t.Context() }

func acquire(t *testing.T, h Harness, id, owner string) table.Lease {
	t.Helper()
	l, err := h.Store.Acquire(ctx(t), id, owner, ttl)
	if err != nil {
		t.Fatalf("acquire %s by %s: %v", id, owner, err)
	}
	return l
}

func events(id string, from int64, n int) []table.Event {
	var evs []table.Event
	for i := 0; i < n; i++ {
		evs = append(evs, table.Event{Seq: from + int64(i), Table: id, Round: 1, Kind: table.EventSeatTaken, Seat: i%7 + 1, Player: fmt.Sprintf("p%d", from+int64(i)), At: time.Unix(1700000000, 0).UTC()})
	}
	return evs
}

func write(t *testing.T, h Harness, l table.Lease, version int64, state string, evs []table.Event) int64 {
	t.Helper()
	v, err := h.Store.Write(ctx(t), table.Write{Lease: l, Version: version, State: []byte(state), Events: evs})
	if err != nil {
		t.Fatalf("write v%d: %v", version, err)
	}
	if v != version+1 {
		t.Fatalf("write returned version %d, want %d", v, version+1)
	}
	return v
}

func wantRefused(t *testing.T, err error, reason string) {
	t.Helper()
	if buzzer.ErrorCode(err) != buzzer.ECONFLICT || buzzer.ErrorReason(err) != reason {
		t.Fatalf("err %v, want conflict/%s", err, reason)
	}
}

func wantStored(t *testing.T, h Harness, id, state string, version, seq int64) {
	t.Helper()
	s, err := h.Store.Load(ctx(t), id)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.State) != state || s.Version != version || s.Seq != seq {
		t.Fatalf("stored %q v%d seq %d, want %q v%d seq %d", s.State, s.Version, s.Seq, state, version, seq)
	}
	if head, err := h.Store.Head(ctx(t), id); err != nil || head != seq {
		t.Fatalf("head = %d (%v), want seq %d", head, err, seq)
	}
}

func testAcquireFresh(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	if l.Epoch < 1 || l.Owner != "a" || l.Table != "t1" || l.Expires.IsZero() {
		t.Fatalf("lease %+v", l)
	}
	write(t, h, l, 0, "s1", nil)
	wantStored(t, h, "t1", "s1", 1, 0)
}

func testLeaseHeld(t *testing.T, h Harness) {
	acquire(t, h, "t1", "a")
	h.Advance(ttl - time.Second)
	_, err := h.Store.Acquire(ctx(t), "t1", "b", ttl)
	wantRefused(t, err, table.ReasonLeaseHeld)
}

func testReacquireKeepsEpoch(t *testing.T, h Harness) {
	l1 := acquire(t, h, "t1", "a")
	l2 := acquire(t, h, "t1", "a")
	if l2.Epoch != l1.Epoch {
		t.Fatalf("re-acquiring a live lease changed the epoch %d -> %d", l1.Epoch, l2.Epoch)
	}
	write(t, h, l1, 0, "s1", nil)
}

func testExpiryTakeover(t *testing.T, h Harness) {
	la := acquire(t, h, "t1", "a")
	h.Advance(ttl + time.Second)
	lb := acquire(t, h, "t1", "b")
	if lb.Epoch <= la.Epoch {
		t.Fatalf("takeover epoch %d not above %d", lb.Epoch, la.Epoch)
	}
	h.Advance(ttl + time.Second)
	la2 := acquire(t, h, "t1", "a")
	if la2.Epoch <= lb.Epoch {
		t.Fatalf("re-acquiring a lapsed lease kept epoch %d (previous %d)", la2.Epoch, lb.Epoch)
	}
}

func testStaleEpochWrite(t *testing.T, h Harness) {
	la := acquire(t, h, "t1", "a")
	v := write(t, h, la, 0, "a1", events("t1", 1, 2))
	h.Advance(ttl + time.Second)
	lb := acquire(t, h, "t1", "b")
	// The old owner, paused past its lease, wakes and writes: refused.
	_, err := h.Store.Write(ctx(t), table.Write{Lease: la, Version: v, State: []byte("a2"), Events: events("t1", 3, 1)})
	wantRefused(t, err, table.ReasonStaleEpoch)
	_, err = h.Store.Renew(ctx(t), la, ttl)
	wantRefused(t, err, table.ReasonStaleEpoch)
	wantStored(t, h, "t1", "a1", v, 2)
	v = write(t, h, lb, v, "b1", events("t1", 3, 1))
	// A forged lease naming the new owner but the old epoch is refused too.
	forged := lb
	forged.Epoch = la.Epoch
	_, err = h.Store.Write(ctx(t), table.Write{Lease: forged, Version: v, State: []byte("x")})
	wantRefused(t, err, table.ReasonStaleEpoch)
	wantStored(t, h, "t1", "b1", v, 3)
}

func testExpiredLeaseWrite(t *testing.T, h Harness) {
	la := acquire(t, h, "t1", "a")
	v := write(t, h, la, 0, "a1", nil)
	h.Advance(ttl + time.Second)
	_, err := h.Store.Write(ctx(t), table.Write{Lease: la, Version: v, State: []byte("a2")})
	wantRefused(t, err, table.ReasonLeaseExpired)
	_, err = h.Store.Renew(ctx(t), la, ttl)
	wantRefused(t, err, table.ReasonLeaseExpired)
	wantStored(t, h, "t1", "a1", v, 0)
}

func testRenewExtends(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	h.Advance(ttl * 6 / 10)
	l2, err := h.Store.Renew(ctx(t), l, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Epoch != l.Epoch || !l2.Expires.After(l.Expires) {
		t.Fatalf("renew: %+v from %+v", l2, l)
	}
	h.Advance(ttl * 6 / 10) // past the first expiry, inside the renewed one
	write(t, h, l2, 0, "s1", nil)
	_, err = h.Store.Acquire(ctx(t), "t1", "b", ttl)
	wantRefused(t, err, table.ReasonLeaseHeld)
}

func testReleaseHandsOver(t *testing.T, h Harness) {
	la := acquire(t, h, "t1", "a")
	v := write(t, h, la, 0, "a1", nil)
	if err := h.Store.Release(ctx(t), la); err != nil {
		t.Fatal(err)
	}
	lb := acquire(t, h, "t1", "b")
	if lb.Epoch <= la.Epoch {
		t.Fatalf("epoch after release %d not above %d", lb.Epoch, la.Epoch)
	}
	_, err := h.Store.Write(ctx(t), table.Write{Lease: la, Version: v, State: []byte("a2")})
	wantRefused(t, err, table.ReasonStaleEpoch)
	write(t, h, lb, v, "b1", nil)
}

func testVersionMismatch(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	v := write(t, h, l, 0, "s1", events("t1", 1, 1))
	_, err := h.Store.Write(ctx(t), table.Write{Lease: l, Version: v - 1, State: []byte("s2"), Events: events("t1", 2, 1)})
	wantRefused(t, err, table.ReasonVersionMismatch)
	_, err = h.Store.Write(ctx(t), table.Write{Lease: l, Version: v + 1, State: []byte("s2"), Events: events("t1", 2, 1)})
	wantRefused(t, err, table.ReasonVersionMismatch)
	wantStored(t, h, "t1", "s1", v, 1)
}

func testSeqContinuity(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	v := write(t, h, l, 0, "s1", events("t1", 1, 3))
	for _, bad := range [][]table.Event{
		events("t1", 5, 1), // gap
		events("t1", 3, 1), // repeat
		append(events("t1", 4, 1), events("t1", 6, 1)...),   // gap inside the batch
		{{Seq: 4, Table: "t2", Kind: table.EventSeatTaken}}, // another table's event
	} {
		_, err := h.Store.Write(ctx(t), table.Write{Lease: l, Version: v, State: []byte("bad"), Events: bad})
		wantRefused(t, err, table.ReasonSeqGap)
	}
	wantStored(t, h, "t1", "s1", v, 3)
	v = write(t, h, l, v, "s2", nil) // a write without events keeps the seq
	v = write(t, h, l, v, "s3", events("t1", 4, 2))
	wantStored(t, h, "t1", "s3", v, 5)
	got, err := h.Store.Events(ctx(t), "t1", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		if e.Seq != int64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d events, want 5", len(got))
	}
}

func testLoadNotFound(t *testing.T, h Harness) {
	_, err := h.Store.Load(ctx(t), "nope")
	if buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("err %v, want not found", err)
	}
	acquire(t, h, "t1", "a") // a lease alone stores no state
	_, err = h.Store.Load(ctx(t), "t1")
	if buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("err %v, want not found", err)
	}
	for _, id := range []string{"nope", "t1"} {
		if _, err := h.Store.Head(ctx(t), id); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
			t.Fatalf("head of %s: err %v, want not found", id, err)
		}
	}
}

func testEventLogPrefix(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	var all []table.Event
	var v int64
	seq := int64(1)
	for batch := 1; batch <= 6; batch++ {
		evs := events("t1", seq, batch)
		v = write(t, h, l, v, fmt.Sprintf("s%d", batch), evs)
		all = append(all, evs...)
		seq += int64(batch)
		// After every write, every suffix read is exactly the log so far.
		for after := int64(0); after <= int64(len(all)); after++ {
			got, err := h.Store.Events(ctx(t), "t1", after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if want := all[after:]; !sameEvents(got, want) {
				t.Fatalf("events after %d: %+v, want %+v", after, got, want)
			}
		}
	}
	got, err := h.Store.Events(ctx(t), "t1", 4, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEvents(got, all[4:7]) {
		t.Fatalf("limited read: %+v", got)
	}
	got, err = h.Store.Events(ctx(t), "t1", int64(len(all))+5, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("read past the end: %v, %v", got, err)
	}
}

func sameEvents(a, b []table.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if !x.At.Equal(y.At) {
			return false
		}
		x.At, y.At = time.Time{}, time.Time{}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func testTablesIndependent(t *testing.T, h Harness) {
	l1 := acquire(t, h, "t1", "a")
	l2 := acquire(t, h, "t2", "b")
	write(t, h, l1, 0, "one", events("t1", 1, 2))
	write(t, h, l2, 0, "two", events("t2", 1, 1))
	// A lease for one table does not fence another.
	wrong := l1
	wrong.Table = "t2"
	_, err := h.Store.Write(ctx(t), table.Write{Lease: wrong, Version: 1, State: []byte("x"), Events: events("t2", 2, 1)})
	if buzzer.ErrorCode(err) != buzzer.ECONFLICT {
		t.Fatalf("cross-table write: %v", err)
	}
	wantStored(t, h, "t1", "one", 1, 2)
	wantStored(t, h, "t2", "two", 1, 1)
}

func testOneWinner(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	write(t, h, l, 0, "s", nil)
	h.Advance(ttl + time.Second)
	const n = 8
	var wg sync.WaitGroup
	wins := make(chan table.Lease, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l, err := h.Store.Acquire(context.Background(), "t1", fmt.Sprintf("node%d", i), ttl)
			if err == nil {
				wins <- l
			} else if buzzer.ErrorReason(err) != table.ReasonLeaseHeld {
				t.Errorf("acquire: %v", err)
			}
		}(i)
	}
	wg.Wait()
	close(wins)
	var got []table.Lease
	for l := range wins {
		got = append(got, l)
	}
	if len(got) != 1 {
		t.Fatalf("%d nodes won the lease, want 1: %+v", len(got), got)
	}
	if got[0].Epoch <= l.Epoch {
		t.Fatalf("winner's epoch %d not above %d", got[0].Epoch, l.Epoch)
	}
}

// RunTrimTests runs the trimming part of the suite: Retain, the trim floor
// and its MaxRetain bound. newHarness must return an empty store keeping
// retain events per table, and at most maxRetain above a trim floor.
func RunTrimTests(t *testing.T, newHarness func(t *testing.T, retain, maxRetain int) Harness) {
	tests := []struct {
		name string
		f    func(t *testing.T, h Harness)
	}{
		{"RetainWithoutFloor", testRetainWithoutFloor},
		{"FloorKeepsUncaptured", testFloorKeepsUncaptured},
		{"FloorBounded", testFloorBounded},
		{"FloorBeforeFirstWrite", testFloorBeforeFirstWrite},
	}
	for _, tc := range tests {
		// Every test's store keeps 3 events, at most 8 above a floor.
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newHarness(t, 3, 8)) })
	}
}

// wantEventsFrom checks that the log is readable exactly from after first-1:
// a read from there returns first..last, a read from one earlier is refused
// with events_trimmed.
func wantEventsFrom(t *testing.T, h Harness, id string, first, last int64) {
	t.Helper()
	got, err := h.Store.Events(ctx(t), id, first-1, 1000)
	if err != nil {
		t.Fatalf("events after %d: %v", first-1, err)
	}
	if len(got) != int(last-first+1) || (len(got) > 0 && (got[0].Seq != first || got[len(got)-1].Seq != last)) {
		t.Fatalf("events after %d: %d events %+v, want %d..%d", first-1, len(got), got, first, last)
	}
	if first > 1 {
		_, err := h.Store.Events(ctx(t), id, first-2, 1000)
		wantRefused(t, err, table.ReasonEventsTrimmed)
	}
}

// writeOneByOne appends events from..to to id, one write each.
func writeOneByOne(t *testing.T, h Harness, l table.Lease, v int64, from, to int64) int64 {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		v = write(t, h, l, v, fmt.Sprintf("s%d", seq), events(l.Table, seq, 1))
	}
	return v
}

func testRetainWithoutFloor(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	writeOneByOne(t, h, l, 0, 1, 5)
	wantEventsFrom(t, h, "t1", 3, 5)
}

func testFloorKeepsUncaptured(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	v := write(t, h, l, 0, "s0", nil)
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 0); err != nil {
		t.Fatal(err)
	}
	v = writeOneByOne(t, h, l, v, 1, 6)
	wantEventsFrom(t, h, "t1", 1, 6) // nothing captured: all kept
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 4); err != nil {
		t.Fatal(err)
	}
	v = writeOneByOne(t, h, l, v, 7, 7)
	wantEventsFrom(t, h, "t1", 5, 7) // 5..7 above the floor, also the last 3
	// A floor never moves back.
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 2); err != nil {
		t.Fatal(err)
	}
	v = write(t, h, l, v, "s8", events("t1", 8, 2)) // a batch of two
	wantEventsFrom(t, h, "t1", 5, 9)
	// A floor at the head leaves Retain.
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 9); err != nil {
		t.Fatal(err)
	}
	writeOneByOne(t, h, l, v, 10, 10)
	wantEventsFrom(t, h, "t1", 8, 10)
}

func testFloorBounded(t *testing.T, h Harness) {
	l := acquire(t, h, "t1", "a")
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 0); err != nil {
		t.Fatal(err)
	}
	writeOneByOne(t, h, l, 0, 1, 8)
	wantEventsFrom(t, h, "t1", 1, 8) // 8 = MaxRetain
	writeOneByOne(t, h, l, 8, 9, 10)
	// A floor lagging past MaxRetain: the store trims anyway, and the
	// lagging reader is told (events_trimmed), never handed a gap.
	wantEventsFrom(t, h, "t1", 3, 10)
	_, err := h.Store.Events(ctx(t), "t1", 0, 1000)
	wantRefused(t, err, table.ReasonEventsTrimmed)
}

func testFloorBeforeFirstWrite(t *testing.T, h Harness) {
	if err := h.Store.SetTrimFloor(ctx(t), "t1", 0); err != nil {
		t.Fatal(err)
	}
	// A floor alone stores no table.
	if _, err := h.Store.Load(ctx(t), "t1"); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("load after a floor alone: %v, want not found", err)
	}
	if err := h.Store.SetTrimFloor(ctx(t), "t1", -1); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("negative floor: %v", err)
	}
	l := acquire(t, h, "t1", "a")
	writeOneByOne(t, h, l, 0, 1, 5)
	wantEventsFrom(t, h, "t1", 1, 5)
	wantStored(t, h, "t1", "s5", 5, 5)
}
