package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/feed/betfair"
	"github.com/buzzer-bet/buzzer/feed/uof"
	"github.com/buzzer-bet/buzzer/feed/usodds"
	"github.com/buzzer-bet/buzzer/feedsim"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/kafka"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
)

// OddsStreamConfig selects the odds backbone and tunes the fan-out.
type OddsStreamConfig struct {
	// Backbone is "jetstream" (default: the node's embedded or external
	// NATS) or "kafka".
	Backbone string           `yaml:"backbone"`
	NATS     nats.OddsConfig  `yaml:"nats"`
	Kafka    kafka.Config     `yaml:"kafka"`
	Fanout   OddsFanoutConfig `yaml:"fanout"`
}

// OddsFanoutConfig tunes delivery to players.
type OddsFanoutConfig struct {
	Window  int `yaml:"window"`  // publications queued per subscription before conflating (16)
	History int `yaml:"history"` // deltas per event kept for resuming (512)
	// WriteDelay batches what one connection is sent within this time into
	// one frame (0: write at once); see fanout.Config.
	WriteDelay time.Duration `yaml:"write_delay"`
	// Coalesce merges an event's deltas within this window into one update
	// (0: the fan-out's default, 25 ms; negative: off); MaxLag makes the
	// fan-out skip to fresh snapshots when deltas reach it later than this
	// (serve's default: off; 0: the fan-out's 500 ms). See fanout.Config.
	Coalesce time.Duration `yaml:"coalesce"`
	MaxLag   time.Duration `yaml:"max_lag"`
}

// DefaultOddsStreamConfig is JetStream with the stream defaults, the delta
// stream kept in memory: every engine start is a new epoch whose consumers
// rebuild from the engine's snapshots, so a delta outliving its process is
// never read, while the embedded server fsyncs every file-stream write (for
// the regulated streams) and would cap the odds at the disk's sync rate.
// The raw journal stays on file: it is the trace behind every price.
func DefaultOddsStreamConfig() OddsStreamConfig {
	nc := nats.DefaultOddsConfig()
	nc.Memory = true
	return OddsStreamConfig{Backbone: "jetstream", NATS: nc, Kafka: kafka.DefaultConfig(),
		// The lag bound is opt-in (max_lag: 500ms): under sustained
		// overload each skip costs a snapshot per subscriber, and on a
		// starved machine it can fire without any client being behind.
		Fanout: OddsFanoutConfig{Window: 16, History: 512, MaxLag: -1}}
}

// Validate names the bad field.
func (c OddsStreamConfig) Validate() error {
	switch c.Backbone {
	case "jetstream":
	case "kafka":
		if err := c.Kafka.Validate(); err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "odds.stream.kafka: %s", buzzer.ErrorMessage(err))
		}
	default:
		return buzzer.Errorf(buzzer.EINVALID, "odds.stream.backbone must be jetstream or kafka")
	}
	if c.Fanout.Window < 1 || c.Fanout.Window > 4096 || c.Fanout.History < 1 || c.Fanout.History > 1<<20 {
		return buzzer.Errorf(buzzer.EINVALID, "odds.stream.fanout.window must be 1..4096 and history 1..1048576")
	}
	if c.Fanout.WriteDelay < 0 || c.Fanout.WriteDelay > time.Second {
		return buzzer.Errorf(buzzer.EINVALID, "odds.stream.fanout.write_delay must be 0..1s")
	}
	return nil
}

// startOdds runs the live-odds part of a node on its configured backbone.
func startOdds(ctx context.Context, n *node) (*odds.Engine, error) {
	p, err := startOddsWith(ctx, n, n.cfg.Odds.Stream, oddsOptions{})
	if err != nil {
		return nil, err
	}
	return p.engine, nil
}

// oddsPart is the running odds part of a node.
type oddsPart struct {
	engine *odds.Engine
	fanout *fanout.Server
	pub    *odds.BusPublisher
	// feeds are the simulated providers (nil unless odds.simulate).
	feeds *feedsim.Feeds
}

// defaultOddsProviders is the provider priority every event has unless
// configured otherwise: the first trusted one drives it, the next takes
// over when it goes silent or down and hands back when it recovers.
func defaultOddsProviders() []string {
	return []string{feedsim.ProviderUOF, feedsim.ProviderBetfair, feedsim.ProviderUSOdds}
}

// oddsOptions are what startOddsWith takes beyond the node's odds config.
type oddsOptions struct {
	// Providers is the priority of the providers that may drive an event
	// (nil: defaultOddsProviders); one not listed is still ingested and
	// compared for divergence but never drives.
	Providers []string
	// SimTick is the simulator's step (0: its default, 100ms).
	SimTick time.Duration
}

// startOddsWith builds and runs the odds part: the engine (fed, in dev
// mode, by the simulated providers through their adapters, every raw
// message journaled on JetStream), a non-blocking hand-off of its deltas to
// the backbone, and the fan-out that reads the backbone and serves players
// on /v1/stream/*. The engine is the catalog and the wallet's price source.
// Everything it starts is stopped and waited for by n.onClose.
func startOddsWith(ctx context.Context, n *node, sc OddsStreamConfig, o oddsOptions) (_ *oddsPart, err error) {
	cfg, log := n.cfg.Odds, n.log
	providers := o.Providers
	if providers == nil {
		providers = defaultOddsProviders()
	}
	if len(providers) == 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "odds providers must name at least one provider")
	}
	for _, p := range providers {
		if !slices.Contains(defaultOddsProviders(), p) {
			return nil, buzzer.Errorf(buzzer.EINVALID, "odds provider %q is unknown (known: %v)", p, defaultOddsProviders())
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	var stops []func()
	stop := func() {
		cancel()
		wg.Wait()
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	goRun := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				log.Error("odds: "+name+" stopped", "err", err)
			}
		}()
	}

	var bus odds.Bus
	switch sc.Backbone {
	case "kafka":
		kb, err := kafka.New(ctx, sc.Kafka)
		if err != nil {
			return nil, err
		}
		stops = append(stops, kb.Close)
		bus = kb
	default:
		if bus, err = nats.NewOddsBus(ctx, n.nats, sc.NATS); err != nil {
			return nil, err
		}
	}
	journal, err := nats.NewOddsJournal(ctx, n.nats, sc.NATS)
	if err != nil {
		return nil, err
	}

	// A new epoch per engine start: this engine numbers every event from 1.
	epoch := uuid.NewString()
	pub, err := odds.NewBusPublisher(bus, odds.BusPublisherConfig{Queue: cfg.PublishQueue, Epoch: epoch, Logger: log})
	if err != nil {
		return nil, err
	}
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: providers, Publisher: pub, Logger: log, SilenceTimeout: cfg.SilenceTimeout})
	if err != nil {
		return nil, err
	}
	fo, err := fanout.New(eng, fanout.Config{Window: sc.Fanout.Window, History: sc.Fanout.History, WriteDelay: sc.Fanout.WriteDelay,
		Coalesce: sc.Fanout.Coalesce, MaxLag: sc.Fanout.MaxLag,
		Epoch: epoch, Logger: log, Registry: n.reg})
	if err != nil {
		return nil, err
	}
	registerOddsMetrics(n.reg, pub, journal)
	goRun("engine", eng.Run)
	goRun("bus publisher", pub.Run)
	goRun("fan-out", fo.Run)
	goRun("fan-out consumer", func(ctx context.Context) error { return fo.Consume(ctx, bus) })

	st := newStreams()
	stops = append(stops, st.cancel)
	n.http.Player("GET /v1/stream/ws", httpapi.Public, st.handler(fo.WebsocketHandler()))
	n.http.Player("GET /v1/stream/sse", httpapi.Public, st.handler(fo.SSEHandler()))
	n.http.Player("POST /v1/stream/http", httpapi.Public, st.handler(fo.HTTPStreamHandler()))
	n.http.Player("POST /v1/stream/emulation", httpapi.Public, st.handler(fo.EmulationHandler()))
	n.http.AddReadyCheck("odds fan-out", func(context.Context) error {
		select {
		case <-fo.Loaded():
			return nil
		default:
			return buzzer.Errorf(buzzer.EUNAVAILABLE, "odds fan-out has not loaded its events yet")
		}
	})

	part := &oddsPart{engine: eng, fanout: fo, pub: pub}
	if !cfg.Simulate {
		log.Warn("odds: simulation off and no provider configured; no events will be offered")
		n.onClose(stop)
		return part, nil
	}
	feeds, err := startSimulatedFeeds(runCtx, cfg, o.SimTick, eng, journal, log, n.reg, goRun)
	if err != nil {
		return nil, err
	}
	stops = append(stops, feeds.Stop)
	log.Info("odds: simulated providers running", "endpoints", feeds.Endpoints(), "backbone", sc.Backbone, "epoch", epoch)
	n.onClose(stop)
	part.feeds = feeds
	return part, nil
}

// startSimulatedFeeds runs the simulated providers and connects the three
// adapters to them exactly as to real ones.
func startSimulatedFeeds(ctx context.Context, cfg OddsConfig, tick time.Duration, eng *odds.Engine, journal feed.Journal, log *slog.Logger,
	reg prometheus.Registerer, goRun func(string, func(context.Context) error)) (*feedsim.Feeds, error) {
	table, err := odds.NewMappingTable()
	if err != nil {
		return nil, err
	}
	var mapErr sync.Once
	feeds, err := feedsim.Start(ctx, feedsim.FeedsConfig{Sim: feedsim.Config{
		Seed: cfg.Seed, Football: cfg.Football, AmericanFootball: cfg.AmericanFootball, Rolling: true, Tick: tick,
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
		return nil, err
	}
	ua, err := uof.New(uof.Config{URL: feeds.UOF.URL(), Mapper: table, Sink: eng, Journal: journal, Logger: log})
	if err == nil {
		var ba *betfair.Adapter
		if ba, err = betfair.New(betfair.Config{Addr: feeds.Betfair.Addr(), Mapper: table, Sink: eng, Journal: journal, Logger: log}); err == nil {
			var sa *usodds.Adapter
			if sa, err = usodds.New(usodds.Config{URL: feeds.USOdds.URL(), Mapper: table, Sink: eng, Journal: journal, Logger: log}); err == nil {
				goRun("uof adapter", ua.Run)
				goRun("betfair adapter", ba.Run)
				goRun("usodds adapter", sa.Run)
				err = reg.Register(feed.NewCollector(map[string]feed.StatsSource{
					feedsim.ProviderUOF: ua, feedsim.ProviderBetfair: ba, feedsim.ProviderUSOdds: sa}, eng))
			}
		}
	}
	if err != nil {
		feeds.Stop()
		return nil, err
	}
	return feeds, nil
}

func registerOddsMetrics(reg prometheus.Registerer, pub *odds.BusPublisher, journal *nats.OddsJournal) {
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	reg.MustRegister(
		counter("buzzer_odds_bus_published_total", "Deltas appended to the odds backbone.", func() uint64 { return pub.Stats().Published }),
		counter("buzzer_odds_bus_dropped_total", "Deltas dropped because the hand-off to the backbone was full (consumers resynchronize).",
			func() uint64 { return pub.Stats().Dropped }),
		counter("buzzer_odds_bus_failed_total", "Deltas the backbone did not accept after retries.", func() uint64 { return pub.Stats().Failed }),
		counter("buzzer_odds_journal_failed_total", "Raw provider messages that could not be journaled.", journal.Failed),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "buzzer_odds_bus_queued", Help: "Deltas waiting for the backbone."},
			func() float64 { return float64(pub.Stats().Queued) }),
	)
}

// streams adapts centrifuge's handlers to player routes. A stream outlives
// the route's request timeout, so its handler gets the request's values
// without that deadline; it still ends when the client goes away (the
// request is canceled rather than timed out) or when the listener starts
// draining (http.Server.Shutdown would otherwise wait for every SSE stream).
type streams struct {
	drain  context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	hooked map[*http.Server]bool
}

func newStreams() *streams {
	ctx, cancel := context.WithCancel(context.Background())
	return &streams{drain: ctx, cancel: cancel, hooked: map[*http.Server]bool{}}
}

func (s *streams) handler(h http.Handler) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
			s.mu.Lock()
			if !s.hooked[srv] {
				s.hooked[srv] = true
				srv.RegisterOnShutdown(s.cancel)
			}
			s.mu.Unlock()
		}
		ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
		defer cancel()
		defer context.AfterFunc(s.drain, cancel)()
		defer context.AfterFunc(r.Context(), func() {
			if !errors.Is(r.Context().Err(), context.DeadlineExceeded) {
				cancel() // the client went away
			}
		})()
		h.ServeHTTP(streamWriter{w}, r.WithContext(ctx))
		return nil
	}
}

// streamWriter exposes what the route's response wrapper hides behind
// http.ResponseController: flushing, and the connection a WebSocket upgrade
// takes over.
type streamWriter struct{ http.ResponseWriter }

func (s streamWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s streamWriter) Flush() { _ = http.NewResponseController(s.ResponseWriter).Flush() }

// Hijack hands over the connection with the listener's read and write
// deadlines cleared: the WebSocket sets its own per frame.
func (s streamWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil {
		_ = c.SetDeadline(time.Time{})
	}
	return c, rw, err
}

// oddsCommands are the odds part's subcommands.
func oddsCommands() map[string]command {
	return map[string]command{
		"feedsim":    {"run the simulated odds providers alone and print their endpoints", runFeedsim},
		"bench odds": {"open WebSocket subscribers to the odds fan-out; print deliveries/s, provider→client latency, gaps and order", runBenchOdds},
	}
}

// runFeedsim runs the three simulated providers and their control API until
// interrupted, printing where each listens as one JSON line.
func runFeedsim(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("feedsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := DefaultOddsConfig()
	seed := fs.Uint64("seed", def.Seed, "seed of the match simulation")
	football := fs.Int("football", def.Football, "concurrent football matches")
	american := fs.Int("american-football", def.AmericanFootball, "concurrent American football matches")
	host := fs.String("host", "127.0.0.1", "listen host (each provider on an ephemeral port unless its address is given)")
	uofAddr := fs.String("uof-addr", "", "UOF-shaped provider address (host:port)")
	bfAddr := fs.String("betfair-addr", "", "Betfair-shaped stream address (host:port)")
	usAddr := fs.String("usodds-addr", "", "US odds provider address (host:port)")
	ctlAddr := fs.String("control-addr", "", "fault control API address (host:port)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if fs.NArg() > 0 {
		return buzzer.Errorf(buzzer.EINVALID, "feedsim takes no arguments, only flags")
	}
	if *football < 0 || *american < 0 || *football+*american == 0 || *football+*american > 5000 {
		return buzzer.Errorf(buzzer.EINVALID, "--football + --american-football must be 1..5000")
	}
	feeds, err := feedsim.Start(ctx, feedsim.FeedsConfig{
		Sim:  feedsim.Config{Seed: *seed, Football: *football, AmericanFootball: *american, Rolling: true},
		Host: *host, UOFAddr: *uofAddr, BetfairAddr: *bfAddr, USOddsAddr: *usAddr, CtlAddr: *ctlAddr,
	})
	if err != nil {
		return err
	}
	defer feeds.Stop()
	b, err := json.Marshal(feeds.Endpoints())
	if err != nil {
		return err
	}
	if _, err := stdout.Write(append(b, '\n')); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}
