package gateway

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Rate is a token bucket: it holds at most Burst tokens and refills
// PerSecond tokens a second; each request takes one.
type Rate struct {
	PerSecond float64 `yaml:"per_second"`
	Burst     int     `yaml:"burst"`
}

// Validate names what is wrong with r.
func (r Rate) Validate() error {
	if !(r.PerSecond > 0) || math.IsInf(r.PerSecond, 0) || r.PerSecond > 1e6 || r.Burst < 1 || r.Burst > 1_000_000 {
		return buzzer.Errorf(buzzer.EINVALID, "rate needs 0 < per_second <= 1e6 and 1 <= burst <= 1e6, got %v/s burst %d", r.PerSecond, r.Burst)
	}
	return nil
}

// Limiter is a set of token buckets, one per key, all with the same Rate.
// MemoryLimiter keeps them in the process; redis.RateLimiter shares them
// between gateways.
type Limiter interface {
	// Allow takes one token from key's bucket. When the bucket is empty it
	// returns false and how long until a token is available. An error means
	// the limiter could not answer.
	Allow(ctx context.Context, key string) (ok bool, retryAfter time.Duration, err error)
}

// Bucket is one key's state: the tokens it held at At.
type Bucket struct {
	Tokens float64
	At     time.Time
}

// Take refills b to now at rate and takes one token if there is one. It
// returns the new state, whether a token was taken, and otherwise the wait
// until one will be. A clock that went backwards refills nothing.
func Take(b Bucket, now time.Time, r Rate) (Bucket, bool, time.Duration) {
	if b.At.IsZero() {
		b = Bucket{Tokens: float64(r.Burst), At: now}
	}
	if now.After(b.At) {
		b.Tokens = math.Min(float64(r.Burst), b.Tokens+now.Sub(b.At).Seconds()*r.PerSecond)
		b.At = now
	}
	if b.Tokens >= 1 {
		b.Tokens--
		return b, true, 0
	}
	wait := time.Duration(math.Ceil((1 - b.Tokens) / r.PerSecond * float64(time.Second)))
	return b, false, wait
}

// FullAfter is how long an untouched bucket takes to refill from empty:
// past it a bucket's state is the same as no state, so it may be dropped.
func (r Rate) FullAfter() time.Duration {
	return time.Duration(math.Ceil(float64(r.Burst) / r.PerSecond * float64(time.Second)))
}

// MemoryLimiter is an in-process Limiter. It holds at most MaxKeys buckets;
// when full it drops the buckets that have refilled (they are equivalent to
// no bucket), and if none has, it refuses new keys rather than grow, so a
// flood of distinct keys costs bounded memory.
type MemoryLimiter struct {
	rate    Rate
	clock   buzzer.Clock
	maxKeys int

	mu      sync.Mutex
	buckets map[string]Bucket
}

var _ Limiter = (*MemoryLimiter)(nil)

// NewMemoryLimiter returns a limiter with rate r; maxKeys 0 means 100,000.
func NewMemoryLimiter(r Rate, clock buzzer.Clock, maxKeys int) (*MemoryLimiter, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = buzzer.SystemClock{}
	}
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	return &MemoryLimiter{rate: r, clock: clock, maxKeys: maxKeys, buckets: map[string]Bucket{}}, nil
}

// Allow implements Limiter.
func (m *MemoryLimiter) Allow(_ context.Context, key string) (bool, time.Duration, error) {
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.buckets[key]
	if !ok && len(m.buckets) >= m.maxKeys {
		m.sweep(now)
		if len(m.buckets) >= m.maxKeys {
			return false, time.Second, nil
		}
	}
	b, allowed, wait := Take(b, now, m.rate)
	m.buckets[key] = b
	return allowed, wait, nil
}

// sweep drops refilled buckets. Caller holds mu.
func (m *MemoryLimiter) sweep(now time.Time) {
	full := m.rate.FullAfter()
	for k, b := range m.buckets {
		if now.Sub(b.At) >= full {
			delete(m.buckets, k)
		}
	}
}

// Len returns the number of buckets held.
func (m *MemoryLimiter) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}

// FallbackLimiter asks Primary (the shared Redis buckets) and, when it
// cannot answer, Local: losing the shared store loosens the limit to
// per-gateway buckets but never removes it. OnFallback, when set, is told
// each time (for a log line and a counter).
type FallbackLimiter struct {
	Primary, Local Limiter
	OnFallback     func(err error)
}

// Allow implements Limiter.
func (f FallbackLimiter) Allow(ctx context.Context, key string) (bool, time.Duration, error) {
	ok, wait, err := f.Primary.Allow(ctx, key)
	if err == nil {
		return ok, wait, nil
	}
	if f.OnFallback != nil {
		f.OnFallback(err)
	}
	return f.Local.Allow(ctx, key)
}

// Concurrency admits at most a fixed number of requests at once and sheds
// the rest immediately: a request that cannot get a slot is refused at
// once, so no queue forms in front of the edges.
type Concurrency struct {
	slots chan struct{}
}

// NewConcurrency returns a limit of n in-flight requests.
func NewConcurrency(n int) *Concurrency {
	return &Concurrency{slots: make(chan struct{}, n)}
}

// TryAcquire takes a slot if one is free; the caller must Release it.
func (c *Concurrency) TryAcquire() bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// Release frees a slot taken by TryAcquire.
func (c *Concurrency) Release() { <-c.slots }

// InFlight returns the slots in use.
func (c *Concurrency) InFlight() int { return len(c.slots) }
