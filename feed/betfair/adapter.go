package betfair

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

// Config configures the Betfair stream adapter.
type Config struct {
	Provider string // default "betfair"
	Addr     string // host:port of the stream endpoint. Required.
	AppKey   string // default "buzzer-dev"
	Session  string // default "buzzer-dev"
	// HeartbeatMs asked of the server (500..5000, default 500).
	HeartbeatMs int
	// EventTypeIDs to subscribe to (default football "1" and American football "6423").
	EventTypeIDs []string
	Mapper       odds.Mapper // required
	Sink         feed.Sink   // required
	Journal      feed.Journal
	Health       feed.HealthConfig
	DialTimeout  time.Duration // default 3s
	// ImageTimeout: a connection not trusted for this long (no image, or a
	// silent stream) is closed and resubscribed. Default 3s.
	ImageTimeout time.Duration
	Clock        buzzer.Clock
	Logger       *slog.Logger
}

// Adapter consumes one Betfair-shaped stream.
type Adapter struct {
	cfg    Config
	stats  feed.Stats
	health *feed.Health

	mu         sync.Mutex // guards norm and the clock tokens; one reader at a time
	norm       Normalizer
	initialClk string
	clk        string
	lagged     bool
}

// New validates cfg and returns an adapter; Run connects it.
func New(cfg Config) (*Adapter, error) {
	if cfg.Provider == "" {
		cfg.Provider = "betfair"
	}
	if cfg.Addr == "" || cfg.Mapper == nil || cfg.Sink == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "betfair adapter: Addr, Mapper and Sink are required")
	}
	if cfg.AppKey == "" {
		cfg.AppKey = "buzzer-dev"
	}
	if cfg.Session == "" {
		cfg.Session = "buzzer-dev"
	}
	if cfg.HeartbeatMs == 0 {
		cfg.HeartbeatMs = 500
	}
	if cfg.HeartbeatMs < 500 || cfg.HeartbeatMs > 5000 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "betfair adapter: HeartbeatMs must be within 500..5000")
	}
	if len(cfg.EventTypeIDs) == 0 {
		cfg.EventTypeIDs = []string{"1", "6423"}
	}
	if cfg.ImageTimeout <= 0 {
		cfg.ImageTimeout = 3 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 3 * time.Second
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

// Up reports whether the stream is currently trusted.
func (a *Adapter) Up() bool { return a.health.Up() }

// Run connects, subscribes and consumes until ctx is done, resubscribing
// with the last clock tokens after every disconnect.
func (a *Adapter) Run(ctx context.Context) error {
	return a.health.Reconnect(ctx, a.cfg.Logger, a.session)
}

func (a *Adapter) session(ctx context.Context) error {
	d := net.Dialer{Timeout: a.cfg.DialTimeout}
	conn, err := d.DialContext(ctx, "tcp", a.cfg.Addr)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.lagged = false
	a.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// The watchdog: a stream that stops heartbeating is dead; closing the
		// socket ends the read loop and Run resubscribes with the clk.
		t := time.NewTicker(min(a.health.Config().MaxInactivity/4, 100*time.Millisecond))
		defer t.Stop()
		// A session that is not trusted (no image yet, or silent since) and not
		// merely lagging is restarted after ImageTimeout.
		lastGood := time.Now()
		for {
			select {
			case <-ctx.Done():
				_ = conn.Close()
				return
			case <-t.C:
				if a.health.Check() || a.isLagged() {
					lastGood = time.Now()
				} else if time.Since(lastGood) > a.cfg.ImageTimeout {
					_ = conn.Close()
					return
				}
			}
		}
	}()

	r := bufio.NewReaderSize(conn, 256<<10)
	w := bufio.NewWriter(conn)
	send := func(v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		w.Write(b)
		w.WriteString("\r\n")
		return w.Flush()
	}
	// connection -> authentication -> status -> marketSubscription -> status -> images and deltas
	step := 0
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		m, ok := a.Handle(ctx, line)
		if !ok {
			continue
		}
		switch {
		case m.Op == "connection" && step == 0:
			step = 1
			if err := send(map[string]any{"op": "authentication", "id": 1, "appKey": a.cfg.AppKey, "session": a.cfg.Session}); err != nil {
				return err
			}
		case m.Op == "status" && m.StatusCode != "SUCCESS":
			return fmt.Errorf("status %s %s: %s", m.StatusCode, m.ErrorCode, m.ErrorMessage)
		case m.Op == "status" && m.ConnectionClosed:
			return fmt.Errorf("server closed the connection")
		case m.Op == "status" && step == 1:
			step = 2
			a.mu.Lock()
			sub := map[string]any{
				"op": "marketSubscription", "id": 2, "heartbeatMs": a.cfg.HeartbeatMs,
				"marketFilter":     map[string]any{"eventTypeIds": a.cfg.EventTypeIDs},
				"marketDataFilter": map[string]any{"fields": []string{"EX_BEST_OFFERS", "EX_MARKET_DEF"}, "ladderLevels": 1},
			}
			if a.clk != "" {
				sub["initialClk"], sub["clk"] = a.initialClk, a.clk
			}
			a.mu.Unlock()
			if err := send(sub); err != nil {
				return err
			}
		}
	}
}

func (a *Adapter) isLagged() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lagged
}

// readLine reads one CRLF- (or LF-) terminated line, refusing lines over
// MaxLineSize.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > MaxLineSize {
			return nil, fmt.Errorf("line over %d bytes", MaxLineSize)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, err
		}
		return bytes.TrimRight(buf, "\r\n"), nil
	}
}

// Handle processes one line: journal, parse, health, normalize, apply. It
// returns the parsed message and whether it was well formed.
func (a *Adapter) Handle(ctx context.Context, line []byte) (Message, bool) {
	now := a.cfg.Clock.Now()
	a.stats.Messages.Add(1)
	a.cfg.Journal.Record(ctx, feed.RawMessage{Provider: a.cfg.Provider, Received: now, Payload: append([]byte(nil), line...)})
	m, err := Parse(line)
	if err != nil {
		a.stats.ParseErrors.Add(1)
		a.cfg.Logger.Warn("betfair message dropped", "provider", a.cfg.Provider, "err", err, "bytes", len(line))
		return Message{}, false
	}
	if m.Op != "mcm" {
		return m, true
	}
	var ts time.Time
	if m.Pt > 0 && m.Ct != "HEARTBEAT" {
		ts = time.UnixMilli(m.Pt)
	}
	lagOK := a.health.Seen(ts)
	a.mu.Lock()
	res, err := a.norm.Normalize(m)
	if err == nil {
		if m.InitialClk != "" {
			a.initialClk = m.InitialClk
		}
		if m.Clk != "" {
			a.clk = m.Clk
		}
	}
	wasLagged := a.lagged
	a.lagged = !lagOK
	a.mu.Unlock()
	if err != nil {
		a.stats.ParseErrors.Add(1)
		a.cfg.Logger.Warn("betfair message not normalized", "provider", a.cfg.Provider, "err", err)
		return m, false
	}
	a.stats.Unmapped.Add(int64(res.Unmapped))
	for _, u := range res.Updates {
		if err := a.cfg.Sink.Apply(u); err != nil {
			a.stats.Rejected.Add(1)
			a.cfg.Logger.Warn("betfair update refused", "provider", a.cfg.Provider, "err", err)
		}
	}
	// The stream is trusted once an image has been applied, and again after a
	// lag episode once messages arrive within the bound (no data was lost: the
	// socket stayed up and every delta was applied).
	if lagOK && !a.health.Up() && (res.Image || (wasLagged && a.hasImage())) {
		a.health.Recovered()
	}
	return m, true
}

func (a *Adapter) hasImage() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clk != ""
}
