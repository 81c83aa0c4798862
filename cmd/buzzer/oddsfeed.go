package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/feed/betfair"
	"github.com/buzzer-bet/buzzer/feed/uof"
	"github.com/buzzer-bet/buzzer/feed/usodds"
	"github.com/buzzer-bet/buzzer/feedsim"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
)

// OddsConfig configures the odds pipeline of a node.
type OddsConfig struct {
	// Simulate runs the simulated providers in-process (dev mode) and
	// connects the adapters to them exactly as to real providers.
	Simulate bool   `yaml:"simulate"`
	Seed     uint64 `yaml:"seed"`
	// Matches per sport the simulator keeps running.
	Football         int           `yaml:"football"`
	AmericanFootball int           `yaml:"american_football"`
	SilenceTimeout   time.Duration `yaml:"silence_timeout"`
	// InPlayBetDelay holds an in-play bet this long before it is re-checked
	// against the then-current price.
	InPlayBetDelay time.Duration `yaml:"in_play_bet_delay"`
	// PublishQueue bounds the hand-off from the engine to the stream.
	PublishQueue int `yaml:"publish_queue"`
}

// DefaultOddsConfig is the dev default.
func DefaultOddsConfig() OddsConfig {
	return OddsConfig{Simulate: true, Seed: 1, Football: 30, AmericanFootball: 20, SilenceTimeout: 2 * time.Second, PublishQueue: 65536}
}

// Validate names the bad field.
func (c OddsConfig) Validate() error {
	switch {
	case c.Football < 0 || c.AmericanFootball < 0 || c.Football+c.AmericanFootball > 5000:
		return buzzer.Errorf(buzzer.EINVALID, "odds.football + odds.american_football must be 0..5000")
	case c.SilenceTimeout <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "odds.silence_timeout must be > 0")
	case c.InPlayBetDelay < 0 || c.InPlayBetDelay > time.Minute:
		return buzzer.Errorf(buzzer.EINVALID, "odds.in_play_bet_delay must be 0..1m")
	case c.PublishQueue < 1:
		return buzzer.Errorf(buzzer.EINVALID, "odds.publish_queue must be >= 1")
	}
	return nil
}

// Stream names and subjects of the odds backbone.
const (
	oddsDeltaStream = "ODDS_DELTAS"
	oddsRawStream   = "ODDS_RAW"
)

// deltaPublisher hands engine deltas to JetStream without ever blocking the
// engine (PublishDelta runs under the engine lock): a bounded queue feeds one
// publishing goroutine; on overflow the delta is counted as dropped, and
// consumers see a gap in the event's sequence and resynchronize from a
// snapshot.
type deltaPublisher struct {
	js      jetstream.JetStream
	queue   chan odds.Delta
	dropped prometheus.Counter
	failed  prometheus.Counter
	log     *slog.Logger
	wg      sync.WaitGroup
}

func (p *deltaPublisher) PublishDelta(d odds.Delta) {
	select {
	case p.queue <- d:
	default:
		p.dropped.Inc()
	}
}

func (p *deltaPublisher) run(ctx context.Context) {
	defer p.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-p.queue:
			b, err := json.Marshal(d)
			if err != nil {
				p.failed.Inc()
				continue
			}
			// Keyed by event, deduplicated by event:seq: a re-publish after a
			// restart is dropped by the stream, and order holds per event.
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = p.js.Publish(pctx, "odds.delta."+d.EventID, b, jetstream.WithMsgID(fmt.Sprintf("%s:%d", d.EventID, d.Seq)))
			cancel()
			if err != nil && ctx.Err() == nil {
				p.failed.Inc()
				p.log.Warn("odds delta publish failed", "event", d.EventID, "seq", d.Seq, "err", err)
			}
		}
	}
}

// startOddsPipeline runs the odds engine, and in dev mode the simulated
// providers and the three adapters feeding it; raw provider messages are
// journaled and deltas published on JetStream. Everything it starts stops
// at node shutdown.
func startOddsPipeline(ctx context.Context, cfg OddsConfig, nc *nats.Conn, reg prometheus.Registerer, log *slog.Logger, onClose func(func())) (*odds.Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, spec := range []nats.StreamSpec{
		{Name: oddsDeltaStream, Subjects: []string{"odds.delta.>"}, Duplicates: 2 * time.Minute, MaxAge: 24 * time.Hour},
		{Name: oddsRawStream, Subjects: []string{"odds.raw.>"}, MaxAge: 24 * time.Hour},
	} {
		if _, err := nc.EnsureStream(ctx, spec); err != nil {
			return nil, err
		}
	}
	pub := &deltaPublisher{
		js:    nc.JS,
		queue: make(chan odds.Delta, cfg.PublishQueue),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_odds_deltas_dropped_total",
			Help: "Deltas not handed to the stream because the publish queue was full."}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_odds_delta_publish_failures_total",
			Help: "Deltas the stream did not accept."}),
		log: log,
	}
	reg.MustRegister(pub.dropped, pub.failed)
	table, err := odds.NewMappingTable()
	if err != nil {
		return nil, err
	}
	providers := []string{feedsim.ProviderUOF, feedsim.ProviderBetfair, feedsim.ProviderUSOdds}
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: providers, Publisher: pub, Logger: log, SilenceTimeout: cfg.SilenceTimeout})
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	stop := func() { cancel(); wg.Wait(); pub.wg.Wait() }
	pub.wg.Add(1)
	go pub.run(runCtx)
	wg.Add(1)
	go func() { defer wg.Done(); _ = eng.Run(runCtx) }()
	if !cfg.Simulate {
		// Real provider connections are configured per operator; without
		// them the engine serves no events and every bet is refused.
		log.Warn("odds: simulation off and no provider configured; no events will be offered")
		onClose(stop)
		return eng, nil
	}

	var mapErr sync.Once
	feeds, err := feedsim.Start(runCtx, feedsim.FeedsConfig{Sim: feedsim.Config{
		Seed: cfg.Seed, Football: cfg.Football, AmericanFootball: cfg.AmericanFootball, Rolling: true,
		OnMatch: func(m feedsim.MatchState) {
			for _, l := range feedsim.Links(m) {
				if err := table.Add(l); err != nil {
					mapErr.Do(func() { log.Error("odds mapping", "err", err) })
				}
			}
			if err := eng.AddFixture(feedsim.Fixture(m)); err != nil {
				mapErr.Do(func() { log.Error("odds fixture", "err", err) })
			}
		}}})
	if err != nil {
		stop()
		return nil, err
	}
	// The journal must never block an adapter: a core NATS publish only
	// buffers in the client; JetStream captures it on the stream's subject.
	journal := feed.JournalFunc(func(_ context.Context, m feed.RawMessage) {
		msg := natsgo.NewMsg("odds.raw." + m.Provider)
		msg.Header.Set("Buzzer-Received", m.Received.UTC().Format(time.RFC3339Nano))
		msg.Data = m.Payload
		_ = nc.NC.PublishMsg(msg)
	})
	ua, err := uof.New(uof.Config{URL: feeds.UOF.URL(), Mapper: table, Sink: eng, Journal: journal, Logger: log})
	if err != nil {
		feeds.Stop()
		stop()
		return nil, err
	}
	ba, err := betfair.New(betfair.Config{Addr: feeds.Betfair.Addr(), Mapper: table, Sink: eng, Journal: journal, Logger: log})
	if err != nil {
		feeds.Stop()
		stop()
		return nil, err
	}
	sa, err := usodds.New(usodds.Config{URL: feeds.USOdds.URL(), Mapper: table, Sink: eng, Journal: journal, Logger: log})
	if err != nil {
		feeds.Stop()
		stop()
		return nil, err
	}
	for _, run := range []func(context.Context) error{ua.Run, ba.Run, sa.Run} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = run(runCtx) }()
	}
	reg.MustRegister(feed.NewCollector(map[string]feed.StatsSource{
		feedsim.ProviderUOF: ua, feedsim.ProviderBetfair: ba, feedsim.ProviderUSOdds: sa}, eng))
	log.Info("odds: simulated providers running", "endpoints", feeds.Endpoints())
	onClose(func() { stop(); feeds.Stop() })
	return eng, nil
}
