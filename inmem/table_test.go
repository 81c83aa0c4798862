package inmem_test

import (
	"sync"
	"testing"
	"time"

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
