// Package limitertest is the conformance suite every gateway.Limiter
// implementation runs (the in-process buckets and the Redis ones), so they
// agree on what a token bucket means. It is a test helper only.
package limitertest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/gateway"
)

// Clock is a settable clock safe for concurrent readers.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at a fixed instant.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)} }

// NewClockAt returns a clock at t.
func NewClockAt(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Advance moves the clock by d (negative moves it back).
func (c *Clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// NewLimiter builds the implementation under test with rate r on clock c;
// each call must give buckets independent of every other call's.
type NewLimiter func(t *testing.T, r gateway.Rate, c *Clock) gateway.Limiter

// tolerance allows for an implementation that keeps time in milliseconds.
const tolerance = time.Millisecond

// Run runs the suite.
func Run(t *testing.T, newLimiter NewLimiter) {
	ctx := context.Background()
	allow := func(t *testing.T, l gateway.Limiter, key string) (bool, time.Duration) {
		t.Helper()
		ok, wait, err := l.Allow(ctx, key)
		if err != nil {
			t.Fatalf("Allow(%q): %v", key, err)
		}
		return ok, wait
	}
	takeN := func(t *testing.T, l gateway.Limiter, key string, n int) int {
		t.Helper()
		got := 0
		for i := 0; i < n; i++ {
			if ok, _ := allow(t, l, key); ok {
				got++
			}
		}
		return got
	}
	wantWait := func(t *testing.T, got, want time.Duration) {
		t.Helper()
		if got < want || got > want+tolerance {
			t.Fatalf("retry after %s, want %s (+%s)", got, want, tolerance)
		}
	}

	t.Run("burst then deny with the wait for one token", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 10, Burst: 5}, c)
		if n := takeN(t, l, "k", 5); n != 5 {
			t.Fatalf("a fresh bucket gave %d of its burst of 5", n)
		}
		ok, wait := allow(t, l, "k")
		if ok {
			t.Fatal("sixth request within the same instant was allowed")
		}
		wantWait(t, wait, 100*time.Millisecond)
	})

	t.Run("refills at the rate", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 10, Burst: 5}, c)
		takeN(t, l, "k", 5)
		c.Advance(250 * time.Millisecond) // 2.5 tokens
		if n := takeN(t, l, "k", 2); n != 2 {
			t.Fatalf("after 250ms at 10/s: %d allowed, want 2", n)
		}
		ok, wait := allow(t, l, "k")
		if ok {
			t.Fatal("half a token was spent as a whole one")
		}
		wantWait(t, wait, 50*time.Millisecond)
		c.Advance(50 * time.Millisecond)
		if ok, _ := allow(t, l, "k"); !ok {
			t.Fatal("the token the limiter announced was not there")
		}
	})

	t.Run("never holds more than the burst", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 100, Burst: 3}, c)
		allow(t, l, "k")
		c.Advance(time.Hour)
		if n := takeN(t, l, "k", 10); n != 3 {
			t.Fatalf("after an hour idle: %d allowed, want the burst of 3", n)
		}
	})

	t.Run("keys are independent", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 1, Burst: 2}, c)
		if takeN(t, l, "player:a", 3) != 2 || takeN(t, l, "player:b", 3) != 2 || takeN(t, l, "ip:203.0.113.9", 3) != 2 {
			t.Fatal("one key's use changed another key's bucket")
		}
	})

	t.Run("slow rates wait whole periods", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 0.5, Burst: 1}, c)
		allow(t, l, "k")
		ok, wait := allow(t, l, "k")
		if ok {
			t.Fatal("second request at 0.5/s allowed")
		}
		wantWait(t, wait, 2*time.Second)
		c.Advance(1999 * time.Millisecond)
		if ok, _ := allow(t, l, "k"); ok {
			t.Fatal("allowed before the token refilled")
		}
		c.Advance(time.Millisecond)
		if ok, _ := allow(t, l, "k"); !ok {
			t.Fatal("not allowed once the token refilled")
		}
	})

	t.Run("a clock going back refills nothing", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 10, Burst: 2}, c)
		takeN(t, l, "k", 2)
		c.Advance(-time.Minute)
		if ok, _ := allow(t, l, "k"); ok {
			t.Fatal("a clock moving back created a token")
		}
		c.Advance(time.Minute + 100*time.Millisecond)
		if ok, _ := allow(t, l, "k"); !ok {
			t.Fatal("refill after the clock recovered is missing")
		}
	})

	t.Run("concurrent takes never exceed the bucket", func(t *testing.T) {
		c := NewClock()
		const burst = 20
		l := newLimiter(t, gateway.Rate{PerSecond: 1, Burst: burst}, c)
		var allowed atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 4; i++ {
					ok, _, err := l.Allow(ctx, "hot")
					if err != nil {
						errs <- err
						return
					}
					if ok {
						allowed.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := allowed.Load(); n != burst {
			t.Fatalf("64 concurrent takes on a bucket of %d: %d allowed", burst, n)
		}
	})

	t.Run("many keys", func(t *testing.T) {
		c := NewClock()
		l := newLimiter(t, gateway.Rate{PerSecond: 1, Burst: 1}, c)
		for i := 0; i < 200; i++ {
			if ok, _ := allow(t, l, fmt.Sprintf("player:%d", i)); !ok {
				t.Fatalf("fresh key %d refused", i)
			}
		}
	})
}
