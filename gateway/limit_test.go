package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/gateway/limitertest"
)

func TestMemoryLimiterConformance(t *testing.T) {
	limitertest.Run(t, func(t *testing.T, r gateway.Rate, c *limitertest.Clock) gateway.Limiter {
		l, err := gateway.NewMemoryLimiter(r, c, 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// A flood of distinct keys costs bounded memory: refilled buckets are
// dropped, and while every bucket is live new keys are refused.
func TestMemoryLimiterBoundsKeys(t *testing.T) {
	c := limitertest.NewClock()
	l, err := gateway.NewMemoryLimiter(gateway.Rate{PerSecond: 10, Burst: 1}, c, 3)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		if ok, _, _ := l.Allow(ctx, k); !ok {
			t.Fatalf("fresh key %s refused", k)
		}
	}
	if ok, wait, _ := l.Allow(ctx, "d"); ok || wait <= 0 {
		t.Fatalf("fourth live key admitted (ok=%v wait=%s) past the bound of 3", ok, wait)
	}
	c.Advance(100 * time.Millisecond) // every bucket refilled
	if ok, _, _ := l.Allow(ctx, "d"); !ok {
		t.Fatal("refilled buckets were not dropped for a new key")
	}
	if l.Len() > 3 {
		t.Fatalf("holds %d buckets, bound 3", l.Len())
	}
}

type failing struct{}

func (failing) Allow(context.Context, string) (bool, time.Duration, error) {
	return false, 0, context.DeadlineExceeded
}

// Losing the shared limiter loosens the limit to the local buckets; it
// never removes it.
func TestFallbackLimiterKeepsLimiting(t *testing.T) {
	c := limitertest.NewClock()
	local, _ := gateway.NewMemoryLimiter(gateway.Rate{PerSecond: 1, Burst: 2}, c, 0)
	fell := 0
	l := gateway.FallbackLimiter{Primary: failing{}, Local: local, OnFallback: func(error) { fell++ }}
	got := 0
	for i := 0; i < 5; i++ {
		ok, _, err := l.Allow(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got++
		}
	}
	if got != 2 || fell != 5 {
		t.Fatalf("allowed %d (want 2), fallbacks %d (want 5)", got, fell)
	}
}

func TestConcurrencyShedsAtTheLimit(t *testing.T) {
	c := gateway.NewConcurrency(2)
	if !c.TryAcquire() || !c.TryAcquire() {
		t.Fatal("free slots refused")
	}
	if c.TryAcquire() {
		t.Fatal("third slot granted with a limit of 2")
	}
	c.Release()
	if !c.TryAcquire() || c.InFlight() != 2 {
		t.Fatal("released slot not reusable")
	}
}

func TestRateValidate(t *testing.T) {
	for _, r := range []gateway.Rate{{0, 1}, {1, 0}, {-1, 5}, {1e7, 1}} {
		if r.Validate() == nil {
			t.Errorf("%+v accepted", r)
		}
	}
	if (gateway.Rate{PerSecond: 0.1, Burst: 1}).Validate() != nil {
		t.Error("valid rate refused")
	}
}
