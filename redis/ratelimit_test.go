package redis_test

import (
	"context"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/gateway/limitertest"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/redis"
)

func TestRateLimiterConformance(t *testing.T) {
	limitertest.Run(t, func(t *testing.T, r gateway.Rate, c *limitertest.Clock) gateway.Limiter {
		client, prefix := enginetest.Redis(t)
		l, err := redis.NewRateLimiter(client, prefix, r, c)
		if err != nil {
			t.Fatal(err)
		}
		return l
	})
}

// Two gateways on one Redis share each bucket: what one spends, the other
// cannot.
func TestRateLimiterIsSharedBetweenGateways(t *testing.T) {
	client, prefix := enginetest.Redis(t)
	c := limitertest.NewClock()
	r := gateway.Rate{PerSecond: 1, Burst: 4}
	a, _ := redis.NewRateLimiter(client, prefix, r, c)
	b, _ := redis.NewRateLimiter(client, prefix, r, c)
	ctx := context.Background()
	got := 0
	for i := 0; i < 4; i++ {
		for _, l := range []*redis.RateLimiter{a, b} {
			ok, _, err := l.Allow(ctx, "player:alice")
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				got++
			}
		}
	}
	if got != 4 {
		t.Fatalf("two gateways together got %d tokens from a shared bucket of 4", got)
	}
}

// Idle buckets expire once they would have refilled, so a flood of keys
// does not stay in Redis.
func TestRateLimiterKeysExpire(t *testing.T) {
	client, prefix := enginetest.Redis(t)
	l, _ := redis.NewRateLimiter(client, prefix, gateway.Rate{PerSecond: 10, Burst: 5}, limitertest.NewClock())
	if _, _, err := l.Allow(context.Background(), "ip:198.51.100.1"); err != nil {
		t.Fatal(err)
	}
	ttl, err := client.PTTL(context.Background(), prefix+"ip:198.51.100.1").Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > 1500*time.Millisecond {
		t.Fatalf("bucket ttl %s, want (0, 1.5s]: refill time 500ms + 1s", ttl)
	}
}

// With Redis unreachable the limiter reports an error; it never allows.
func TestRateLimiterUnreachableIsAnError(t *testing.T) {
	client := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer client.Close()
	l, _ := redis.NewRateLimiter(client, "x:", gateway.Rate{PerSecond: 1, Burst: 1}, limitertest.NewClock())
	ok, _, err := l.Allow(context.Background(), "k")
	if err == nil || ok {
		t.Fatalf("unreachable redis: ok=%v err=%v, want an error and no permission", ok, err)
	}
}
