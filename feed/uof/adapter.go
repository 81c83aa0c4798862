package uof

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

// Config configures the UOF adapter.
type Config struct {
	// Provider is the provider name used in updates and the mapping (default "uof").
	Provider string
	// URL is the provider's base URL (stream at /stream, recovery at
	// /v1/liveodds/recovery/initiate_request). Required.
	URL string
	// NodeID identifies this consumer to the provider (default "1").
	NodeID string
	Mapper odds.Mapper // required
	Sink   feed.Sink   // required
	// Journal receives every raw message with its receipt time (optional).
	Journal feed.Journal
	Health  feed.HealthConfig
	// RecoveryTimeout: a recovery without snapshot_complete by then restarts
	// the connection. Default 5s.
	RecoveryTimeout time.Duration
	// MinRecoveryInterval spaces recovery requests, so a producer that keeps
	// violating its bounds is not asked for snapshot after snapshot. Default 1s.
	MinRecoveryInterval time.Duration
	HTTPClient          *http.Client
	Clock               buzzer.Clock
	Logger              *slog.Logger
}

// Adapter consumes one UOF producer.
type Adapter struct {
	cfg    Config
	norm   Normalizer
	stats  feed.Stats
	health *feed.Health

	mu           sync.Mutex
	requestID    int
	pending      int // request id of the recovery in flight, 0 if none
	pendingSince time.Time
	lastStart    time.Time // when the last recovery was requested
	needRecovery bool
	// lagDown: the producer is down only because messages arrive late. None
	// were lost, so it is trusted again once a message arrives within the
	// bound, without a snapshot (as the UOF SDK does for processing delays).
	lagDown bool
	lastTS  int64 // timestamp of the last message processed while up
}

// New validates cfg and returns an adapter; Run connects it.
func New(cfg Config) (*Adapter, error) {
	if cfg.Provider == "" {
		cfg.Provider = "uof"
	}
	if cfg.NodeID == "" {
		cfg.NodeID = "1"
	}
	if cfg.URL == "" || cfg.Mapper == nil || cfg.Sink == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "uof adapter: URL, Mapper and Sink are required")
	}
	if _, err := url.Parse(cfg.URL); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "uof adapter: bad URL")
	}
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = 5 * time.Second
	}
	if cfg.MinRecoveryInterval <= 0 {
		cfg.MinRecoveryInterval = time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = buzzer.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Journal == nil {
		cfg.Journal = feed.JournalFunc(func(context.Context, feed.RawMessage) {})
	}
	a := &Adapter{cfg: cfg, norm: Normalizer{Provider: cfg.Provider, Mapper: cfg.Mapper}}
	a.health = feed.NewHealth(cfg.Provider, cfg.Health, cfg.Clock, cfg.Sink, &a.stats)
	return a, nil
}

// Stats returns the adapter's counters.
func (a *Adapter) Stats() feed.StatsSnapshot { return a.stats.Snapshot() }

// Up reports whether the producer is currently trusted.
func (a *Adapter) Up() bool { return a.health.Up() }

// Run consumes the stream, reconnecting with backoff, until ctx is done.
func (a *Adapter) Run(ctx context.Context) error {
	return a.health.Reconnect(ctx, a.cfg.Logger, a.session)
}

func (a *Adapter) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.URL+"/stream?node_id="+url.QueryEscape(a.cfg.NodeID), nil)
	if err != nil {
		return err
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("stream: status %d", resp.StatusCode)
	}
	a.mu.Lock()
	a.pending, a.needRecovery, a.lagDown = 0, true, false
	a.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.watch(ctx, cancel)
	}()
	defer wg.Wait()
	defer cancel()

	r := bufio.NewReaderSize(resp.Body, 64<<10)
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n > MaxMessageSize {
			// The framing itself is lost: nothing after this can be trusted.
			a.stats.ParseErrors.Add(1)
			return fmt.Errorf("frame of %d bytes over the limit", n)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return err
		}
		a.Handle(ctx, buf)
	}
}

// watch checks liveness and drives recovery: it asks for a snapshot whenever
// the producer is down and none is in flight, and restarts the connection
// when a recovery does not complete in time.
func (a *Adapter) watch(ctx context.Context, restart context.CancelFunc) {
	tick := min(a.health.Config().MaxInactivity/4, 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		a.health.Check()
		a.mu.Lock()
		now := a.cfg.Clock.Now()
		if a.lagDown && a.health.Inactive() {
			a.lagDown = false // late and now silent too: only a snapshot will do
		}
		if !a.health.Up() && a.pending == 0 && !a.lagDown {
			a.needRecovery = true
		}
		start := a.needRecovery && a.pending == 0 && (a.lastStart.IsZero() || now.Sub(a.lastStart) >= a.cfg.MinRecoveryInterval)
		timedOut := a.pending != 0 && now.Sub(a.pendingSince) > a.cfg.RecoveryTimeout
		var id int
		var after int64
		if start {
			a.requestID++
			id, after = a.requestID, a.lastTS
			a.pending, a.pendingSince, a.lastStart, a.needRecovery = id, now, now, false
		}
		a.mu.Unlock()
		if timedOut {
			a.cfg.Logger.Warn("uof recovery timed out; reconnecting", "provider", a.cfg.Provider)
			restart()
			return
		}
		if start {
			if err := a.requestRecovery(ctx, id, after); err != nil {
				a.cfg.Logger.Warn("uof recovery request failed", "provider", a.cfg.Provider, "err", err)
				a.mu.Lock()
				if a.pending == id {
					a.pending, a.needRecovery = 0, true
				}
				a.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Adapter) requestRecovery(ctx context.Context, id int, after int64) error {
	q := url.Values{"request_id": {strconv.Itoa(id)}, "node_id": {a.cfg.NodeID}}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, a.cfg.URL+"/v1/liveodds/recovery/initiate_request?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("recovery: status %d", resp.StatusCode)
	}
	return nil
}

// Handle processes one raw message: journal, parse, health, normalize, apply.
// Malformed or unmapped messages are counted, logged and dropped.
func (a *Adapter) Handle(ctx context.Context, raw []byte) {
	now := a.cfg.Clock.Now()
	a.stats.Messages.Add(1)
	a.cfg.Journal.Record(ctx, feed.RawMessage{Provider: a.cfg.Provider, Received: now, Payload: raw})
	msg, err := Parse(raw)
	if err != nil {
		a.stats.ParseErrors.Add(1)
		a.cfg.Logger.Warn("uof message dropped", "provider", a.cfg.Provider, "err", err, "bytes", len(raw))
		return
	}
	recovery := msg.OddsChange != nil && msg.OddsChange.RequestID > 0
	ts := msg.Timestamp()
	lagTS := ts
	if recovery || msg.SnapshotComplete != nil {
		lagTS = time.Time{} // snapshot content is as old as the state it describes
	}
	lagOK := a.health.Seen(lagTS)
	a.mu.Lock()
	backInTime := false
	if !lagOK {
		a.lagDown = true
	} else if a.lagDown && !lagTS.IsZero() {
		a.lagDown = false
		backInTime = a.pending == 0 && !a.needRecovery
	}
	a.mu.Unlock()
	if backInTime {
		a.health.Recovered()
	}
	switch {
	case msg.Alive != nil && msg.Alive.Subscribed == 0:
		a.health.Down("producer restarted (alive subscribed=0)")
	case msg.SnapshotComplete != nil:
		a.mu.Lock()
		done := msg.SnapshotComplete.RequestID == a.pending && a.pending != 0
		if done {
			a.pending = 0
		}
		late := a.lagDown
		a.mu.Unlock()
		if done && !late {
			a.health.Recovered()
		}
		return
	}
	if recovery {
		a.mu.Lock()
		mine := msg.OddsChange.RequestID == a.pending
		a.mu.Unlock()
		if !mine {
			return // another node's or an abandoned recovery
		}
	}
	if a.health.Up() {
		a.mu.Lock()
		a.lastTS = max(a.lastTS, ts.UnixMilli())
		a.mu.Unlock()
	}
	ups, err := a.norm.Normalize(msg)
	if err != nil {
		if errors.Is(err, ErrUnmapped) {
			a.stats.Unmapped.Add(1)
		} else {
			a.stats.ParseErrors.Add(1)
		}
		a.cfg.Logger.Debug("uof message not normalized", "provider", a.cfg.Provider, "err", err)
		return
	}
	for _, u := range ups {
		u.Position = strconv.FormatInt(ts.UnixMilli(), 10)
		if err := a.cfg.Sink.Apply(u); err != nil {
			a.stats.Rejected.Add(1)
			a.cfg.Logger.Warn("uof update refused", "provider", a.cfg.Provider, "err", err)
		}
	}
}
