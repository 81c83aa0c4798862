package usodds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

// Config configures the polling adapter.
type Config struct {
	Provider string // default "usodds"
	URL      string // base URL. Required.
	APIKey   string // default "buzzer-dev"
	// Sports polled (default soccer_epl and americanfootball_nfl).
	Sports []string
	// Bookmaker to read (default: the first one listed per event).
	Bookmaker    string
	PollInterval time.Duration // default 500ms
	// ScoresEvery polls scores every N odds polls (default 4).
	ScoresEvery    int
	RequestTimeout time.Duration // default 2s
	Mapper         odds.Mapper   // required
	Sink           feed.Sink     // required
	Journal        feed.Journal
	// Health: MaxLag defaults to 3s here, since the feed's timestamps have
	// one-second resolution.
	Health     feed.HealthConfig
	HTTPClient *http.Client
	Clock      buzzer.Clock
	Logger     *slog.Logger
}

// Adapter polls one US odds feed.
type Adapter struct {
	cfg    Config
	stats  feed.Stats
	health *feed.Health

	mu   sync.Mutex
	norm Normalizer
	poll int
}

// New validates cfg and returns an adapter; Run starts polling.
func New(cfg Config) (*Adapter, error) {
	if cfg.Provider == "" {
		cfg.Provider = "usodds"
	}
	if cfg.URL == "" || cfg.Mapper == nil || cfg.Sink == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "usodds adapter: URL, Mapper and Sink are required")
	}
	if cfg.APIKey == "" {
		cfg.APIKey = "buzzer-dev"
	}
	if len(cfg.Sports) == 0 {
		cfg.Sports = []string{"soccer_epl", "americanfootball_nfl"}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 500 * time.Millisecond
	}
	if cfg.ScoresEvery <= 0 {
		cfg.ScoresEvery = 4
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 2 * time.Second
	}
	if cfg.Health.MaxLag <= 0 {
		cfg.Health.MaxLag = 3 * time.Second
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
	a := &Adapter{cfg: cfg, norm: Normalizer{Provider: cfg.Provider, Mapper: cfg.Mapper, Bookmaker: cfg.Bookmaker}}
	a.health = feed.NewHealth(cfg.Provider, cfg.Health, cfg.Clock, cfg.Sink, &a.stats)
	return a, nil
}

// Stats returns the adapter's counters.
func (a *Adapter) Stats() feed.StatsSnapshot { return a.stats.Snapshot() }

// Up reports whether the feed is currently trusted.
func (a *Adapter) Up() bool { return a.health.Up() }

// Run polls until ctx is done.
func (a *Adapter) Run(ctx context.Context) error {
	t := time.NewTicker(a.cfg.PollInterval)
	defer t.Stop()
	for {
		a.PollOnce(ctx)
		a.health.Check()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PollOnce polls every sport once (and scores when due). A complete,
// well-formed round is a full image: it makes the provider trusted.
func (a *Adapter) PollOnce(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.poll++
	ok := true
	for _, sport := range a.cfg.Sports {
		if !a.pollOdds(ctx, sport) {
			ok = false
		}
	}
	if a.poll%a.cfg.ScoresEvery == 0 {
		for _, sport := range a.cfg.Sports {
			a.pollScores(ctx, sport)
		}
	}
	if ok && !a.health.Up() {
		a.health.Recovered()
	}
}

func (a *Adapter) get(ctx context.Context, path string, q url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.RequestTimeout)
	defer cancel()
	q.Set("apiKey", a.cfg.APIKey)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.URL+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: status %d", path, resp.StatusCode)
	}
	return body, nil
}

func (a *Adapter) pollOdds(ctx context.Context, sport string) bool {
	body, err := a.get(ctx, "/v4/sports/"+url.PathEscape(sport)+"/odds",
		url.Values{"regions": {"us"}, "markets": {"h2h,spreads,totals"}, "oddsFormat": {"american"}, "dateFormat": {"iso"}})
	if err != nil {
		a.cfg.Logger.Warn("usodds poll failed", "provider", a.cfg.Provider, "sport", sport, "err", err)
		return false
	}
	return a.HandleOdds(ctx, sport, body)
}

// HandleOdds processes one odds response body: journal, parse, normalize,
// apply. It reports whether the body was well formed.
func (a *Adapter) HandleOdds(ctx context.Context, sport string, body []byte) bool {
	now := a.cfg.Clock.Now()
	a.stats.Messages.Add(1)
	a.cfg.Journal.Record(ctx, feed.RawMessage{Provider: a.cfg.Provider, Received: now, Payload: body})
	evs, err := ParseOdds(body)
	if err != nil {
		a.stats.ParseErrors.Add(1)
		a.cfg.Logger.Warn("usodds response dropped", "provider", a.cfg.Provider, "err", err, "bytes", len(body))
		return false
	}
	ups, unmapped, err := a.norm.Odds(sport, evs, now)
	if err != nil {
		a.stats.ParseErrors.Add(1)
		a.cfg.Logger.Warn("usodds response not normalized", "provider", a.cfg.Provider, "err", err)
		return false
	}
	a.stats.Unmapped.Add(int64(unmapped))
	var newest time.Time
	for _, u := range ups {
		if u.SourceTime.After(newest) && len(u.Markets) > 0 {
			newest = u.SourceTime
		}
	}
	lagOK := a.health.Seen(newest)
	_ = a.cfg.Sink.Apply(odds.Update{Provider: a.cfg.Provider, Kind: odds.KindAlive, SourceTime: now})
	a.apply(ups)
	return lagOK
}

func (a *Adapter) pollScores(ctx context.Context, sport string) {
	body, err := a.get(ctx, "/v4/sports/"+url.PathEscape(sport)+"/scores", url.Values{"daysFrom": {"1"}, "dateFormat": {"iso"}})
	if err != nil {
		a.cfg.Logger.Warn("usodds scores poll failed", "provider", a.cfg.Provider, "sport", sport, "err", err)
		return
	}
	a.HandleScores(ctx, body)
}

// HandleScores processes one scores response body.
func (a *Adapter) HandleScores(ctx context.Context, body []byte) bool {
	now := a.cfg.Clock.Now()
	a.stats.Messages.Add(1)
	a.cfg.Journal.Record(ctx, feed.RawMessage{Provider: a.cfg.Provider, Received: now, Payload: body})
	evs, err := ParseScores(body)
	if err == nil {
		var ups []odds.Update
		var unmapped int
		ups, unmapped, err = a.norm.Scores(evs, now)
		if err == nil {
			a.stats.Unmapped.Add(int64(unmapped))
			a.apply(ups)
			return true
		}
	}
	a.stats.ParseErrors.Add(1)
	a.cfg.Logger.Warn("usodds scores dropped", "provider", a.cfg.Provider, "err", err)
	return false
}

func (a *Adapter) apply(ups []odds.Update) {
	for _, u := range ups {
		if err := a.cfg.Sink.Apply(u); err != nil {
			if !errors.Is(err, context.Canceled) {
				a.stats.Rejected.Add(1)
				a.cfg.Logger.Warn("usodds update refused", "provider", a.cfg.Provider, "err", err)
			}
		}
	}
}
