package inmem_test

import (
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/table/tabletest"
)

// syncClock is a settable clock safe to read from the concurrent goroutines
// of the conformance suite.
type syncClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *syncClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *syncClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestTableStore(t *testing.T) {
	tabletest.RunStoreTests(t, func(t *testing.T) tabletest.Harness {
		clock := &syncClock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
		return tabletest.Harness{Store: inmem.NewTableStore(clock, inmem.TableStoreConfig{}), Advance: clock.Advance}
	})
}

func TestTableStoreTrimsEvents(t *testing.T) {
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	s := inmem.NewTableStore(clock, inmem.TableStoreConfig{Retain: 3})
	l, err := s.Acquire(t.Context(), "t1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	for seq := int64(1); seq <= 5; seq++ {
		v, err = s.Write(t.Context(), table.Write{Lease: l, Version: v, State: []byte("s"), Events: []table.Event{{Seq: seq, Table: "t1", Kind: table.EventRoundOpened}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Events(t.Context(), "t1", 2, 10)
	if err != nil || len(got) != 3 || got[0].Seq != 3 {
		t.Fatalf("events after 2: %v, %v", got, err)
	}
	_, err = s.Events(t.Context(), "t1", 1, 10)
	if buzzer.ErrorReason(err) != table.ReasonEventsTrimmed {
		t.Fatalf("events after 1: %v, want events_trimmed", err)
	}
}

func TestTableStoreTrimFloor(t *testing.T) {
	tabletest.RunTrimTests(t, func(t *testing.T, retain, maxRetain int) tabletest.Harness {
		clock := &syncClock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
		return tabletest.Harness{Store: inmem.NewTableStore(clock, inmem.TableStoreConfig{Retain: retain, MaxRetain: maxRetain}), Advance: clock.Advance}
	})
}

// TestTableStoreWriteCostsNoMoreAtAFullLog: once a table's log holds its
// Retain events, a write still copies only what it writes (amortized), not
// the whole retained log. A store that copied the kept tail on every write
// allocated about Retain events a write: at the default 10,000, a table
// that had played for an hour cost megabytes per action. Here Retain is
// 2,000 and a write may allocate at most what 50 events take.
func TestTableStoreWriteCostsNoMoreAtAFullLog(t *testing.T) {
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	const retain = 2000
	s := inmem.NewTableStore(clock, inmem.TableStoreConfig{Retain: retain})
	l, err := s.Acquire(t.Context(), "t1", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var v, seq int64
	write := func() {
		seq++
		ev := table.Event{Seq: seq, Table: "t1", Kind: table.EventRoundOpened}
		if v, err = s.Write(t.Context(), table.Write{Lease: l, Version: v, State: []byte("s"), Events: []table.Event{ev}}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 * retain { // the log is full and has been trimmed
		write()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const writes = 4 * retain
	for range writes {
		write()
	}
	runtime.ReadMemStats(&after)
	perWrite := float64(after.TotalAlloc-before.TotalAlloc) / writes
	if limit := 50 * float64(unsafeSizeofEvent()); perWrite > limit {
		t.Fatalf("a write at a full log allocated %.0f bytes on average, more than %.0f (50 events)", perWrite, limit)
	}
	// Trimming still keeps exactly the last Retain events.
	got, err := s.Events(t.Context(), "t1", seq-retain, retain+1)
	if err != nil || len(got) != retain || got[0].Seq != seq-retain+1 {
		t.Fatalf("kept %d events from %v, %v; want the last %d", len(got), got[0].Seq, err, retain)
	}
	if _, err := s.Events(t.Context(), "t1", seq-retain-1, 1); buzzer.ErrorReason(err) != table.ReasonEventsTrimmed {
		t.Fatalf("an event before the last Retain is still served: %v", err)
	}
}

func unsafeSizeofEvent() uintptr { return unsafe.Sizeof(table.Event{}) }
