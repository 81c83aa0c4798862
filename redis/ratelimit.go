package redis

import (
	"context"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/gateway"
)

var _ gateway.Limiter = (*RateLimiter)(nil)

// takeScript is gateway.Take on a hash {t: tokens, ts: unix ms}, atomic in
// Redis. Time comes from the caller's clock (ARGV[3]) so every gateway and
// every test uses one notion of now; a timestamp behind the stored one
// refills nothing, so a gateway whose clock lags cannot mint tokens.
// It returns {allowed (0/1), wait in ms}.
var takeScript = goredis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
local ok = 0
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 'ts', ts)
redis.call('PEXPIRE', KEYS[1], ttl)
return {ok, wait}
`)

// RateLimiter keeps token buckets in Redis, shared by every gateway that
// uses the same prefix. Each bucket is one hash under prefix+key that
// expires once it would have refilled, so idle keys cost nothing.
type RateLimiter struct {
	client goredis.Scripter
	prefix string
	rate   gateway.Rate
	clock  buzzer.Clock
	ttlMS  int64
}

// NewRateLimiter returns a limiter with rate r over client. prefix
// namespaces the keys (e.g. "buzzer:rl:player:").
func NewRateLimiter(client goredis.Scripter, prefix string, r gateway.Rate, clock buzzer.Clock) (*RateLimiter, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if client == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "redis rate limiter: a client is required")
	}
	if clock == nil {
		clock = buzzer.SystemClock{}
	}
	return &RateLimiter{client: client, prefix: prefix, rate: r, clock: clock,
		ttlMS: r.FullAfter().Milliseconds() + 1000}, nil
}

// Allow implements gateway.Limiter.
func (l *RateLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	now := l.clock.Now().UnixMilli()
	res, err := takeScript.Run(ctx, l.client, []string{l.prefix + key},
		strconv.FormatFloat(l.rate.PerSecond, 'g', -1, 64), l.rate.Burst, now, l.ttlMS).Int64Slice()
	if err != nil {
		return false, 0, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "rate limiter unavailable")
	}
	if len(res) != 2 {
		return false, 0, buzzer.Wrap(fmt.Errorf("script returned %v", res), buzzer.EINTERNAL, "rate limiter answered badly")
	}
	return res[0] == 1, time.Duration(res[1]) * time.Millisecond, nil
}
