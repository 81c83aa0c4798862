package redis_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/redis"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/table/tabletest"
)

// tableClock is a settable clock safe for concurrent readers.
type tableClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tableClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *tableClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTableStore(t *testing.T, cfg redis.TableStoreConfig) (*redis.TableStore, *tableClock) {
	c, prefix := enginetest.Redis(t)
	clock := &tableClock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	cfg.Prefix = prefix
	return redis.NewTableStore(c, clock, cfg), clock
}

func TestTableStoreConformance(t *testing.T) {
	tabletest.RunStoreTests(t, func(t *testing.T) tabletest.Harness {
		s, clock := newTableStore(t, redis.TableStoreConfig{})
		return tabletest.Harness{Store: s, Advance: clock.Advance}
	})
}

func TestTableStoreTrimFloor(t *testing.T) {
	tabletest.RunTrimTests(t, func(t *testing.T, retain, maxRetain int) tabletest.Harness {
		s, clock := newTableStore(t, redis.TableStoreConfig{Retain: retain, MaxRetain: maxRetain})
		return tabletest.Harness{Store: s, Advance: clock.Advance}
	})
}

func tableEvents(id string, from int64, n int) []table.Event {
	var evs []table.Event
	for i := 0; i < n; i++ {
		evs = append(evs, table.Event{Seq: from + int64(i), Table: id, Round: 1, Kind: table.EventSeatTaken, Seat: 1, Player: fmt.Sprintf("p%d", from+int64(i))})
	}
	return evs
}

// TestTableStoreTrimsEvents: only the last Retain events are kept; a read
// from before them says so (the subscriber reloads a snapshot) instead of
// silently skipping events.
func TestTableStoreTrimsEvents(t *testing.T) {
	s, _ := newTableStore(t, redis.TableStoreConfig{Retain: 5})
	ctx := context.Background()
	l, err := s.Acquire(ctx, "t1", "a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v, seq := int64(0), int64(1)
	for i := 0; i < 4; i++ {
		if v, err = s.Write(ctx, table.Write{Lease: l, Version: v, State: []byte("s"), Events: tableEvents("t1", seq, 3)}); err != nil {
			t.Fatal(err)
		}
		seq += 3
	}
	// 12 events written, 8..12 kept.
	if _, err := s.Events(ctx, "t1", 6, 10); buzzer.ErrorReason(err) != table.ReasonEventsTrimmed {
		t.Fatalf("read from a trimmed point: %v", err)
	}
	got, err := s.Events(ctx, "t1", 7, 10)
	if err != nil || len(got) != 5 || got[0].Seq != 8 || got[4].Seq != 12 {
		t.Fatalf("read of the kept tail: %v %+v", err, got)
	}
	got, err = s.Events(ctx, "t1", 12, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("read at the head: %v %+v", err, got)
	}
}

// TestTableStoreEventsRoundTrip: an event with every field set comes back
// from Redis as it went in.
func TestTableStoreEventsRoundTrip(t *testing.T) {
	s, clock := newTableStore(t, redis.TableStoreConfig{})
	ctx := context.Background()
	l, err := s.Acquire(ctx, "rt", "a", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	as, _ := table.ParseCard("AS")
	kd, _ := table.ParseCard("KD")
	e := table.Event{Seq: 1, Table: "rt", Round: 3, Kind: table.EventTurn, At: clock.Now(), Phase: table.TablePlayers,
		Seat: 2, Hand: 1, Action: table.DoubleDown, Amount: 1500, Cards: []table.Card{as, kd},
		Hands: []table.SeatCards{{Seat: 2, Cards: []table.Card{kd}}}, Deadline: clock.Now().Add(20 * time.Second),
		Actions: []table.Action{table.Hit, table.Stand}, Results: []table.SeatResult{{Seat: 2, Hands: []table.HandResult{{Outcome: table.OutcomeWin, Return: 3000}}}},
		ShoeRef: "rng/7/rt/1"}
	if _, err := s.Write(ctx, table.Write{Lease: l, State: []byte("x"), Events: []table.Event{e}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Events(ctx, "rt", 0, 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("%v %+v", err, got)
	}
	g := got[0]
	if !g.At.Equal(e.At) || !g.Deadline.Equal(e.Deadline) {
		t.Fatalf("times changed: %+v", g)
	}
	g.At, g.Deadline, e.At, e.Deadline = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if fmt.Sprintf("%+v", g) != fmt.Sprintf("%+v", e) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", g, e)
	}
}

// TestTableStoreRejectsBadInput: ids that would break the key layout and
// non-positive TTLs or limits are refused before Redis is touched.
func TestTableStoreRejectsBadInput(t *testing.T) {
	s, _ := newTableStore(t, redis.TableStoreConfig{})
	ctx := context.Background()
	for _, id := range []string{"", "a{b", "x}"} {
		if _, err := s.Acquire(ctx, id, "a", time.Second); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("acquire %q: %v", id, err)
		}
	}
	if _, err := s.Acquire(ctx, "t", "a", 0); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Errorf("zero TTL: %v", err)
	}
	if _, err := s.Acquire(ctx, "t", "", time.Second); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Errorf("no owner: %v", err)
	}
	if _, err := s.Events(ctx, "t", 0, 0); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Errorf("zero limit: %v", err)
	}
}

// TestTableStoreUnavailable: a store whose Redis is gone fails with a typed
// unavailable error, never a hang or a success.
func TestTableStoreUnavailable(t *testing.T) {
	c, prefix := enginetest.Redis(t)
	opts := *c.Options()
	opts.Addr = "127.0.0.1:1" // nothing listens there
	opts.DialTimeout, opts.MaxRetries = 200*time.Millisecond, -1
	dead := goredis.NewClient(&opts)
	defer dead.Close()
	s := redis.NewTableStore(dead, buzzer.SystemClock{}, redis.TableStoreConfig{Prefix: prefix})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.Acquire(ctx, "t", "a", time.Second); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("acquire on a dead Redis: %v", err)
	}
	if _, err := s.Load(ctx, "t"); buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		t.Fatalf("load on a dead Redis: %v", err)
	}
}
