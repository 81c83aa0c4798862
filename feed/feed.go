// Package feed holds what every odds feed adapter shares: the journal that
// receives each raw provider message with its receipt time, the sink that
// receives normalized updates (the odds engine), per-adapter counters, and the
// provider health tracker modelled on Sportradar's UOF SDK (a provider is down
// when its heartbeat interval is violated or its processing lag exceeds a
// bound, and is trusted again only after the adapter has recovered).
//
// The adapters themselves live in one sub-package per provider (feed/uof,
// feed/betfair, feed/usodds). They connect to providers as to real ones and
// never to the simulator's internals; they never let a malformed message
// crash them or reach the engine.
package feed

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// RawMessage is one message exactly as a provider sent it.
type RawMessage struct {
	Provider string    `json:"provider"`
	Received time.Time `json:"received"`
	Payload  []byte    `json:"payload"`
}

// Journal records every raw provider message before it is parsed, so any
// price or settlement can be traced back to the messages that caused it.
// Record must not block for long (buffer, then publish to the stream).
type Journal interface {
	Record(ctx context.Context, m RawMessage)
}

// JournalFunc adapts a function to Journal.
type JournalFunc func(ctx context.Context, m RawMessage)

// Record calls f.
func (f JournalFunc) Record(ctx context.Context, m RawMessage) { f(ctx, m) }

// Sink receives normalized updates; *odds.Engine implements it.
type Sink interface {
	Apply(u odds.Update) error
}

var _ Sink = (*odds.Engine)(nil)

// Stats are an adapter's counters, read by the metrics layer.
type Stats struct {
	Messages    atomic.Int64 // raw messages received
	ParseErrors atomic.Int64 // malformed messages dropped
	Unmapped    atomic.Int64 // messages about events missing from the mapping
	Rejected    atomic.Int64 // normalized updates the sink refused
	Reconnects  atomic.Int64
	Recoveries  atomic.Int64 // completed recoveries (snapshot / initial image)
	Downs       atomic.Int64 // times the provider was marked down
	LagNanos    atomic.Int64 // processing lag of the last timestamped message
}

// StatsSnapshot is a plain copy of Stats.
type StatsSnapshot struct {
	Messages, ParseErrors, Unmapped, Rejected, Reconnects, Recoveries, Downs int64
	Lag                                                                      time.Duration
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() StatsSnapshot {
	return StatsSnapshot{
		Messages: s.Messages.Load(), ParseErrors: s.ParseErrors.Load(), Unmapped: s.Unmapped.Load(),
		Rejected: s.Rejected.Load(), Reconnects: s.Reconnects.Load(), Recoveries: s.Recoveries.Load(),
		Downs: s.Downs.Load(), Lag: time.Duration(s.LagNanos.Load()),
	}
}

// HealthConfig bounds a provider's liveness.
type HealthConfig struct {
	// MaxInactivity: no heartbeat (or message) for this long marks the
	// provider down. Default 2s.
	MaxInactivity time.Duration
	// MaxLag: a message whose provider timestamp is older than this on
	// receipt marks the provider down. Default 1s.
	MaxLag time.Duration
}

func (c HealthConfig) withDefaults() HealthConfig {
	if c.MaxInactivity <= 0 {
		c.MaxInactivity = 2 * time.Second
	}
	if c.MaxLag <= 0 {
		c.MaxLag = time.Second
	}
	return c
}

// Health tracks one provider's state for its adapter: Down until the adapter
// reports a completed recovery, Down again when liveness or lag bounds are
// violated. Transitions are reported to the sink as KindStatus updates.
type Health struct {
	provider string
	cfg      HealthConfig
	clock    buzzer.Clock
	sink     Sink
	stats    *Stats

	mu       sync.Mutex
	up       bool
	lastSeen time.Time
}

// NewHealth returns a tracker that starts Down.
func NewHealth(provider string, cfg HealthConfig, clock buzzer.Clock, sink Sink, stats *Stats) *Health {
	return &Health{provider: provider, cfg: cfg.withDefaults(), clock: clock, sink: sink, stats: stats}
}

// Config returns the effective bounds.
func (h *Health) Config() HealthConfig { return h.cfg }

// Seen records liveness (any message or heartbeat) and the lag of a message
// with a provider timestamp (zero ts: no lag check). It reports false when the
// lag bound is violated, in which case the provider has been marked down.
func (h *Health) Seen(ts time.Time) bool {
	now := h.clock.Now()
	h.mu.Lock()
	h.lastSeen = now
	h.mu.Unlock()
	if ts.IsZero() {
		return true
	}
	lag := now.Sub(ts)
	h.stats.LagNanos.Store(int64(lag))
	if lag > h.cfg.MaxLag {
		h.Down("processing lag " + lag.String())
		return false
	}
	return true
}

// Check marks the provider down if it has been inactive too long; adapters
// call it periodically. It reports whether the provider is up.
func (h *Health) Check() bool {
	h.mu.Lock()
	inactive := h.up && h.clock.Now().Sub(h.lastSeen) > h.cfg.MaxInactivity
	h.mu.Unlock()
	if inactive {
		h.Down("heartbeat interval violated")
	}
	return h.Up()
}

// Inactive reports whether nothing has been seen for longer than MaxInactivity.
func (h *Health) Inactive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.clock.Now().Sub(h.lastSeen) > h.cfg.MaxInactivity
}

// Up reports whether the provider is currently trusted.
func (h *Health) Up() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up
}

// Down marks the provider down (idempotent) and tells the sink.
func (h *Health) Down(reason string) {
	h.mu.Lock()
	was := h.up
	h.up = false
	h.mu.Unlock()
	if was {
		h.stats.Downs.Add(1)
		_ = h.sink.Apply(odds.Update{Provider: h.provider, Kind: odds.KindStatus, Status: odds.ProviderDown, Reason: reason, SourceTime: h.clock.Now()})
	}
}

// Recovered marks the provider up after a completed recovery and tells the sink.
func (h *Health) Recovered() {
	h.mu.Lock()
	h.up = true
	h.lastSeen = h.clock.Now()
	h.mu.Unlock()
	h.stats.Recoveries.Add(1)
	_ = h.sink.Apply(odds.Update{Provider: h.provider, Kind: odds.KindStatus, Status: odds.ProviderUp, SourceTime: h.clock.Now()})
}

// Reconnect is every streaming adapter's connect loop: it runs session
// until ctx is done, and each time a session ends the provider is marked
// down at once (nothing it sent is trusted until the next session has
// recovered), the reconnect is counted and logged, and the next attempt
// waits Backoff.
func (h *Health) Reconnect(ctx context.Context, log *slog.Logger, session func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		h.Down("disconnected")
		h.stats.Reconnects.Add(1)
		log.Warn("feed session ended; reconnecting", "provider", h.provider, "err", err)
		if !Sleep(ctx, Backoff(attempt)) {
			return nil
		}
	}
}

// Backoff returns the wait before reconnect attempt n (1-based): 100ms
// doubling up to 5s.
func Backoff(n int) time.Duration {
	d := 100 * time.Millisecond
	for i := 1; i < n && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, 5*time.Second)
}

// Sleep waits d or until ctx is done; it reports whether ctx is still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
