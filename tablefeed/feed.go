package tablefeed

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/table"
)

var _ table.Publisher = (*Feed)(nil)

// Source serves tables' snapshots and event logs; *table.Reader and
// *table.Service implement it.
type Source interface {
	Snapshot(ctx context.Context, table string) (table.View, error)
	Events(ctx context.Context, table string, after int64, limit int) ([]table.Event, error)
}

// Verifier checks a player token; auth.Verifier implements it (the HTTP
// API's player verifier).
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// Config configures the feed. Zero fields take defaults; Verifier is
// required.
type Config struct {
	// Verifier checks the player token of every connection (and of every
	// refresh before the token expires).
	Verifier Verifier
	// Jurisdiction, if set, refuses tokens of any other jurisdiction.
	Jurisdiction string
	// Authorize, if set, decides whether a player may follow a table;
	// without it any authenticated player may (a table's channel carries
	// only what every seat sees).
	Authorize func(ctx context.Context, player, table string) error
	// History is how many recent events per table are kept in memory for
	// resuming subscribers (default 256); further behind, they are read
	// from the Source.
	History int
	// MaxPending bounds the events queued for one subscription while its
	// subscribe reply is being written (default 1024); beyond it the
	// subscription is ended with code 2500 (insufficient state) and the
	// client resubscribes from its last sequence.
	MaxPending int
	// ClientQueueMaxSize bounds a connection's queued bytes (default 1
	// MiB); beyond it centrifuge disconnects the client with code 3008
	// (slow) and it reconnects and resumes by sequence.
	ClientQueueMaxSize int
	// SourceTimeout bounds one snapshot or log read for a subscriber
	// (default 5s).
	SourceTimeout time.Duration
	Logger        *slog.Logger
	// Registry, if set, receives the feed's and its centrifuge node's
	// metrics (the node's under the buzzer_tablefeed_centrifuge
	// namespace); otherwise they go to a private registry.
	Registry *prometheus.Registry
}

func (c Config) withDefaults() (Config, error) {
	if c.Verifier == nil {
		return c, buzzer.Errorf(buzzer.EINVALID, "the table feed needs a player token verifier")
	}
	if c.History <= 0 {
		c.History = 256
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1024
	}
	if c.ClientQueueMaxSize <= 0 {
		c.ClientQueueMaxSize = 1 << 20
	}
	if c.SourceTimeout <= 0 {
		c.SourceTimeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Feed is the tables' live fan-out: a centrifuge node, each table's recent
// events and every subscription's delivery state.
//
// Lock order: Feed.mu, then a room's mu (either may be skipped; never in
// reverse). Publish holds only a room's mu, and writes to a connection's
// queue without waiting for the connection.
type Feed struct {
	cfg  Config
	node *centrifuge.Node
	src  Source

	mu      sync.Mutex
	rooms   map[string]*room
	clients map[string]map[string]*sub // client id -> channel -> subscription
	// resumeAt is, for a subscription the feed ended to resync, the last
	// sequence it was sent: the client resubscribes with its original
	// (stale) data on the same connection and is resumed after it.
	resumeAt map[string]map[string]int64 // client id -> channel -> seq

	wg sync.WaitGroup // resync goroutines

	subscribers            atomic.Int64
	published, resyncs     atomic.Int64
	mPublished, mResyncs   prometheus.Counter
	mSubscribers           prometheus.GaugeFunc
	mDeliverySeconds       prometheus.Histogram
	mSubscribeSourceErrors prometheus.Counter
}

// room is one table's live state in the feed: the recent events,
// consecutive and ending at seq, and its subscriptions.
type room struct {
	id      string
	mu      sync.Mutex
	seq     int64 // last event seen; 0 before any
	history []table.Event
	subs    map[*sub]struct{}
}

// sub is one subscription. All its fields are guarded by its room's mu.
type sub struct {
	client  *centrifuge.Client
	channel string
	room    *room
	ready   bool      // the subscribe reply is written: publications may follow
	closed  bool      // detached or ended
	resync  bool      // ended to resubscribe; told once its reply is written
	last    int64     // seq of the last event handed to the connection (or queued)
	sent    int64     // seq of the last event written to the connection
	pending []pending // events queued before ready, in order
}

type pending struct {
	seq  int64
	data []byte
}

// New builds the feed and its centrifuge node; Run starts it.
func New(src Source, cfg Config) (*Feed, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if src == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "the table feed needs a source of snapshots and events")
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	node, err := centrifuge.New(centrifuge.Config{
		Name:               "buzzer-tables",
		LogLevel:           centrifuge.LogLevelError,
		LogHandler:         func(e centrifuge.LogEntry) { cfg.Logger.Error("centrifuge: "+e.Message, "fields", e.Fields) },
		ClientQueueMaxSize: cfg.ClientQueueMaxSize,
		Metrics: centrifuge.MetricsConfig{
			MetricsNamespace:          "buzzer_tablefeed_centrifuge",
			RegistererGatherer:        reg,
			GetChannelNamespaceLabel:  func(string) string { return "table" },
			ChannelNamespaceCacheSize: -1,
		},
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "cannot build the table feed node")
	}
	f := &Feed{cfg: cfg, node: node, src: src, rooms: map[string]*room{}, clients: map[string]map[string]*sub{}, resumeAt: map[string]map[string]int64{}}
	f.mPublished = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "buzzer_tablefeed_publications_total", Help: "Table events written to subscribers."})
	f.mResyncs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "buzzer_tablefeed_resyncs_total", Help: "Subscriptions ended to resume by sequence (a gap or an overflow)."})
	f.mSubscribeSourceErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "buzzer_tablefeed_subscribe_source_errors_total", Help: "Subscriptions refused because the table store could not be read."})
	f.mDeliverySeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "buzzer_tablefeed_publish_duration_seconds",
		Help:    "Time to hand one published batch of table events to every subscriber's queue.",
		Buckets: []float64{.00001, .00005, .0001, .0005, .001, .005, .01, .05},
	})
	f.mSubscribers = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "buzzer_tablefeed_subscribers", Help: "Current table subscriptions."},
		func() float64 { return float64(f.subscribers.Load()) })
	for _, c := range []prometheus.Collector{f.mPublished, f.mResyncs, f.mSubscribeSourceErrors, f.mDeliverySeconds, f.mSubscribers} {
		if err := reg.Register(c); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot register table feed metrics")
		}
	}

	node.OnConnecting(func(ctx context.Context, e centrifuge.ConnectEvent) (centrifuge.ConnectReply, error) {
		p, err := f.authenticate(ctx, e.Token)
		if err != nil {
			return centrifuge.ConnectReply{}, err
		}
		return centrifuge.ConnectReply{Credentials: &centrifuge.Credentials{UserID: p.Subject, ExpireAt: expireAt(p)}}, nil
	})
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnRefresh(func(e centrifuge.RefreshEvent, cb centrifuge.RefreshCallback) {
			p, err := f.authenticate(c.Context(), e.Token)
			switch {
			case err != nil:
				cb(centrifuge.RefreshReply{Expired: true}, nil)
			case p.Subject != c.UserID():
				cb(centrifuge.RefreshReply{}, centrifuge.DisconnectInvalidToken)
			default:
				cb(centrifuge.RefreshReply{ExpireAt: expireAt(p)}, nil)
			}
		})
		c.OnSubscribe(func(e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) { f.subscribe(c, e, cb) })
		c.OnUnsubscribe(func(e centrifuge.UnsubscribeEvent) { f.unsubscribe(c.ID(), e.Channel) })
		c.OnDisconnect(func(centrifuge.DisconnectEvent) { f.disconnect(c.ID()) })
	})
	return f, nil
}

func expireAt(p auth.Principal) int64 {
	if p.ExpiresAt.IsZero() {
		return 0
	}
	return p.ExpiresAt.Unix()
}

// authenticate verifies a player token; every failure denies (fail closed).
func (f *Feed) authenticate(ctx context.Context, token string) (auth.Principal, error) {
	if token == "" {
		return auth.Principal{}, centrifuge.DisconnectInvalidToken
	}
	p, err := f.cfg.Verifier.Verify(ctx, token)
	if err != nil {
		if buzzer.ErrorCode(err) == buzzer.EUNAVAILABLE {
			f.cfg.Logger.Warn("table feed cannot verify a token", "err", err)
			return auth.Principal{}, centrifuge.ErrorInternal // the client retries; nothing is let through
		}
		return auth.Principal{}, centrifuge.DisconnectInvalidToken
	}
	if p.Subject == "" || (f.cfg.Jurisdiction != "" && p.Jurisdiction != f.cfg.Jurisdiction) {
		return auth.Principal{}, centrifuge.DisconnectPermissionDenied
	}
	return p, nil
}

// Node is the centrifuge node (for metrics and tests).
func (f *Feed) Node() *centrifuge.Node { return f.node }

// WebsocketHandler serves the feed over WebSocket on the player listener.
func (f *Feed) WebsocketHandler() http.Handler {
	return centrifuge.NewWebsocketHandler(f.node, centrifuge.WebsocketConfig{})
}

// Run starts the node and serves until ctx is done; then it disconnects
// every client and returns.
func (f *Feed) Run(ctx context.Context) error {
	if err := f.node.Run(); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot start the table feed node")
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := f.node.Shutdown(sctx)
	f.wg.Wait()
	if err != nil && sctx.Err() == nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "table feed shutdown")
	}
	return nil
}

func (f *Feed) room(id string) *room {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.rooms[id]
	if r == nil {
		r = &room{id: id, subs: map[*sub]struct{}{}}
		f.rooms[id] = r
	}
	return r
}

func eventMessage(e *table.Event) []byte {
	b, _ := json.Marshal(Message{Type: TypeEvent, Table: e.Table, Seq: e.Seq, Event: e})
	return b
}

// Publish implements table.Publisher: it hands the committed events to
// every subscriber of the table without waiting for any of them. The
// service calls it in commit order per table.
func (f *Feed) Publish(id string, events []table.Event) {
	if len(events) == 0 {
		return
	}
	start := time.Now()
	r := f.room(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range events {
		e := events[i]
		if r.seq != 0 && e.Seq <= r.seq {
			continue // already seen
		}
		if r.seq != 0 && e.Seq != r.seq+1 {
			r.history = r.history[:0] // a gap (the table moved nodes): start over
		}
		r.history = append(r.history, e)
		if len(r.history) >= 2*f.cfg.History { // trim in bulk
			r.history = append(r.history[:0], r.history[len(r.history)-f.cfg.History:]...)
		}
		r.seq = e.Seq
		if len(r.subs) == 0 {
			continue // nobody to encode it for
		}
		data := eventMessage(&e)
		for sb := range r.subs {
			f.offerLocked(sb, e.Seq, data)
		}
	}
	f.mDeliverySeconds.Observe(time.Since(start).Seconds())
}

// offerLocked hands event seq to sb. Caller holds sb.room.mu.
func (f *Feed) offerLocked(sb *sub, seq int64, data []byte) {
	if sb.closed || seq <= sb.last {
		return
	}
	if seq != sb.last+1 {
		f.resyncLocked(sb) // the subscriber would see a gap; it resumes from the log instead
		return
	}
	sb.last = seq
	if !sb.ready {
		if len(sb.pending) >= f.cfg.MaxPending {
			f.resyncLocked(sb)
			return
		}
		sb.pending = append(sb.pending, pending{seq, data})
		return
	}
	f.writeLocked(sb, seq, data)
}

func (f *Feed) writeLocked(sb *sub, seq int64, data []byte) {
	if err := sb.client.WritePublication(sb.channel, &centrifuge.Publication{Data: data}, centrifuge.StreamPosition{}); err != nil {
		// Not subscribed any more: its unsubscribe event detaches it.
		f.closeLocked(sb)
		return
	}
	sb.sent = seq
	f.published.Add(1)
	f.mPublished.Inc()
}

func (f *Feed) closeLocked(sb *sub) {
	if !sb.closed {
		sb.closed = true
		sb.pending = nil
		delete(sb.room.subs, sb)
		f.subscribers.Add(-1)
	}
}

// resyncLocked ends sb with code 2500 (insufficient state): the client
// resubscribes at once on the same connection (its subscribe data may be
// stale, so the feed resumes it after the last event it wrote to it) and
// is served from the log. The unsubscribe runs on its own goroutine, since
// it calls back into the feed.
func (f *Feed) resyncLocked(sb *sub) {
	if sb.closed {
		return
	}
	f.closeLocked(sb)
	f.resyncs.Add(1)
	f.mResyncs.Inc()
	sb.resync = true
	if !sb.ready {
		return // the client is told once it knows the subscription
	}
	f.tellResync(sb)
}

func (f *Feed) tellResync(sb *sub) {
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		sb.client.Unsubscribe(sb.channel, centrifuge.Unsubscribe{Code: centrifuge.UnsubscribeCodeInsufficient, Reason: "resubscribe from your last sequence"})
	}()
}

// subscribe answers a subscribe command with a snapshot or a resume, and
// registers the subscription at the sequence its reply describes, so that
// what follows is exactly the events after it.
func (f *Feed) subscribe(c *centrifuge.Client, e centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
	id, ok := TableOf(e.Channel)
	if !ok {
		cb(centrifuge.SubscribeReply{}, centrifuge.ErrorUnknownChannel)
		return
	}
	req, err := ParseSubscribeRequest(e.Data)
	if err != nil {
		cb(centrifuge.SubscribeReply{}, centrifuge.ErrorBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(c.Context(), f.cfg.SourceTimeout)
	defer cancel()
	if f.cfg.Authorize != nil {
		if err := f.cfg.Authorize(ctx, c.UserID(), id); err != nil {
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorPermissionDenied)
			return
		}
	}
	// A subscription the feed ended to resync is resumed after what it was
	// sent: the connection delivered that in order before this command.
	f.mu.Lock()
	if at, ok := f.resumeAt[c.ID()][e.Channel]; ok {
		delete(f.resumeAt[c.ID()], e.Channel)
		req.Since = max(req.Since, at)
	}
	f.mu.Unlock()
	r := f.room(id)
	sb := &sub{client: c, channel: e.Channel, room: r}
	reply, err := f.start(ctx, r, sb, req)
	if err != nil {
		switch buzzer.ErrorCode(err) {
		case buzzer.ENOTFOUND:
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorUnknownChannel)
		default:
			f.mSubscribeSourceErrors.Inc()
			f.cfg.Logger.Warn("table feed cannot start a subscription", "table", id, "err", err)
			cb(centrifuge.SubscribeReply{}, centrifuge.ErrorInternal)
		}
		return
	}
	f.mu.Lock()
	if f.clients[c.ID()] == nil {
		f.clients[c.ID()] = map[string]*sub{}
	}
	old := f.clients[c.ID()][e.Channel]
	f.clients[c.ID()][e.Channel] = sb
	f.mu.Unlock()
	if old != nil {
		f.detach(old)
	}
	ready := make(chan struct{})
	cb(centrifuge.SubscribeReply{Options: centrifuge.SubscribeOptions{Data: reply}, SubscriptionReady: ready}, nil)
	<-ready // closed once the reply is written: publications may follow it
	r.mu.Lock()
	defer r.mu.Unlock()
	sb.ready = true
	if sb.resync {
		f.tellResync(sb)
	}
	if sb.closed {
		return
	}
	for _, p := range sb.pending {
		f.writeLocked(sb, p.seq, p.data)
		if sb.closed {
			return
		}
	}
	sb.pending = nil
}

// start reads what sb needs from the source (a snapshot, or the events
// after req.Since) and registers sb in r at the sequence its reply
// describes, with the events after it queued behind the reply. It returns
// the reply.
func (f *Feed) start(ctx context.Context, r *room, sb *sub, req SubscribeRequest) ([]byte, error) {
	if req.Since > 0 {
		// The recent events in memory usually cover a reconnect.
		r.mu.Lock()
		ok := r.seq >= req.Since && f.registerLocked(r, sb, req.Since, nil)
		r.mu.Unlock()
		if ok {
			return json.Marshal(Message{Type: TypeResume, Table: r.id, Seq: req.Since})
		}
	}
	v, err := f.src.Snapshot(ctx, r.id)
	if err != nil {
		return nil, err
	}
	msg, base := Message{Type: TypeSnapshot, Table: r.id, Seq: v.Seq, View: &v}, v.Seq
	if req.Since > 0 && req.Since <= v.Seq && v.Seq-req.Since <= int64(f.cfg.MaxPending) {
		msg, base = Message{Type: TypeResume, Table: r.id, Seq: req.Since}, req.Since
	}
	// A subscriber resuming after a sequence the table never reached (its
	// state is from a store that was reset) gets the snapshot.
	var backlog []table.Event
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		ok := f.registerLocked(r, sb, base, backlog)
		r.mu.Unlock()
		if ok {
			return json.Marshal(msg)
		}
		// Memory does not reach back to base: read the log after it until
		// it meets the events in memory.
		evs, err := f.src.Events(ctx, r.id, base+int64(len(backlog)), f.cfg.MaxPending)
		if err != nil {
			if msg.Type == TypeResume && buzzer.ErrorReason(err) == table.ReasonEventsTrimmed {
				return f.start(ctx, r, sb, SubscribeRequest{})
			}
			return nil, err
		}
		backlog = append(backlog, evs...)
		if len(evs) == 0 || attempt == 8 || len(backlog) > f.cfg.MaxPending {
			return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "table %s's log does not meet its live events", r.id)
		}
	}
}

// registerLocked registers sb after base if backlog (events base+1, ...)
// and the room's recent events together continue base without a gap,
// queueing both behind the reply. Caller holds r.mu.
func (f *Feed) registerLocked(r *room, sb *sub, base int64, backlog []table.Event) bool {
	for i, e := range backlog {
		if e.Seq != base+int64(i)+1 {
			return false
		}
	}
	end := base + int64(len(backlog))
	var tail []table.Event
	if r.seq > end {
		if len(r.history) == 0 || r.history[0].Seq > end+1 {
			return false
		}
		tail = r.history[end+1-r.history[0].Seq:]
	}
	if len(backlog)+len(tail) > f.cfg.MaxPending {
		return false
	}
	sb.last = base
	r.subs[sb] = struct{}{}
	f.subscribers.Add(1)
	for i := range backlog {
		f.offerLocked(sb, backlog[i].Seq, eventMessage(&backlog[i]))
	}
	for i := range tail {
		f.offerLocked(sb, tail[i].Seq, eventMessage(&tail[i]))
	}
	return true
}

func (f *Feed) unsubscribe(clientID, channel string) {
	f.mu.Lock()
	sb := f.clients[clientID][channel]
	if sb != nil {
		delete(f.clients[clientID], channel)
		if len(f.clients[clientID]) == 0 {
			delete(f.clients, clientID)
		}
		sb.room.mu.Lock()
		if sb.resync && sb.sent > 0 {
			if f.resumeAt[clientID] == nil {
				f.resumeAt[clientID] = map[string]int64{}
			}
			f.resumeAt[clientID][channel] = sb.sent
		}
		sb.room.mu.Unlock()
	}
	f.mu.Unlock()
	if sb != nil {
		f.detach(sb)
	}
}

func (f *Feed) disconnect(clientID string) {
	f.mu.Lock()
	subs := f.clients[clientID]
	delete(f.clients, clientID)
	delete(f.resumeAt, clientID)
	f.mu.Unlock()
	for _, sb := range subs {
		f.detach(sb)
	}
}

func (f *Feed) detach(sb *sub) {
	sb.room.mu.Lock()
	f.closeLocked(sb)
	sb.room.mu.Unlock()
}

// Stats is a point-in-time view of the feed.
type Stats struct {
	Subscribers  int64
	Tables       int
	Publications int64 // events written to subscribers
	Resyncs      int64 // subscriptions ended to resume by sequence
}

// Stats returns the current counts.
func (f *Feed) Stats() Stats {
	f.mu.Lock()
	n := len(f.rooms)
	f.mu.Unlock()
	return Stats{Subscribers: f.subscribers.Load(), Tables: n, Publications: f.published.Load(), Resyncs: f.resyncs.Load()}
}
