package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/toggle"
	"github.com/buzzer-bet/buzzer/wallet"
)

func newLogger(cfg LogConfig, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// store is the node's SQL store: exactly one of pg and lite is set.
type store struct {
	pg   *postgres.DB
	lite *sqlite.DB
	// tableAudit, with lite in serve, holds the outbox the table capture
	// writes (see openTableAudit); nil otherwise.
	tableAudit *sqlite.DB
}

func openStore(ctx context.Context, cfg *Config) (*store, error) {
	if _, ok := sqlite.PathFromURL(cfg.Store); ok {
		db, err := sqlite.Open(ctx, cfg.SQLite)
		if err != nil {
			return nil, err
		}
		return &store{lite: db}, nil
	}
	db, err := postgres.Open(ctx, cfg.Postgres)
	if err != nil {
		return nil, err
	}
	return &store{pg: db}, nil
}

// openStoreURL opens an existing store for an offline tool (ledger check,
// rng audit, audit replay) with default settings. A tool never creates a
// store: a missing SQLite file is an error rather than a new empty database.
func openStoreURL(ctx context.Context, storeURL string) (*store, error) {
	if storeURL == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "--store is required")
	}
	cfg := DefaultConfig()
	cfg.Store = storeURL
	cfg.DataDir = "."
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if p, ok := sqlite.PathFromURL(cfg.Store); ok {
		if _, err := os.Stat(p); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "--store: no SQLite store at %s", p)
		}
	}
	return openStore(ctx, &cfg)
}

func (s *store) migrate(ctx context.Context) error {
	if s.pg != nil {
		return s.pg.Migrate(ctx)
	}
	return s.lite.Migrate(ctx)
}

func (s *store) ping(ctx context.Context) error {
	if s.pg != nil {
		return s.pg.Ping(ctx)
	}
	return s.lite.Ping(ctx)
}

// observe registers the store layer's latency histogram: every transaction
// as its caller waited for it, retries included.
func (s *store) observe(reg prometheus.Registerer) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "buzzer_store_tx_duration_seconds",
		Help:    "Store transactions as their callers waited for them (queueing and serialization retries included).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	reg.MustRegister(h)
	obs := func(d time.Duration) { h.Observe(d.Seconds()) }
	if s.pg != nil {
		s.pg.OnTx = obs
	} else {
		s.lite.OnTx = obs
	}
}

func (s *store) retries() int64 {
	if s.pg != nil {
		return s.pg.Retries()
	}
	return s.lite.Retries()
}

func (s *store) close() {
	if s.tableAudit != nil {
		s.tableAudit.Close()
	}
	if s.pg != nil {
		s.pg.Close()
	} else {
		s.lite.Close()
	}
}

// registerCheckpointMetrics registers prefix_checkpoint_failures_total and
// prefix_wal_pages for the background checkpoints of db (what names it).
func registerCheckpointMetrics(reg prometheus.Registerer, prefix, what string, db *sqlite.DB) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: prefix + "_checkpoint_failures_total",
		Help: "Background WAL checkpoints of " + what + " that failed (the WAL grows while they do).",
	}, func() float64 { _, f, _ := db.CheckpointStats(); return float64(f) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: prefix + "_wal_pages",
		Help: "Pages in the WAL of " + what + " at the last background checkpoint.",
	}, func() float64 { _, _, w := db.CheckpointStats(); return float64(w) }))
}

// tableAuditPath is the table-audit database beside the SQLite store at
// path: buzzer.db → buzzer-table-audit.db.
func tableAuditPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-table-audit" + ext
}

// openTableAudit opens, beside a SQLite store, the database that holds the
// table capture's outbox (cfg is the store's configuration, jurisdiction
// its). SQLite admits
// one writer per database file: in the store's own file every pass of the
// table capture, and the relay's marking and releasing of the table events
// it captured, held the writer that every wallet group commit waits for,
// about a quarter of its time under a full floor. In a file of its own
// the capture waits only for its own relay. Table events never share a
// transaction with the wallet's changes (they are captured from the table
// store's log, not written with the change), so nothing atomic is split.
// The first open continues the numbering of the table streams the store's
// outbox captured until then (sqlite.DB.AdoptStreamCursors); the records it
// still holds are relayed from there as before. PostgreSQL, with no single
// writer, keeps the table capture in its one outbox.
func (s *store) openTableAudit(ctx context.Context, cfg sqlite.Config, jurisdiction string) error {
	if s.lite == nil {
		return nil
	}
	cfg.Path = tableAuditPath(cfg.Path)
	db, err := sqlite.Open(ctx, cfg)
	if err != nil {
		return err
	}
	if err := db.MigrateOutbox(ctx); err != nil {
		db.Close()
		return err
	}
	if _, err := db.AdoptStreamCursors(ctx, s.lite, jurisdiction, audit.ComponentTable); err != nil {
		db.Close()
		return err
	}
	s.tableAudit = db
	return nil
}

// node is every part of a `serve` process, built and wired by hand. The
// regulated parts (store, RNG log, audit trail, wallet, tables) belong to a
// jurisdiction: a node holding one has them itself; a node holding several
// (`--jurisdictions NJ,PA`) has one part node per jurisdiction in parts,
// each with its own stores, sharing the rest (listeners, auth, location
// service, odds, toggles, NATS).
type node struct {
	cfg     *Config
	log     *slog.Logger
	reg     *prometheus.Registry
	store   *store
	nats    *nats.Conn
	http    *httpapi.Server
	player  *auth.Verifier
	admin   *auth.Verifier
	rng     *rng.Service
	odds    *odds.Engine
	wallet  *wallet.Service
	tables  *table.Service
	toggles *toggle.Set
	// parts are the jurisdictions' regulated parts, in configuration
	// order; [n] itself when n holds one jurisdiction.
	parts []*node
	// root is the node a part belongs to (nil on the node itself).
	root *node
	// closers run in reverse order at shutdown, after the listeners drained.
	closers []func()
}

// onClose adds f to the node's closers (a part's go to its node, so the
// whole process closes in reverse order of building).
func (n *node) onClose(f func()) {
	if n.root != nil {
		n.root.onClose(f)
		return
	}
	n.closers = append(n.closers, f)
}

// part returns the node that holds jurisdiction j's regulated parts: n
// itself when n holds one jurisdiction, else a part node with j's
// configuration, its own metrics registry (shown with a jurisdiction label)
// and its own view of the listeners, through which a player's request
// reaches only the part of the player's own jurisdiction.
func (n *node) part(j string) *node {
	if len(n.cfg.Jurisdictions) == 1 {
		return n
	}
	reg := prometheus.NewRegistry()
	return &node{
		cfg: n.cfg.forJurisdiction(j), log: n.log.With("jurisdiction", j), reg: reg,
		nats: n.nats, http: n.http.Jurisdiction(j, reg), player: n.player, admin: n.admin,
		odds: n.odds, toggles: n.toggles, root: n,
	}
}

// buildNode opens the engines and builds every part. On error everything
// already opened is closed.
func buildNode(ctx context.Context, cfg *Config, log *slog.Logger) (_ *node, err error) {
	n := &node{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create data dir %s", cfg.DataDir)
	}

	n.nats, err = nats.Start(ctx, cfg.NATS, log)
	if err != nil {
		return nil, err
	}
	n.onClose(n.nats.Close)

	playerCfg, adminCfg := cfg.Auth.Player, cfg.Auth.Admin
	if cfg.Dev {
		keys, err := auth.LoadOrCreateDevKeys(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		playerCfg, adminCfg = auth.DevPlayerConfig(keys), auth.DevAdminConfig(keys)
		log.Warn("dev mode: trusting signing keys in the data dir; never run production like this", "data_dir", cfg.DataDir)
	}
	if n.player, err = auth.NewVerifier(playerCfg, buzzer.SystemClock{}, nil); err != nil {
		return nil, err
	}
	n.onClose(n.player.Close)
	if n.admin, err = auth.NewVerifier(adminCfg, buzzer.SystemClock{}, nil); err != nil {
		return nil, err
	}
	n.onClose(n.admin.Close)
	for name, v := range map[string]*auth.Verifier{"player": n.player, "admin": n.admin} {
		n.registerAuthMetrics(name, v)
	}

	n.http, err = httpapi.New(cfg.HTTP, log, n.player, n.admin, n.reg)
	if err != nil {
		return nil, err
	}

	gates, err := startGeo(ctx, n)
	if err != nil {
		return nil, err
	}
	if n.odds, err = startOdds(ctx, n); err != nil {
		return nil, err
	}
	n.http.MountCatalog(n.odds)
	if n.toggles, err = startToggles(ctx, n); err != nil {
		return nil, err
	}
	prices := livePrices{engine: n.odds, inPlayDelay: cfg.Odds.InPlayBetDelay, toggles: n.toggles}
	for _, j := range cfg.Jurisdictions {
		p := n.part(j)
		if err := buildRegulated(ctx, p, gates[j], prices); err != nil {
			if p != n {
				return nil, fmt.Errorf("jurisdiction %s: %w", j, err)
			}
			return nil, err
		}
		n.parts = append(n.parts, p)
	}
	n.http.AddReadyCheck("nats", n.nats.Ping)
	return n, nil
}

// buildRegulated builds one jurisdiction's regulated parts on p, each behind
// gate: its store, RNG log, audit trail, wallet and tables.
func buildRegulated(ctx context.Context, p *node, gate httpapi.GeoGate, prices wallet.PriceSource) (err error) {
	if p.store, err = openStore(ctx, p.cfg); err != nil {
		return err
	}
	p.onClose(p.store.close)
	if err := p.store.migrate(ctx); err != nil {
		return err
	}
	if err := p.store.openTableAudit(ctx, p.cfg.SQLite, p.cfg.Jurisdiction); err != nil {
		return err
	}
	p.store.observe(p.reg)
	s := p.store
	p.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "buzzer_store_tx_retries_total",
		Help: "Transaction attempts retried after a serialization failure or busy store.",
	}, func() float64 { return float64(s.retries()) }))
	if s.lite != nil {
		registerCheckpointMetrics(p.reg, "buzzer_store", "the SQLite store", s.lite)
	}
	if s.tableAudit != nil {
		registerCheckpointMetrics(p.reg, "buzzer_table_audit", "the table-audit SQLite database", s.tableAudit)
	}

	if p.rng, err = openRNG(ctx, p.cfg, p.store, p.log, p.reg); err != nil {
		return err
	}
	r := p.rng
	p.onClose(func() { _ = r.Close() })
	p.http.MountRNG(p.rng, gate)
	if err := startAudit(ctx, p); err != nil {
		return err
	}
	if p.wallet, err = startWallet(ctx, p.cfg, p.store, prices, p.log, p.onClose); err != nil {
		return err
	}
	p.http.MountWallet(p.wallet, gate)
	if p.tables, err = startTables(ctx, p, tableWallet{svc: p.wallet}); err != nil {
		return err
	}
	p.http.MountTables(p.tables, gate)
	p.http.AddReadyCheck("store", p.store.ping)
	return nil
}

func (n *node) registerAuthMetrics(name string, v *auth.Verifier) {
	labels := prometheus.Labels{"verifier": name}
	stat := func(f func(auth.Stats) float64) func() float64 { return func() float64 { return f(v.Stats()) } }
	n.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "buzzer_auth_cache_hits_total", Help: "Tokens answered from the verified-token cache.", ConstLabels: labels},
			stat(func(s auth.Stats) float64 { return float64(s.CacheHits) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "buzzer_auth_jwks_fetches_total", Help: "JWKS fetches.", ConstLabels: labels},
			stat(func(s auth.Stats) float64 { return float64(s.Fetches) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "buzzer_auth_jwks_fetch_failures_total", Help: "JWKS fetches that failed.", ConstLabels: labels},
			stat(func(s auth.Stats) float64 { return float64(s.FetchFailures) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "buzzer_auth_keys_age_seconds", Help: "Age of the key set in use.", ConstLabels: labels},
			stat(func(s auth.Stats) float64 { return s.KeysAge.Seconds() })),
	)
}

// openRNG starts the RNG service on the node's store with its signing key.
func openRNG(ctx context.Context, cfg *Config, s *store, log *slog.Logger, reg prometheus.Registerer) (*rng.Service, error) {
	signer, err := rng.LoadOrCreateKeyFile(cfg.RNG.KeyFile, cfg.RNG.Origin)
	if err != nil {
		return nil, err
	}
	var st rng.Store
	if s.pg != nil {
		st = postgres.NewAuditedRNGStore(s.pg, cfg.Jurisdiction, cfg.RNG.Origin)
	} else {
		st = sqlite.NewAuditedRNGStore(s.lite, cfg.Jurisdiction, cfg.RNG.Origin)
	}
	return rng.NewService(ctx, st, signer, rng.Config{
		Origin: cfg.RNG.Origin, Jurisdiction: cfg.Jurisdiction, MaxBatch: cfg.RNG.MaxBatch,
		CheckpointInterval: cfg.RNG.CheckpointInterval, CheckpointEvery: cfg.RNG.CheckpointEvery,
		Logger: log, Registerer: reg,
	})
}

// startToggles follows the shared toggle bucket until shutdown and serves
// it on the admin listener. Start-up waits for the stored flips, so a node
// never runs on defaults an operator has overridden.
func startToggles(ctx context.Context, n *node) (*toggle.Set, error) {
	st, err := nats.NewToggleStore(ctx, n.nats, 1)
	if err != nil {
		return nil, err
	}
	set := toggle.NewSet(st, buzzer.SystemClock{})
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for runCtx.Err() == nil {
			if err := set.Run(runCtx); err != nil && runCtx.Err() == nil {
				n.log.Error("toggles watch stopped; retrying", "err", err)
				select {
				case <-runCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	n.onClose(func() { cancel(); <-done })
	select {
	case <-set.Loaded():
	case <-time.After(10 * time.Second):
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "the toggles were not loaded within 10s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	n.http.MountToggles(set)
	return set, nil
}

// warm runs before readiness: pools are connected, keys loaded, streams up.
func (n *node) warm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"nats": n.nats.Ping, "player keys": n.player.Warm, "admin keys": n.admin.Warm,
	}
	for _, p := range n.parts {
		checks[p.cfg.Jurisdiction+" store"] = p.store.ping
	}
	for name, f := range checks {
		if err := f(ctx); err != nil {
			return fmt.Errorf("warm-up %s: %w", name, err)
		}
	}
	return nil
}

func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("serve", stderr)
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

// runEdge runs one jurisdiction's regulated services with its own stores. The
// jurisdiction must be named explicitly: an edge that silently served the
// default jurisdiction would put regulated data in the wrong place.
func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("edge", stderr)
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	named := false
	cf.fs.Visit(func(f *flag.Flag) { named = named || f.Name == "jurisdiction" })
	if _, env := os.LookupEnv(envName("jurisdiction")); !named && !env && cf.file == "" {
		return buzzer.Errorf(buzzer.EINVALID, "edge needs --jurisdiction (or BUZZER_JURISDICTION)")
	}
	cfg.Edge = true
	if err := cfg.validateJurisdictions(); err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

func serve(ctx context.Context, cfg *Config, stdout, stderr io.Writer) error {
	log := newLogger(cfg.Log, stderr)
	succ, err := inherited()
	if err != nil {
		return err
	}
	if succ != nil {
		if err := succ.takeOver(log); err != nil {
			succ.player.Close()
			succ.admin.Close()
			return err
		}
	}
	n, err := buildNode(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer n.close()
	if succ != nil {
		n.http.UseListeners(succ.player, succ.admin)
	} else if err := n.http.Listen(); err != nil {
		return err
	}
	n.http.Serve()
	player, admin := n.http.Addrs()
	log.Info("listening", "player", player, "admin", admin, "store", maskValue(cfg.Store), "data_dir", cfg.DataDir, "upgraded", succ != nil)
	drain := func() {
		log.Info("draining in-flight requests", "deadline", cfg.HTTP.DrainTimeout.String())
		shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout)
		defer cancel()
		if err := n.http.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			log.Error("shutdown", "err", err)
		}
	}
	if err := n.warm(ctx); err != nil {
		drain()
		return err
	}
	n.http.SetReady(true)
	if err := writePID(cfg.DataDir); err != nil {
		log.Warn("cannot write the pid file", "err", err)
	}
	defer removePID(cfg.DataDir)
	log.Info("ready")
	fmt.Fprintf(stdout, "buzzer serving players on http://%s and operators on http://%s\n", player, admin)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			drain()
			log.Info("stopped")
			return nil
		case <-hup:
			release, err := startSuccessor(n.http, log)
			if err != nil {
				log.Error("upgrade aborted", "err", err)
				continue
			}
			drain()
			n.close() // the engines, leases and archive are the successor's now
			release.Close()
			log.Info("upgrade: handed over to the successor; exiting")
			return nil
		}
	}
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("migrate", stderr)
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	if p, ok := sqlite.PathFromURL(cfg.Store); ok {
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
	}
	s, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.migrate(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "migrated %s\n", maskValue(cfg.Store))
	return nil
}
