package fanout

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/centrifugal/protocol"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// Snapshotter gives an event's current state; *odds.Engine implements it.
// The fan-out calls it with an event's lock held, so it must never call
// back into the fan-out.
type Snapshotter interface {
	Snapshot(eventID string) (odds.Snapshot, error)
	Events() []odds.EventInfo
}

var _ Snapshotter = (*odds.Engine)(nil)

// Config configures the fan-out. Zero fields take defaults.
type Config struct {
	// Window is how many publications one subscription may have queued in
	// its connection before further deltas are conflated (default 16).
	Window int
	// History is how many recent deltas per event are kept for resuming
	// subscribers (default 512); further behind, they get a fresh snapshot.
	History int
	// Epoch is the epoch of the Snapshotter's engine when it runs in this
	// process (the bus publisher's); events loaded from it carry it, so a
	// subscriber can resume before the first delta arrives. Empty: learned
	// from the bus.
	Epoch string
	// RetainEnded is how long an ended event without subscribers is kept
	// (default 10m).
	RetainEnded time.Duration
	// ClientQueueMaxSize bounds a connection's queued bytes (default 1 MiB);
	// beyond it centrifuge disconnects the client with code 3008 (slow). With
	// conflation it is a last resort that a working client never meets.
	ClientQueueMaxSize int
	// WriteDelay, if set, lets each connection's writer collect messages
	// this long and send them in one frame: fewer system calls on both ends
	// for at most this much added latency (0: write at once).
	WriteDelay time.Duration
	// MaxLag bounds how far the bus consumer may fall behind (the fan-out's
	// clock minus a delta's At, the engine's time of the change) before it
	// stops delivering stale deltas: it skips to the bus's end and sends
	// every event whose state moved meanwhile a fresh snapshot flagged
	// continuity_lost (reason fanout_behind). Default 500ms; negative:
	// never skip. It assumes the engine's and the fan-out's clocks agree
	// (one process in serve).
	MaxLag time.Duration
	// Coalesce is each event's coalescing window: an event's first delta
	// after a quiet spell opens it, every delta applied while it is open is
	// merged (the latest per market, and the event's), and when it closes
	// the event publishes once — a plain delta if it held one, else a
	// conflated update (con) — encoded once for all its subscribers. An
	// event therefore publishes at most 1/Coalesce updates/s (40/s at the
	// default 25ms) and a delta waits at most Coalesce. Negative: off
	// (every delta is published as it is applied).
	Coalesce time.Duration
	Clock    buzzer.Clock
	Logger   *slog.Logger
	// Registry, if set, receives the fan-out's and centrifuge's metrics
	// (centrifuge's under the buzzer_centrifuge namespace); otherwise they
	// go to a private registry, never the global one.
	Registry *prometheus.Registry
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = 16
	}
	if c.History <= 0 {
		c.History = 512
	}
	if c.RetainEnded <= 0 {
		c.RetainEnded = 10 * time.Minute
	}
	if c.ClientQueueMaxSize <= 0 {
		c.ClientQueueMaxSize = 1 << 20
	}
	if c.Coalesce == 0 {
		c.Coalesce = 25 * time.Millisecond
	}
	if c.MaxLag == 0 {
		c.MaxLag = 500 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = buzzer.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server is the fan-out: a centrifuge node, the per-event state it serves
// snapshots and resumes from, and every subscription's delivery state.
//
// Lock order: Server.mu, then an event's mu, then its offerMu, then the
// lobby's mu, then a subscription's mu (each may be skipped; none is taken in reverse). The
// Snapshotter's own lock may be taken under an event's mu.
type Server struct {
	cfg   Config
	node  *centrifuge.Node
	snaps Snapshotter

	mu      sync.Mutex
	events  map[string]*event
	clients map[string]map[string]*sub // client id -> channel -> subscription

	lobby lobby

	loaded     chan struct{} // closed once Consume has loaded every event
	loadedOnce sync.Once

	flushMu    sync.Mutex
	flushQueue []*sub
	flushKick  chan struct{}

	subscribers                                       atomic.Int64
	conflations, resyncs, published, skips, coalesced atomic.Int64
	m                                                 metrics
}

type metrics struct {
	latency     prometheus.Histogram
	conflated   prometheus.Counter
	resyncs     *prometheus.CounterVec
	deliveries  prometheus.Counter
	skips       prometheus.Counter
	coalesced   prometheus.Counter
	subscribers prometheus.GaugeFunc
}

// event is the fan-out's copy of one event: the state at the last delta it
// delivered and the recent deltas a resuming subscriber may need.
type event struct {
	id      string
	mu      sync.Mutex
	seeded  bool
	epoch   string
	snap    odds.Snapshot
	history []odds.Delta // consecutive, ending at snap.Seq
	subs    map[*sub]struct{}
	endedAt time.Time

	// The coalescing window (Config.Coalesce): deltas applied to snap but
	// not yet offered, the latest per conflation key, after batchFrom.
	batch     []odds.Delta
	batchIdx  map[string]int
	batchFrom uint64
	armed     bool // a flush is scheduled
	// offerMu orders what is offered to subs outside mu: a window's flush
	// takes it under mu, then releases mu and offers, so the bus consumer
	// never waits for an event's subscribers; a reseed takes it too.
	offerMu sync.Mutex
}

type lobby struct {
	mu     sync.Mutex
	events map[string]*LobbyEvent
	subs   map[*sub]struct{}
}

// New builds the fan-out and its centrifuge node; Run starts it.
func New(snaps Snapshotter, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	node, err := centrifuge.New(centrifuge.Config{
		Name:               "buzzer-odds",
		LogLevel:           centrifuge.LogLevelError,
		LogHandler:         func(e centrifuge.LogEntry) { cfg.Logger.Error("centrifuge: "+e.Message, "fields", e.Fields) },
		ClientQueueMaxSize: cfg.ClientQueueMaxSize,
		Metrics: centrifuge.MetricsConfig{
			MetricsNamespace:   "buzzer_centrifuge",
			RegistererGatherer: reg,
			// Also what makes centrifuge name the channel of each write, which
			// the window accounting below needs.
			GetChannelNamespaceLabel:  channelNamespace,
			ChannelNamespaceCacheSize: -1,
		},
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "cannot build the fan-out node")
	}
	s := &Server{
		cfg: cfg, node: node, snaps: snaps,
		events:    map[string]*event{},
		clients:   map[string]map[string]*sub{},
		lobby:     lobby{events: map[string]*LobbyEvent{}, subs: map[*sub]struct{}{}},
		flushKick: make(chan struct{}, 1),
		loaded:    make(chan struct{}),
	}
	s.m = metrics{
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "buzzer_odds_fanout_latency_seconds",
			Help:    "Provider timestamp to fan-out of a delta.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		conflated: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_odds_fanout_conflations_total", Help: "Conflated updates sent to subscribers that fell behind."}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buzzer_odds_fanout_resyncs_total", Help: "Events rebuilt from a snapshot, by reason."}, []string{"reason"}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_odds_fanout_publications_total", Help: "Publications written to subscribers."}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_odds_fanout_coalesced_total", Help: "Conflated updates an event published for a coalescing window of several deltas (once per event, not per subscriber)."}),
		skips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_odds_fanout_skips_total", Help: "Times the bus consumer fell more than max_lag behind and skipped to the bus's end."}),
		subscribers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "buzzer_odds_fanout_subscribers", Help: "Current subscriptions (lobby and events)."},
			func() float64 { return float64(s.subscribers.Load()) }),
	}
	for _, c := range []prometheus.Collector{s.m.latency, s.m.conflated, s.m.resyncs, s.m.deliveries, s.m.skips, s.m.coalesced, s.m.subscribers} {
		if err := reg.Register(c); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot register fan-out metrics")
		}
	}

	// Odds are public: every connection is anonymous and may only subscribe.
	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		// The client's context carries its subscriptions for credit, which
		// runs once per publication written, on every connection's writer.
		reply := centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{},
			Context: context.WithValue(ctx, clientSubsKey{}, &clientSubs{})}
		if cfg.WriteDelay > 0 {
			// Everything collected goes in one frame: the window bounds it.
			reply.WriteDelay, reply.WriteWithTimer, reply.MaxMessagesInFrame = cfg.WriteDelay, true, -1
		}
		return reply, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) { s.subscribe(c, e, cb) })
		c.OnUnsubscribe(func(e centrifuge.UnsubscribeEvent) { s.unsubscribe(c, e.Channel) })
		c.OnDisconnect(func(centrifuge.DisconnectEvent) { s.disconnect(c) })
	})
	// A publication leaving a connection's queue returns one unit of that
	// subscription's window. This runs on the connection's writer with its
	// lock held, so the refill is handed to the flusher, never written here.
	node.OnTransportWrite(func(c *centrifuge.Client, e centrifuge.TransportWriteEvent) bool {
		if e.Channel != "" && e.FrameType == protocol.FrameTypePushPublication {
			s.credit(c, e.Channel)
		}
		return true
	})
	return s, nil
}

func channelNamespace(ch string) string {
	if ch == LobbyChannel {
		return "lobby"
	}
	if strings.HasPrefix(ch, EventChannelPrefix) {
		return "event"
	}
	return "other"
}

// Node is the centrifuge node (for its handlers' tests and metrics).
func (s *Server) Node() *centrifuge.Node { return s.node }

// Handlers for the player listener.
func (s *Server) WebsocketHandler() http.Handler {
	return centrifuge.NewWebsocketHandler(s.node, centrifuge.WebsocketConfig{})
}

// SSEHandler serves Server-Sent Events; clients send commands through the
// EmulationHandler.
func (s *Server) SSEHandler() http.Handler {
	return centrifuge.NewSSEHandler(s.node, centrifuge.SSEConfig{})
}

// HTTPStreamHandler serves HTTP-streaming.
func (s *Server) HTTPStreamHandler() http.Handler {
	return centrifuge.NewHTTPStreamHandler(s.node, centrifuge.HTTPStreamConfig{})
}

// EmulationHandler takes the commands of SSE and HTTP-streaming clients.
func (s *Server) EmulationHandler() http.Handler {
	return centrifuge.NewEmulationHandler(s.node, centrifuge.EmulationConfig{})
}

// Run starts the node and serves until ctx is done; then it disconnects every client and returns.
func (s *Server) Run(ctx context.Context) error {
	if err := s.node.Run(); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot start the fan-out node")
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.flusher(ctx) }()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-prune.C:
			s.prune()
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.node.Shutdown(sctx)
	wg.Wait()
	if err != nil && sctx.Err() == nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "fan-out shutdown")
	}
	return nil
}

// Consume feeds the fan-out from the bus until ctx is done. It reads the
// bus's tail first, then loads every event from the Snapshotter, then
// subscribes from that tail: what was appended before is in the snapshots,
// what comes after is delivered (and dropped where a snapshot has it).
//
// When a delta arrives more than MaxLag after the engine made it, the
// consumer is behind the bus: it drops the subscription and starts over
// from the bus's new end, so subscribers get fresh snapshots instead of
// ever staler deltas.
func (s *Server) Consume(ctx context.Context, bus odds.Bus) error {
	behind := ReasonUpstreamGap // a restarted consumer may have missed deltas
	for {
		tail, err := bus.Tail(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		for _, info := range s.snaps.Events() {
			ev := s.event(info.EventID)
			ev.mu.Lock()
			reason := ""
			if len(ev.subs) > 0 {
				reason = behind
			}
			s.seedLocked(ev, "", reason)
			ev.mu.Unlock()
		}
		s.loadedOnce.Do(func() { close(s.loaded) })
		err = bus.Subscribe(ctx, tail, func(m odds.BusMessage) error {
			if s.cfg.MaxLag > 0 && !m.Delta.At.IsZero() && s.cfg.Clock.Now().Sub(m.Delta.At) > s.cfg.MaxLag {
				return errBehind
			}
			s.Apply(m.Epoch, m.Delta)
			return nil
		})
		if !errors.Is(err, errBehind) {
			return err
		}
		s.skips.Add(1)
		s.m.skips.Inc()
		s.cfg.Logger.Warn("fan-out fell behind the bus; skipping to its end", "max_lag", s.cfg.MaxLag)
		behind = ReasonFanoutBehind
	}
}

// errBehind stops a bus subscription that fell more than MaxLag behind.
var errBehind = buzzer.Errorf(buzzer.EUNAVAILABLE, "fan-out behind the bus")

func (s *Server) event(id string) *event {
	s.mu.Lock()
	defer s.mu.Unlock()
	ev := s.events[id]
	if ev == nil {
		ev = &event{id: id, subs: map[*sub]struct{}{}}
		s.events[id] = ev
	}
	return ev
}

// seedLocked (re)loads ev from the Snapshotter and reports whether it holds
// a state. Subscribers are sent the new state, flagged, unless reason is "".
func (s *Server) seedLocked(ev *event, epoch, reason string) bool {
	snap, err := s.snaps.Snapshot(ev.id)
	if err != nil {
		if buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
			s.cfg.Logger.Warn("fan-out cannot load an event snapshot", "event", ev.id, "err", err)
		}
		return false
	}
	oldEpoch, oldSeq, wasSeeded := ev.epoch, ev.snap.Seq, ev.seeded
	ev.seeded, ev.snap, ev.history = true, snap, ev.history[:0]
	ev.batch = ev.batch[:0] // the snapshot has them
	clear(ev.batchIdx)
	switch {
	case epoch != "":
		ev.epoch = epoch
	case ev.epoch == "":
		ev.epoch = s.cfg.Epoch
	}
	if wasSeeded && oldEpoch == ev.epoch && oldSeq == snap.Seq {
		reason = "" // nothing changed: subscribers are not behind
	}
	if snap.Event.Ended && ev.endedAt.IsZero() {
		ev.endedAt = s.cfg.Clock.Now()
	}
	s.lobbyUpdate(snap.Event, snap.Seq, nil)
	if reason != "" {
		s.m.resyncs.WithLabelValues(reason).Inc()
		s.resyncs.Add(1)
		msg := s.snapshotMessage(ev, true, reason)
		ev.offerMu.Lock() // after any window being offered
		for sb := range ev.subs {
			sb.reset(msg, snap.Seq)
		}
		ev.offerMu.Unlock()
	}
	return true
}

func (s *Server) snapshotMessage(ev *event, lost bool, reason string) []byte {
	b, _ := json.Marshal(Message{Type: TypeSnapshot, EventID: ev.id, Epoch: ev.epoch, Seq: ev.snap.Seq,
		ContinuityLost: lost, Reason: reason, Snapshot: &ev.snap})
	return b
}

// Apply takes one delta from the backbone. Stale deltas are dropped; a gap,
// or a new engine epoch, rebuilds the event from the Snapshotter and tells
// its subscribers continuity was lost. It never waits for a subscriber.
func (s *Server) Apply(epoch string, d odds.Delta) {
	if !d.SourceTime.IsZero() {
		s.m.latency.Observe(s.cfg.Clock.Now().Sub(d.SourceTime).Seconds())
	}
	ev := s.event(d.EventID)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	switch {
	case !ev.seeded:
		if !s.seedLocked(ev, epoch, "") {
			return
		}
		if ev.snap.Seq >= d.Seq {
			return // the snapshot includes d
		}
	case ev.epoch == "":
		ev.epoch = epoch // seeded before any delta named the epoch
	case ev.epoch != epoch:
		s.seedLocked(ev, epoch, ReasonNewEpoch)
		return
	}
	applied, err := ev.snap.Apply(d)
	if err != nil {
		// A gap: the backbone lost deltas (a full publish queue), or this
		// node attached mid-stream. The engine's snapshot covers them.
		if s.seedLocked(ev, epoch, ReasonUpstreamGap) && ev.snap.Seq < d.Seq {
			ev.seeded = false // the Snapshotter is behind the bus; retry on the next delta
		}
		return
	}
	if !applied {
		return // a duplicate or a delta the snapshot already had
	}
	ev.history = append(ev.history, d)
	if len(ev.history) >= 2*s.cfg.History { // trim in bulk: between History and 2×History are held
		ev.history = append(ev.history[:0], ev.history[len(ev.history)-s.cfg.History:]...)
	}
	if d.Kind == odds.DeltaEvent && d.Event.Ended && ev.endedAt.IsZero() {
		ev.endedAt = s.cfg.Clock.Now()
	}
	if s.cfg.Coalesce > 0 {
		s.batchLocked(ev, d)
	} else {
		offerDelta(ev, d)
	}
	if d.Kind == odds.DeltaEvent {
		s.lobbyUpdate(*d.Event, d.Seq, &d)
	}
}

// offerDelta encodes d once and offers it to every subscriber of ev.
func offerDelta(ev *event, d odds.Delta) {
	data, _ := json.Marshal(Message{Type: TypeDelta, EventID: d.EventID, Seq: d.Seq, Delta: &d})
	for sb := range ev.subs {
		sb.offer(d, data)
	}
}

// batchLocked adds an applied delta to ev's coalescing window, opening it
// if it is closed.
func (s *Server) batchLocked(ev *event, d odds.Delta) {
	if len(ev.batch) == 0 {
		ev.batchFrom = d.Seq - 1
		if ev.batchIdx == nil {
			ev.batchIdx = map[string]int{}
		}
		if !ev.armed {
			ev.armed = true
			time.AfterFunc(s.cfg.Coalesce, func() { s.flushBatch(ev) })
		}
	}
	k := odds.ConflationKey(d)
	if i, ok := ev.batchIdx[k]; ok {
		ev.batch[i] = d
		return
	}
	ev.batchIdx[k] = len(ev.batch)
	ev.batch = append(ev.batch, d)
}

// flushBatch closes ev's coalescing window: one publication, encoded once,
// offered to every subscriber.
// It offers outside ev.mu (under ev.offerMu): a subscriber that joins
// meanwhile is not offered it, and its snapshot already has it.
func (s *Server) flushBatch(ev *event) {
	ev.mu.Lock()
	ev.armed = false
	if len(ev.batch) == 0 {
		ev.mu.Unlock()
		return // a snapshot replaced it
	}
	ds := append([]odds.Delta(nil), ev.batch...)
	ev.batch = ev.batch[:0]
	clear(ev.batchIdx)
	from := ev.batchFrom
	subs := make([]*sub, 0, len(ev.subs))
	for sb := range ev.subs {
		subs = append(subs, sb)
	}
	ev.offerMu.Lock()
	ev.mu.Unlock()
	defer ev.offerMu.Unlock()
	if len(ds) == 1 && ds[0].Seq == from+1 {
		d := ds[0]
		data, _ := json.Marshal(Message{Type: TypeDelta, EventID: d.EventID, Seq: d.Seq, Delta: &d})
		for _, sb := range subs {
			sb.offer(d, data)
		}
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i].Seq < ds[j].Seq })
	seq := ds[len(ds)-1].Seq
	data, _ := json.Marshal(Message{Type: TypeConflated, EventID: ev.id, Con: true, From: from, Seq: seq, Deltas: ds})
	s.coalesced.Add(1)
	s.m.coalesced.Inc()
	for _, sb := range subs {
		sb.offerBatch(from, seq, ds, data)
	}
}

// lobbyUpdate records an event's info at seq and, for a delta, offers it to
// lobby subscribers.
func (s *Server) lobbyUpdate(info odds.EventInfo, seq uint64, d *odds.Delta) {
	s.lobby.mu.Lock()
	defer s.lobby.mu.Unlock()
	cur := s.lobby.events[info.EventID]
	if cur != nil && cur.Seq >= seq {
		return
	}
	s.lobby.events[info.EventID] = &LobbyEvent{EventInfo: info, Seq: seq}
	var data []byte
	var ld odds.Delta
	if d != nil {
		ld = *d
	} else {
		// A rebuilt event: lobby subscribers get its info as an event delta
		// at the snapshot's sequence.
		ld = odds.Delta{EventID: info.EventID, Seq: seq, Kind: odds.DeltaEvent, Event: &info}
	}
	data, _ = json.Marshal(Message{Type: TypeDelta, EventID: info.EventID, Seq: seq, Delta: &ld})
	for sb := range s.lobby.subs {
		sb.offer(ld, data)
	}
}

func (s *Server) prune() {
	cutoff := s.cfg.Clock.Now().Add(-s.cfg.RetainEnded)
	s.mu.Lock()
	var gone []string
	for id, ev := range s.events {
		ev.mu.Lock()
		if !ev.endedAt.IsZero() && ev.endedAt.Before(cutoff) && len(ev.subs) == 0 {
			delete(s.events, id)
			gone = append(gone, id)
		}
		ev.mu.Unlock()
	}
	s.mu.Unlock()
	s.lobby.mu.Lock()
	for _, id := range gone {
		delete(s.lobby.events, id)
	}
	s.lobby.mu.Unlock()
}

// subscribe answers a subscribe command: the lobby, or an event with a
// snapshot or a resume. The subscription is registered at the sequence its
// reply describes, under the event's lock, so nothing is missed or repeated.
func (s *Server) subscribe(c *centrifuge.Client, e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
	if subsOf(c) == nil {
		// Every connection passes OnConnecting, which gives it one; without
		// it no write would return the subscription's window.
		cb(centrifuge.SubscribeReply{}, centrifuge.ErrorInternal)
		return
	}
	sb := &sub{srv: s, client: c, channel: e.Channel, idx: map[string]int{}}
	var reply []byte
	if e.Channel == LobbyChannel {
		sb.lobby = true
		s.lobby.mu.Lock()
		evs := make([]LobbyEvent, 0, len(s.lobby.events))
		for _, le := range s.lobby.events {
			if !le.Ended {
				evs = append(evs, *le)
			}
		}
		sort.Slice(evs, func(i, j int) bool { return evs[i].EventID < evs[j].EventID })
		reply, _ = json.Marshal(Message{Type: TypeLobby, Events: evs})
		s.lobby.subs[sb] = struct{}{}
		s.lobby.mu.Unlock()
	} else {
		id, ok := strings.CutPrefix(e.Channel, EventChannelPrefix)
		if !ok || id == "" {
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorUnknownChannel)
			return
		}
		req, err := ParseSubscribeRequest(e.Data)
		if err != nil {
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorBadRequest)
			return
		}
		ev := s.event(id)
		ev.mu.Lock()
		if !ev.seeded && !s.seedLocked(ev, "", "") {
			ev.mu.Unlock()
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorUnknownChannel)
			return
		}
		reply = s.startLocked(ev, sb, req)
		ev.subs[sb] = struct{}{}
		ev.mu.Unlock()
		sb.ev = ev
	}
	s.mu.Lock()
	if s.clients[c.ID()] == nil {
		s.clients[c.ID()] = map[string]*sub{}
	}
	old := s.clients[c.ID()][e.Channel]
	s.clients[c.ID()][e.Channel] = sb
	s.mirrorLocked(c)
	s.mu.Unlock()
	if old != nil {
		s.detach(old)
	}
	s.subscribers.Add(1)
	ready := make(chan struct{})
	cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{Data: reply}, SubscriptionReady: ready}, nil)
	<-ready // closed once the reply is written: publications may follow it
	sb.mu.Lock()
	sb.ready = true
	sb.flushLocked()
	sb.mu.Unlock()
}

// startLocked decides how sb starts: resume after req.Since when every
// delta since is still held, else a snapshot (flagged when the subscriber
// asked to resume). It returns the reply data.
func (s *Server) startLocked(ev *event, sb *sub, req SubscribeRequest) []byte {
	resuming := req.Since > 0 || req.Epoch != ""
	if resuming && ev.epoch != "" && req.Epoch == ev.epoch && req.Since <= ev.snap.Seq {
		oldest := ev.snap.Seq + 1 - uint64(len(ev.history)) // first held delta
		if req.Since+1 >= oldest {
			sb.last = req.Since
			for _, d := range ev.history[req.Since+1-oldest:] {
				data, _ := json.Marshal(Message{Type: TypeDelta, EventID: d.EventID, Seq: d.Seq, Delta: &d})
				sb.offer(d, data)
			}
			b, _ := json.Marshal(Message{Type: TypeResume, EventID: ev.id, Epoch: ev.epoch, Seq: req.Since})
			return b
		}
	}
	sb.last = ev.snap.Seq
	reason := ""
	switch {
	case !resuming:
	case req.Epoch != ev.epoch:
		reason = ReasonNewEpoch
	default:
		reason = ReasonTooFarBehind
	}
	return s.snapshotMessage(ev, resuming, reason)
}

func (s *Server) unsubscribe(c *centrifuge.Client, channel string) {
	clientID := c.ID()
	s.mu.Lock()
	sb := s.clients[clientID][channel]
	if sb != nil {
		delete(s.clients[clientID], channel)
		if len(s.clients[clientID]) == 0 {
			delete(s.clients, clientID)
		}
		s.mirrorLocked(c)
	}
	s.mu.Unlock()
	if sb != nil {
		s.detach(sb)
	}
}

func (s *Server) disconnect(c *centrifuge.Client) {
	s.mu.Lock()
	subs := s.clients[c.ID()]
	delete(s.clients, c.ID())
	s.mirrorLocked(c)
	s.mu.Unlock()
	for _, sb := range subs {
		s.detach(sb)
	}
}

func (s *Server) detach(sb *sub) {
	if sb.lobby {
		s.lobby.mu.Lock()
		delete(s.lobby.subs, sb)
		s.lobby.mu.Unlock()
	} else if sb.ev != nil {
		sb.ev.mu.Lock()
		delete(sb.ev.subs, sb)
		sb.ev.mu.Unlock()
	}
	sb.mu.Lock()
	if !sb.closed {
		sb.closed = true
		s.subscribers.Add(-1)
	}
	sb.pending, sb.idx, sb.resetMsg = nil, nil, nil
	sb.mu.Unlock()
}

// clientSubsKey keys a client's *clientSubs in its context.
type clientSubsKey struct{}

// clientSubs is a client's subscriptions as credit reads them: a copy,
// replaced under Server.mu, read without a lock and never mutated.
type clientSubs struct{ subs atomic.Pointer[[]*sub] }

func subsOf(c *centrifuge.Client) *clientSubs {
	cs, _ := c.Context().Value(clientSubsKey{}).(*clientSubs)
	return cs
}

// mirrorLocked publishes a copy of a client's subscriptions for credit.
func (s *Server) mirrorLocked(c *centrifuge.Client) {
	cs := subsOf(c)
	if cs == nil {
		return // not connected through OnConnecting: subscribe refuses it
	}
	subs := s.clients[c.ID()]
	cp := make([]*sub, 0, len(subs))
	for _, sb := range subs {
		cp = append(cp, sb)
	}
	cs.subs.Store(&cp)
}

func (s *Server) credit(c *centrifuge.Client, channel string) {
	cs := subsOf(c)
	if cs == nil {
		return
	}
	var sb *sub
	if p := cs.subs.Load(); p != nil {
		for _, x := range *p {
			if x.channel == channel {
				sb = x
				break
			}
		}
	}
	if sb == nil {
		return
	}
	// No sb.mu here: centrifuge may call this with the connection writer's
	// lock held (WriteDelay's timer flush), while an offer holding sb.mu
	// waits for that lock to enqueue. inflight and backlog are atomics; the
	// offer stores backlog before it reads inflight, and this decrements
	// inflight before it reads backlog, so one of them always flushes.
	for {
		n := sb.inflight.Load()
		if n <= 0 || sb.inflight.CompareAndSwap(n, n-1) {
			break
		}
	}
	if sb.backlog.Load() && sb.scheduled.CompareAndSwap(false, true) {
		s.flushMu.Lock()
		s.flushQueue = append(s.flushQueue, sb)
		s.flushMu.Unlock()
		select {
		case s.flushKick <- struct{}{}:
		default:
		}
	}
}

// flusher writes what subscriptions accumulated while their window was full.
func (s *Server) flusher(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.flushKick:
		}
		s.flushMu.Lock()
		q := s.flushQueue
		s.flushQueue = nil
		s.flushMu.Unlock()
		for _, sb := range q {
			sb.mu.Lock()
			sb.scheduled.Store(false)
			sb.flushLocked()
			sb.mu.Unlock()
		}
	}
}

// Loaded is closed once Consume has loaded every event and will deliver
// everything after: the fan-out is warm (a readiness check).
func (s *Server) Loaded() <-chan struct{} { return s.loaded }

// Position returns the epoch and sequence the fan-out holds for an event
// (what a new subscriber's snapshot would be at).
func (s *Server) Position(eventID string) (epoch string, seq uint64, ok bool) {
	s.mu.Lock()
	ev := s.events[eventID]
	s.mu.Unlock()
	if ev == nil {
		return "", 0, false
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.epoch, ev.snap.Seq, ev.seeded
}

// Stats is a point-in-time view of the fan-out.
type Stats struct {
	Subscribers  int64
	Events       int
	Publications int64 // written to subscribers
	Conflations  int64 // conflated updates among them
	Resyncs      int64 // events rebuilt from a snapshot (gap, new epoch, fan-out behind)
	Skips        int64 // times the consumer skipped to the bus's end (MaxLag)
	Coalesced    int64 // conflated updates published per event by the coalescing window
}

// Stats returns the current counts.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.events)
	s.mu.Unlock()
	return Stats{Subscribers: s.subscribers.Load(), Events: n, Publications: s.published.Load(),
		Conflations: s.conflations.Load(), Resyncs: s.resyncs.Load(), Skips: s.skips.Load(), Coalesced: s.coalesced.Load()}
}

// sub is one subscription's delivery state. Deltas go straight to the
// connection while fewer than Window publications are queued there; beyond
// that they wait in pending, where a newer delta for the same market (or
// the event) replaces the older one. pending is therefore bounded by the
// event's size, never by how far behind the subscriber is.
type sub struct {
	srv     *Server
	client  *centrifuge.Client
	channel string
	lobby   bool
	ev      *event

	mu        sync.Mutex
	ready     bool
	closed    bool
	scheduled atomic.Bool  // queued for the flusher
	inflight  atomic.Int32 // publications written, not yet out of the connection's queue
	backlog   atomic.Bool  // resetMsg or pending holds something
	last      uint64       // event subs: seq of the last delta handed to the connection
	resetMsg  []byte       // a continuity-lost snapshot to send before anything else
	pending   []pendingDelta
	head      int
	idx       map[string]int // conflation key -> index in pending
	merged    bool           // pending replaced a delta: send it conflated
}

type pendingDelta struct {
	d    odds.Delta
	data []byte
}

func (sb *sub) key(d odds.Delta) string {
	if sb.lobby {
		return d.EventID
	}
	return odds.ConflationKey(d)
}

// offer hands d to the subscription without waiting.
func (sb *sub) offer(d odds.Delta, data []byte) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return
	}
	if !sb.lobby && d.Seq <= sb.last && sb.head == len(sb.pending) {
		return
	}
	if sb.ready && sb.resetMsg == nil && sb.head == len(sb.pending) && int(sb.inflight.Load()) < sb.srv.cfg.Window {
		sb.write(data)
		sb.last = d.Seq
		return
	}
	k := sb.key(d)
	if i, ok := sb.idx[k]; ok {
		sb.pending[i] = pendingDelta{d, data}
		sb.merged = true
		return
	}
	sb.idx[k] = len(sb.pending)
	sb.pending = append(sb.pending, pendingDelta{d, data})
	sb.backlog.Store(true)
	if sb.ready && int(sb.inflight.Load()) < sb.srv.cfg.Window {
		sb.flushLocked()
	}
}

// offerBatch hands the subscription a coalesced update (the latest delta
// per key after from, up to seq, encoded in data) without waiting. A
// subscription exactly at from with room gets data as is; any other merges
// the deltas it lacks into its pending conflation.
func (sb *sub) offerBatch(from, seq uint64, ds []odds.Delta, data []byte) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed || seq <= sb.last {
		return
	}
	if sb.ready && sb.resetMsg == nil && sb.head == len(sb.pending) && int(sb.inflight.Load()) < sb.srv.cfg.Window && sb.last == from {
		sb.write(data)
		sb.last = seq
		return
	}
	for _, d := range ds {
		if d.Seq <= sb.last {
			continue // its snapshot or an earlier publication has it
		}
		k := sb.key(d)
		if i, ok := sb.idx[k]; ok {
			sb.pending[i] = pendingDelta{d: d}
		} else {
			sb.idx[k] = len(sb.pending)
			sb.pending = append(sb.pending, pendingDelta{d: d})
		}
		sb.merged = true // sent conflated: a batch is not a run of single deltas
		sb.backlog.Store(true)
	}
	if sb.ready && int(sb.inflight.Load()) < sb.srv.cfg.Window {
		sb.flushLocked()
	}
}

// reset replaces everything pending with a continuity-lost snapshot at seq.
func (sb *sub) reset(msg []byte, seq uint64) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if sb.closed {
		return
	}
	sb.pending, sb.head, sb.merged = sb.pending[:0], 0, false
	clear(sb.idx)
	sb.resetMsg, sb.last = msg, seq
	sb.backlog.Store(true)
	if sb.ready {
		sb.flushLocked()
	}
}

func (sb *sub) flushLocked() {
	w := sb.srv.cfg.Window
	for sb.ready && !sb.closed && int(sb.inflight.Load()) < w {
		if sb.resetMsg != nil {
			sb.write(sb.resetMsg)
			sb.resetMsg = nil
			continue
		}
		if sb.head == len(sb.pending) {
			sb.pending, sb.head = sb.pending[:0], 0
			sb.backlog.Store(false)
			return
		}
		if !sb.merged {
			p := sb.pending[sb.head]
			delete(sb.idx, sb.key(p.d))
			sb.head++
			sb.write(p.data)
			sb.last = p.d.Seq
			continue
		}
		live := sb.pending[sb.head:]
		ds := make([]odds.Delta, len(live))
		for i, p := range live {
			ds[i] = p.d
		}
		sort.Slice(ds, func(i, j int) bool {
			if ds[i].EventID != ds[j].EventID {
				return ds[i].EventID < ds[j].EventID
			}
			return ds[i].Seq < ds[j].Seq
		})
		msg := Message{Type: TypeConflated, Con: true, Deltas: ds}
		if !sb.lobby {
			msg.EventID, msg.From, msg.Seq = sb.ev.id, sb.last, ds[len(ds)-1].Seq
			sb.last = msg.Seq
		}
		data, _ := json.Marshal(msg)
		sb.pending, sb.head, sb.merged = sb.pending[:0], 0, false
		clear(sb.idx)
		sb.srv.m.conflated.Inc()
		sb.srv.conflations.Add(1)
		sb.write(data)
	}
}

func (sb *sub) write(data []byte) {
	if err := sb.client.WritePublication(sb.channel, &centrifuge.Publication{Data: data}, centrifuge.StreamPosition{}); err != nil {
		// Not subscribed (any more): its unsubscribe event detaches it.
		sb.closed = true
		sb.srv.subscribers.Add(-1)
		return
	}
	sb.inflight.Add(1)
	sb.srv.m.deliveries.Inc()
	sb.srv.published.Add(1)
}
