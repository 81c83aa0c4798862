package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/internal/loadgen"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/redis"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/tablefeed"
)

// TablesConfig configures the live tables a node serves.
type TablesConfig struct {
	// RedisURL keeps table state and event logs in Redis, so another node
	// takes a table over when its node dies; empty keeps them in this
	// process's memory (serve's default: nothing survives a restart).
	RedisURL string `yaml:"redis_url" secret:"true"`
	// KeyPrefix starts every Redis key; default "buzzer:<jurisdiction>:".
	KeyPrefix string `yaml:"key_prefix"`
	// Node names this process as a lease owner; default host-pid-random. It
	// must be unique among the nodes sharing the Redis.
	Node string `yaml:"node"`
	// LeaseTTL is how long a dead node keeps its tables; default 10s.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// TickInterval is how often held tables are ticked (deals, timeouts,
	// lease renewal); default 500ms.
	TickInterval time.Duration `yaml:"tick_interval"`
	// ClaimInterval is how often the node tries to take up tables it does
	// not hold (a free or lapsed lease); default 1s.
	ClaimInterval time.Duration `yaml:"claim_interval"`
	// Count tables named IDPrefix1..IDPrefixCount are opened (or taken up)
	// by every node; default 4, prefix "bj-".
	Count    int    `yaml:"count"`
	IDPrefix string `yaml:"id_prefix"`
	// The game of newly created tables (a stored table keeps its own).
	Decks         int             `yaml:"decks"`
	MinBet        buzzer.Amount   `yaml:"min_bet"`
	MaxBet        buzzer.Amount   `yaml:"max_bet"`
	Currency      buzzer.Currency `yaml:"currency"`
	BettingWindow time.Duration   `yaml:"betting_window"`
	ActionTimeout time.Duration   `yaml:"action_timeout"`
	// Retain is how many recent events each table keeps; default 10000.
	// Events the audit capture has not read yet are kept beyond it, up to
	// MaxRetain (default 10 × Retain); past that the store trims anyway and
	// the capture reports the gap (events_trimmed).
	Retain    int `yaml:"retain"`
	MaxRetain int `yaml:"max_retain"`
}

// DefaultTablesConfig is four in-memory tables of table.DefaultTableConfig.
func DefaultTablesConfig() TablesConfig {
	tc := table.DefaultTableConfig()
	return TablesConfig{
		LeaseTTL: 10 * time.Second, TickInterval: 500 * time.Millisecond, ClaimInterval: time.Second,
		Count: 4, IDPrefix: "bj-", Decks: tc.Rules.Decks, MinBet: tc.MinBet, MaxBet: tc.MaxBet, Currency: tc.Currency,
		BettingWindow: tc.BettingWindow, ActionTimeout: tc.ActionTimeout, Retain: 10000,
	}
}

// tableConfig is the game of the tables this config creates.
func (c TablesConfig) tableConfig() table.TableConfig {
	tc := table.DefaultTableConfig()
	tc.Rules.Decks, tc.MinBet, tc.MaxBet, tc.Currency = c.Decks, c.MinBet, c.MaxBet, c.Currency
	tc.BettingWindow, tc.ActionTimeout = c.BettingWindow, c.ActionTimeout
	return tc
}

// Validate names the bad field.
func (c TablesConfig) Validate() error {
	switch {
	case c.LeaseTTL < time.Second:
		return buzzer.Errorf(buzzer.EINVALID, "tables.lease_ttl must be at least 1s")
	case c.TickInterval <= 0 || c.TickInterval > c.LeaseTTL/4:
		return buzzer.Errorf(buzzer.EINVALID, "tables.tick_interval must be > 0 and at most a quarter of tables.lease_ttl (so a lease is renewed in time)")
	case c.ClaimInterval <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "tables.claim_interval must be > 0")
	case c.Count < 0 || c.Count > 100_000:
		return buzzer.Errorf(buzzer.EINVALID, "tables.count must be 0..100000")
	case c.Count > 0 && c.IDPrefix == "":
		return buzzer.Errorf(buzzer.EINVALID, "tables.id_prefix must be set")
	case c.Retain < 1:
		return buzzer.Errorf(buzzer.EINVALID, "tables.retain must be >= 1")
	case c.MaxRetain != 0 && c.MaxRetain < c.Retain:
		return buzzer.Errorf(buzzer.EINVALID, "tables.max_retain must be 0 (10 × retain) or >= tables.retain")
	case c.RedisURL != "" && !strings.HasPrefix(c.RedisURL, "redis://") && !strings.HasPrefix(c.RedisURL, "rediss://"):
		return buzzer.Errorf(buzzer.EINVALID, "tables.redis_url must be a redis:// or rediss:// URL")
	}
	if err := c.tableConfig().Validate(); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "tables: %s", buzzer.ErrorMessage(err))
	}
	return nil
}

// tableNodeName is a lease owner name unique to this process.
func tableNodeName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "node"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// tableMetrics are the tables' Prometheus series.
type tableMetrics struct {
	rounds    prometheus.Counter
	takeovers prometheus.Counter
	writes    *prometheus.HistogramVec
}

func newTableMetrics(reg prometheus.Registerer, svc func() *table.Service) (*tableMetrics, error) {
	m := &tableMetrics{
		rounds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_table_rounds_total", Help: "Rounds settled by the tables this node held.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_table_lease_takeovers_total", Help: "Existing tables this node took up after another node's lease lapsed or was released.",
		}),
		writes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "buzzer_table_store_write_duration_seconds", Help: "Time of one fenced table state write, by result.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}, []string{"result"}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "buzzer_table_active_tables", Help: "Tables whose lease this node holds.",
	}, func() float64 {
		if s := svc(); s != nil {
			return float64(len(s.Owned()))
		}
		return 0
	})
	for _, c := range []prometheus.Collector{m.rounds, m.takeovers, m.writes, active} {
		if err := reg.Register(c); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "register table metrics")
		}
	}
	return m, nil
}

// tableMeteredStore times writes and counts settled rounds from the events
// every write carries.
type tableMeteredStore struct {
	table.Store
	m *tableMetrics
}

func (s tableMeteredStore) Write(ctx context.Context, w table.Write) (int64, error) {
	start := time.Now()
	v, err := s.Store.Write(ctx, w)
	result := "ok"
	if err != nil {
		result = buzzer.ErrorCode(err)
		if r := buzzer.ErrorReason(err); r != "" {
			result = r
		}
	}
	s.m.writes.WithLabelValues(result).Observe(time.Since(start).Seconds())
	if err == nil {
		for _, e := range w.Events {
			if e.Kind == table.EventSettled {
				s.m.rounds.Inc()
			}
		}
	}
	return v, err
}

// startTables builds the table service of a node: the store (Redis when
// tables.redis_url is set, else memory), shoes from the node's RNG service,
// money through w. It opens the configured tables (those another live node
// holds are left to it) and runs two loops until the node closes: ticking
// the held tables, and taking up configured tables whose lease is free or
// lapsed — which is how a table moves here when its node dies. At close the
// loops stop and the held leases are released, so another node takes the
// tables at once.
func startTables(ctx context.Context, n *node, w table.Wallet) (*table.Service, error) {
	cfg := n.cfg.Tables
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if w == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "tables need a wallet")
	}
	if cfg.Node == "" {
		cfg.Node = tableNodeName()
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = "buzzer:" + n.cfg.Jurisdiction + ":"
	}
	var svc *table.Service
	m, err := newTableMetrics(n.reg, func() *table.Service { return svc })
	if err != nil {
		return nil, err
	}
	var store table.Store
	if cfg.RedisURL != "" {
		opts, err := goredis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "tables.redis_url: %v", err)
		}
		if opts.PoolSize == 0 {
			// Every held table's writes, renewals and reads share the pool;
			// go-redis's default (10 per CPU) queues them behind each other
			// at a thousand tables. A pool_size in the URL wins.
			opts.PoolSize = 256
		}
		c := goredis.NewClient(opts)
		n.onClose(func() { _ = c.Close() })
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = c.Ping(pctx).Err()
		cancel()
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot reach the tables' Redis at %s", maskValue(cfg.RedisURL))
		}
		n.http.AddReadyCheck("tables redis", func(ctx context.Context) error { return c.Ping(ctx).Err() })
		store = redis.NewTableStore(c, buzzer.SystemClock{}, redis.TableStoreConfig{Prefix: cfg.KeyPrefix, Retain: cfg.Retain, MaxRetain: cfg.MaxRetain})
	} else {
		store = inmem.NewTableStore(buzzer.SystemClock{}, inmem.TableStoreConfig{Retain: cfg.Retain, MaxRetain: cfg.MaxRetain})
	}
	shuffler, err := table.NewRNGShuffler(n.rng, "table:"+cfg.Node)
	if err != nil {
		return nil, err
	}
	// The live feed reads snapshots and logs from the store (any node can
	// serve them) and is fed every committed event by the service.
	feed, err := tablefeed.New(table.NewReader(store, 0), tablefeed.Config{Verifier: n.player, Jurisdiction: n.cfg.Jurisdiction, Logger: n.log, Registry: n.reg})
	if err != nil {
		return nil, err
	}
	svc, err = table.NewService(table.Config{Node: cfg.Node, LeaseTTL: cfg.LeaseTTL}, table.Deps{
		Store: tableMeteredStore{Store: store, m: m}, Wallet: w, Shuffler: shuffler, Clock: buzzer.SystemClock{}, Publisher: feed,
	})
	if err != nil {
		return nil, err
	}
	ids := make([]string, cfg.Count)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s%d", cfg.IDPrefix, i+1)
	}
	capture, err := newTableCapture(n, store, ids)
	if err != nil {
		return nil, err
	}
	tc := cfg.tableConfig()
	claimer := &tableClaimer{svc: svc, ids: ids, tc: tc, log: n.log, m: m}
	if err := claimer.claim(ctx, true); err != nil {
		return nil, err
	}
	n.log.Info("tables open", "node", cfg.Node, "held", len(svc.Owned()), "configured", len(ids), "redis", cfg.RedisURL != "")

	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(4)
	go func() {
		defer wg.Done()
		_ = capture.Run(runCtx)
	}()
	go func() {
		defer wg.Done()
		if err := feed.Run(runCtx); err != nil {
			n.log.Error("table feed stopped", "err", err)
		}
	}()
	// Subscribers follow a table on the channel "table:<id>" with a player
	// token; see package tablefeed.
	st := newStreams()
	n.http.Player("GET /v1/stream/tables", httpapi.Public, st.handler(feed.WebsocketHandler()))
	go func() {
		defer wg.Done()
		svc.Run(runCtx, cfg.TickInterval)
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(cfg.ClaimInterval)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				_ = claimer.claim(runCtx, false)
			}
		}
	}()
	n.onClose(func() {
		st.cancel()
		stop()
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, id := range svc.Owned() {
			if err := svc.Close(rctx, id); err != nil {
				n.log.Warn("table lease not released; it lapses by itself", "table", id, "err", err)
			}
		}
		// A last pass puts the final events into the outbox while the relay
		// still runs (it closes after the tables).
		if _, err := capture.CaptureOnce(rctx); err != nil {
			n.log.Warn("audit: last table capture failed; the next run captures the rest if the table store kept it", "err", err)
		}
	})
	return svc, nil
}

// newTableCapture captures the events of the configured tables from store
// into the node's audit outbox (docs/audit.md "Table rounds"; on SQLite the
// table-audit database's, see openTableAudit), setting each table's trim
// floor as it goes.
func newTableCapture(n *node, store table.Store, ids []string) (*audit.TableCapture, error) {
	var inTx audit.OutboxTx
	switch {
	case n.store.pg != nil:
		inTx = func(ctx context.Context, fn func(audit.Outbox) error) error {
			return n.store.pg.InTx(ctx, func(tx pgx.Tx) error { return fn(postgres.NewOutbox(tx)) })
		}
	case n.store.tableAudit != nil:
		db := n.store.tableAudit
		inTx = func(ctx context.Context, fn func(audit.Outbox) error) error {
			return db.InTx(ctx, func(tx *sql.Tx) error { return fn(db.Outbox(tx)) })
		}
	default:
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "table capture needs the node's SQL store")
	}
	return audit.NewTableCapture(audit.TableCaptureConfig{Jurisdiction: n.cfg.Jurisdiction, Tables: func() []string { return ids }},
		store, inTx, n.reg, n.log)
}

// tableClaimer opens the configured tables this node does not hold.
type tableClaimer struct {
	svc *table.Service
	ids []string
	tc  table.TableConfig
	log *slog.Logger
	m   *tableMetrics
}

// claim tries every configured table not held here. A table held by a live
// lease elsewhere is skipped; at start-up (first) any other failure is
// returned, later it is logged and retried on the next pass.
func (c *tableClaimer) claim(ctx context.Context, first bool) error {
	held := map[string]bool{}
	for _, id := range c.svc.Owned() {
		held[id] = true
	}
	for _, id := range c.ids {
		if held[id] || ctx.Err() != nil {
			continue
		}
		err := c.svc.Open(ctx, id, c.tc)
		switch {
		case err == nil:
			// A table that has events was played before: another node (or
			// this one's previous run) held it.
			if v, err := c.svc.Snapshot(ctx, id); err == nil && v.Seq > 0 {
				c.m.takeovers.Inc()
				c.log.Info("took up table", "table", id, "seq", v.Seq, "round", v.Round)
			}
		case buzzer.ErrorReason(err) == table.ReasonLeaseHeld:
		case first:
			return err
		default:
			c.log.Warn("cannot take up table", "table", id, "err", err)
		}
	}
	return nil
}

func tableCommands() map[string]command {
	return map[string]command{
		"bench tables": {"play live tables over HTTP with basic-strategy bots; print action throughput and latency", runBenchTables},
	}
}

// tablesBenchResult is the JSON `buzzer bench tables` prints. Latencies are
// of the decision requests (POST /v1/tables/{id}/actions) only.
type tablesBenchResult struct {
	ActionsPerS     float64 `json:"actions_per_s"`
	P50ms           float64 `json:"p50_ms"`
	P95ms           float64 `json:"p95_ms"`
	P99ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	Actions         int64   `json:"actions"`
	Rounds          int64   `json:"rounds"`
	Conflicts       int64   `json:"conflicts"`
	BetResends      int64   `json:"bet_resends,omitempty"`
	Errors          int64   `json:"errors"`
	Tables          int     `json:"tables"`
	PlayersPerTable int     `json:"players_per_table"`
	ThinkMs         float64 `json:"think_ms"`
	WarmupS         float64 `json:"warmup_s"`
	DurationS       float64 `json:"duration_s"` // measured, after the warm-up
	FirstError      string  `json:"first_error,omitempty"`
	// AuditBacklog: captured records not yet relayed to the audit stream
	// when the run ended (with --admin).
	AuditBacklog *int64 `json:"audit_backlog_records,omitempty"`
}

// tableBot plays one table's seats.
type tableBot struct {
	base   string
	hc     *http.Client
	id     string
	tokens map[int]string // seat -> token
	view   table.View
	lat    []time.Duration
	rounds int64
	conf   int64
	n      int64
	// think is the players' decision time (0: act at once). With it each
	// decision waits a random 0.5–1.5 × think after the bot sees it due,
	// and the seats bet at once, each after a random 0–1 × think, as
	// players at one table do during the betting window.
	think   time.Duration
	rnd     *mrand.Rand
	resends int64 // bets sent again after a 409 (think mode)
	// from is when measuring starts (after the warm-up): latencies of
	// requests sent before it are not kept.
	from time.Time
}

// record keeps the latency of a request sent at start, unless it was sent
// during the warm-up.
func (b *tableBot) record(start time.Time, lat time.Duration) {
	if !start.Before(b.from) {
		b.lat = append(b.lat, lat)
	}
}

func (b *tableBot) get(ctx context.Context) error {
	code, body, err := call(ctx, b.hc, http.MethodGet, b.base+"/v1/tables/"+b.id, b.anyToken(), "", nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("GET /v1/tables/%s: %d %v %.200s", b.id, code, err, body)
	}
	return b.setView(body)
}

// await reads the table once it has moved past seq, as a player's app
// that is told of each change would (GET ?after=&wait=: the server answers
// when the table changes, or after the wait with the table as it is). An
// answer that comes back at once unchanged (the table is held by another
// node, which answers without waiting) is followed by a short pause, so
// the bot never spins.
func (b *tableBot) await(ctx context.Context, seq int64) error {
	start := time.Now()
	url := fmt.Sprintf("%s/v1/tables/%s?after=%d&wait=2s", b.base, b.id, seq)
	code, body, err := call(ctx, b.hc, http.MethodGet, url, b.anyToken(), "", nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("GET /v1/tables/%s?after=%d: %d %v %.200s", b.id, seq, code, err, body)
	}
	if err := b.setView(body); err != nil {
		return err
	}
	if b.view.Seq <= seq && time.Since(start) < 50*time.Millisecond {
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

func (b *tableBot) anyToken() string {
	for _, t := range b.tokens {
		return t
	}
	return ""
}

func (b *tableBot) setView(body []byte) error {
	var v table.View
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("decode table view: %w", err)
	}
	if v.Round > b.view.Round && b.view.Round > 0 {
		b.rounds += v.Round - b.view.Round
	}
	b.view = v
	return nil
}

// step makes one decision if one of the bot's seats has one to make, else
// waits a little for the table to move and reads it again.
func (b *tableBot) step(ctx context.Context) error {
	v := b.view
	seat, action, amount := 0, table.NoAction, buzzer.Amount(0)
	switch {
	case v.Turn != nil:
		if _, mine := b.tokens[v.Turn.Seat]; mine {
			seat, action = v.Turn.Seat, table.NoInsurance
			if v.Turn.Phase != table.TableInsurance {
				var legal table.Actions
				for _, a := range v.Turn.Actions {
					legal |= 1 << a
				}
				var cards []table.Card
				for _, s := range v.Seats {
					if s.Seat == seat && v.Turn.Hand < len(s.Hands) {
						cards = s.Hands[v.Turn.Hand].Cards
					}
				}
				action = table.BasicStrategy(table.DefaultRules(), legal, cards, v.Dealer[0])
			}
		}
	case (v.Phase == table.TableBetting || v.Phase == table.TableSettled) && b.think > 0:
		return b.betAll(ctx)
	case v.Phase == table.TableBetting || v.Phase == table.TableSettled:
		for _, s := range v.Seats {
			if _, mine := b.tokens[s.Seat]; mine && s.Bet == 0 && !s.Leaving && len(s.Hands) == 0 {
				seat, action, amount = s.Seat, table.PlaceBet, 200
				break
			}
		}
	}
	if action == table.NoAction {
		// Nothing to decide: the betting window is open with every bot's
		// bet in, or another seat or the dealer is due.
		return b.await(ctx, v.Seq)
	}
	if b.think > 0 {
		time.Sleep(b.think/2 + time.Duration(b.rnd.Int64N(int64(b.think))))
	}
	b.n++
	body := fmt.Sprintf(`{"round":%d,"seq":%d,"action":%q,"amount":%d,"seat":%d}`, v.Round, v.Seq, action, amount, seat)
	start := time.Now()
	code, resp, err := call(ctx, b.hc, http.MethodPost, b.base+"/v1/tables/"+b.id+"/actions", b.tokens[seat], fmt.Sprintf("bench-%s-%d-%d", b.id, seat, b.n), []byte(body))
	b.record(start, time.Since(start))
	switch {
	case err != nil:
		return err
	case code == http.StatusOK:
		return b.setView(resp)
	case code == http.StatusConflict:
		b.conf++
		var p struct {
			Table *table.View `json:"table"`
		}
		if json.Unmarshal(resp, &p) == nil && p.Table != nil {
			b.view = *p.Table
			return nil
		}
		return b.get(ctx)
	default:
		time.Sleep(50 * time.Millisecond)
		if gerr := b.get(ctx); gerr != nil {
			return gerr
		}
		return fmt.Errorf("POST actions on %s: %d %.200s", b.id, code, resp)
	}
}

// betAll bets for every seat of the bot that has not bet this round, all at
// once, each after its own think time, then reads the table again. A bet
// names the round and the sequence number of the newest view the bot has;
// when another seat's bet moved the table on first, the 409 carries the
// new view and the seat sends its bet again at once, as a player's app
// would. A bet's latency runs from its first send to its answer, resends
// included.
func (b *tableBot) betAll(ctx context.Context) error {
	v := b.view
	var seats []int
	for _, s := range v.Seats {
		if _, mine := b.tokens[s.Seat]; mine && s.Bet == 0 && !s.Leaving && len(s.Hands) == 0 {
			seats = append(seats, s.Seat)
		}
	}
	if len(seats) == 0 {
		// Every bet is in: wait for the deal.
		return b.await(ctx, v.Seq)
	}
	type res struct {
		start time.Time
		lat   time.Duration
		code  int
		body  []byte
		err   error
	}
	out := make([]res, len(seats))
	delays := make([]time.Duration, len(seats))
	keys := make([]string, len(seats))
	for i, seat := range seats {
		delays[i] = time.Duration(b.rnd.Int64N(int64(b.think)))
		b.n++
		keys[i] = fmt.Sprintf("bench-%s-%d-%d", b.id, seat, b.n)
	}
	var mu sync.Mutex // guards newest and resends
	newest, resends := v, int64(0)
	adopt := func(body []byte) (table.View, bool) {
		var p struct {
			Table *table.View `json:"table"`
		}
		if json.Unmarshal(body, &p) != nil || p.Table == nil {
			return table.View{}, false
		}
		mu.Lock()
		defer mu.Unlock()
		if p.Table.Seq > newest.Seq {
			newest = *p.Table
		}
		return newest, true
	}
	var wg sync.WaitGroup
	for i, seat := range seats {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delays[i])
			mu.Lock()
			cur := newest
			mu.Unlock()
			start := time.Now()
			for attempt := 0; ; attempt++ {
				body := fmt.Sprintf(`{"round":%d,"seq":%d,"action":%q,"amount":%d,"seat":%d}`, cur.Round, cur.Seq, table.PlaceBet, 200, seat)
				code, resp, err := call(ctx, b.hc, http.MethodPost, b.base+"/v1/tables/"+b.id+"/actions", b.tokens[seat], keys[i], []byte(body))
				out[i] = res{start: start, lat: time.Since(start), code: code, body: resp, err: err}
				if err != nil {
					return
				}
				if code == http.StatusOK {
					adopt(resp)
					return
				}
				if code != http.StatusConflict || attempt == 10 {
					return
				}
				nv, ok := adopt(resp)
				if !ok || nv.Round != cur.Round || nv.Phase != table.TableBetting {
					return // the round moved on or the deal came: sit it out
				}
				// A new payload under the same key would be refused (422):
				// the resend is a new request.
				mu.Lock()
				b.n++
				keys[i] = fmt.Sprintf("bench-%s-%d-%d", b.id, seat, b.n)
				resends++
				mu.Unlock()
				cur = nv
			}
		}()
	}
	wg.Wait()
	b.resends += resends
	var first error
	for _, r := range out {
		b.record(r.start, r.lat)
		switch {
		case r.err != nil:
			first = cmp.Or(first, r.err)
		case r.code == http.StatusOK:
		case r.code == http.StatusConflict:
			// The window closed before this seat's bet: the seat sits this
			// round out, as a slow player would.
			b.conf++
		default:
			first = cmp.Or(first, fmt.Errorf("POST bet on %s: %d %.200s", b.id, r.code, r.body))
		}
	}
	if gerr := b.get(ctx); gerr != nil {
		return cmp.Or(first, gerr)
	}
	return first
}

func runBenchTables(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench tables", flag.ContinueOnError)
	target := fs.String("target", "http://127.0.0.1:8080", "player listener of the Buzzer to load")
	dataDir := fs.String("data-dir", "./data", "data dir of the dev-mode serve (its keys mint the players' tokens)")
	tables := fs.Int("tables", 4, "tables to play (the first N the node lists)")
	perTable := fs.Int("players-per-table", 5, "bots seated at each table (1..7)")
	duration := fs.Duration("duration", 30*time.Second, "how long to play")
	jurisdiction := fs.String("jurisdiction", "NJ", "jurisdiction in the players' tokens")
	currency := fs.String("currency", "USD", "currency the bots are funded in")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	admin := fs.String("admin", "", "admin listener of --target: its /metrics gives the audit backlog left at the end (optional)")
	warmup := fs.Duration("warmup", 0, "play this long first without measuring (seating is never measured): lets the tables' rounds fall out of step, as independent tables are")
	think := fs.Duration("think", 0, "players' decision time: each decision waits a random 0.5–1.5 × think, and a table's seats bet at once, each after a random 0–1 × think (0: every bot acts the moment it can, one seat after another)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *think < 0 || *think > time.Minute:
		return buzzer.Errorf(buzzer.EINVALID, "--think must be 0..1m")
	case *tables < 1 || *tables > 100_000:
		return buzzer.Errorf(buzzer.EINVALID, "--tables must be 1..100000")
	case *perTable < 1 || *perTable > 7:
		return buzzer.Errorf(buzzer.EINVALID, "--players-per-table must be 1..7")
	case *duration <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "--duration must be > 0")
	case *warmup < 0 || *warmup > 10*time.Minute:
		return buzzer.Errorf(buzzer.EINVALID, "--warmup must be 0..10m")
	case !strings.HasPrefix(*target, "http://") && !strings.HasPrefix(*target, "https://"):
		return buzzer.Errorf(buzzer.EINVALID, "--target must be an http:// or https:// URL, got %q", *target)
	}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	base := strings.TrimRight(*target, "/")
	// Each bot's app locates itself once per session (devGeoClient); its
	// seat, stake and actions ride on the session's cached decision.
	hc, err := devGeoClient(*dataDir, *jurisdiction, benchClient(min(*tables, 2000)))
	if err != nil {
		return err
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	lister, err := keys.PlayerToken("bench-tables-"+run, *jurisdiction, *duration+10*time.Minute, time.Now())
	if err != nil {
		return err
	}
	code, body, err := call(ctx, hc, http.MethodGet, base+"/v1/tables", lister, "", nil)
	if err != nil || code != http.StatusOK {
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "GET /v1/tables: %d %v %.200s", code, err, body)
	}
	var list struct{ Tables []table.View }
	if err := json.Unmarshal(body, &list); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "decode the table list")
	}
	if len(list.Tables) < *tables {
		return buzzer.Errorf(buzzer.EINVALID, "--tables %d but the node serves %d (raise tables.count)", *tables, len(list.Tables))
	}

	// Seat and fund the bots: each gets its own player, a deposit and a seat.
	fmt.Fprintf(stderr, "bench: seating %d bots at %d tables\n", *tables**perTable, *tables)
	bots := make([]*tableBot, *tables)
	var setupErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range bots {
		b := &tableBot{base: base, hc: hc, id: list.Tables[i].Table, tokens: map[int]string{}, think: *think, rnd: mrand.New(mrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
		bots[i] = b
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := b.seat(ctx, keys, run, *perTable, *jurisdiction, *currency, *duration); err != nil {
				setupErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if e, ok := setupErr.Load().(error); ok {
		return buzzer.Wrap(e, buzzer.EUNAVAILABLE, "bench setup failed: %v", e)
	}

	fmt.Fprintf(stderr, "bench: playing %d tables × %d bots for %s (measured after a %s warm-up)\n", *tables, *perTable, *duration, *warmup)
	from := time.Now().Add(*warmup)
	for _, b := range bots {
		b.from = from
	}
	res := loadgen.Run(ctx, *tables, *warmup+*duration, stderr, func(ctx context.Context, client int) error {
		return bots[client].step(ctx)
	})
	// The bots leave (a seat with a bet leaves when its round ends).
	for _, b := range bots {
		for seat, tok := range b.tokens {
			_, _, _ = call(context.Background(), hc, http.MethodDelete, fmt.Sprintf("%s/v1/tables/%s/seats/%d", base, b.id, seat), tok, "", nil)
		}
	}
	var all []time.Duration
	measured := res.Elapsed - *warmup
	out := tablesBenchResult{Tables: *tables, PlayersPerTable: *perTable, ThinkMs: float64(*think) / float64(time.Millisecond),
		WarmupS: warmup.Seconds(), DurationS: measured.Seconds(), FirstError: res.FirstErr, Errors: res.Errors}
	for _, b := range bots {
		all = append(all, b.lat...)
		out.Rounds += b.rounds
		out.Conflicts += b.conf
		out.BetResends += b.resends
	}
	out.Actions = int64(len(all))
	out.ActionsPerS = float64(len(all)) / measured.Seconds()
	out.P50ms, out.P95ms, out.P99ms, out.MaxMs = loadgen.Percentile(all, 50), loadgen.Percentile(all, 95), loadgen.Percentile(all, 99), loadgen.Percentile(all, 100)
	out.AuditBacklog = auditBacklog(ctx, *admin)
	if *jsonOut {
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	if *think > 0 {
		fmt.Fprintf(stdout, "think %s  ", *think)
	}
	fmt.Fprintf(stdout, "actions/s %.0f  p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  rounds %d  conflicts %d  errors %d\n",
		out.ActionsPerS, out.P50ms, out.P95ms, out.P99ms, out.MaxMs, out.Rounds, out.Conflicts, out.Errors)
	return nil
}

// seat funds perTable fresh players and sits them in free seats.
func (b *tableBot) seat(ctx context.Context, keys *auth.DevKeys, run string, perTable int, jurisdiction, currency string, d time.Duration) error {
	seat := 1
	for p := 0; p < perTable; p++ {
		tok, err := keys.PlayerToken(fmt.Sprintf("bench-%s-%s-%d", run, b.id, p), jurisdiction, d+10*time.Minute, time.Now())
		if err != nil {
			return err
		}
		body := fmt.Sprintf(`{"amount":%d,"currency":%q}`, 9_000_000, currency)
		code, resp, err := call(ctx, b.hc, http.MethodPost, b.base+"/v1/wallet/deposits", tok, fmt.Sprintf("bench-fund-%s-%s-%d", run, b.id, p), []byte(body))
		if err != nil || (code != http.StatusCreated && code != http.StatusOK) {
			return fmt.Errorf("deposit: %d %v %.200s", code, err, resp)
		}
		for ; ; seat++ {
			if seat > 7 {
				return fmt.Errorf("table %s has no free seat for bot %d", b.id, p+1)
			}
			code, resp, err = call(ctx, b.hc, http.MethodPost, b.base+"/v1/tables/"+b.id+"/seats", tok, "", []byte(fmt.Sprintf(`{"seat":%d}`, seat)))
			if err != nil {
				return err
			}
			if code == http.StatusCreated {
				b.tokens[seat] = tok
				seat++
				break
			}
			if code != http.StatusConflict {
				return fmt.Errorf("sit at %s: %d %.200s", b.id, code, resp)
			}
		}
	}
	return b.get(ctx)
}
