package audit

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
)

// Captured is one record waiting in a store's outbox.
type Captured struct {
	ID           string
	Jurisdiction string
	StreamKey    string // Record.StreamKey()
	Seq          uint64
	Data         []byte // the canonical encoding
	CapturedAt   time.Time
	// Resends counts how often the stream lost the record after
	// acknowledging it. A re-send must not be taken for a duplicate of the
	// lost message by the stream's de-duplication window (the archiver
	// de-duplicates by record id regardless).
	Resends int
	// Ref is the store's own handle of the record, handed back in
	// Published (SQLite: its rowid, so that marking it sent needs no index
	// by stream key). Zero where the store finds records by StreamKey and
	// Seq.
	Ref int64
}

// Ack is the stream's acknowledgement of one published record: the stream
// sequence that holds it (0: not acknowledged), and whether the stream
// already held it (a duplicate by record id, at its original sequence).
type Ack struct {
	StreamSeq uint64
	Duplicate bool
}

// Published says the stream holds a captured record at StreamSeq.
type Published struct {
	StreamKey string
	Seq       uint64
	Ref       int64 // Captured.Ref
	StreamSeq uint64
	Duplicate bool
}

// Backlog is what waits in the outbox.
type Backlog struct {
	Records int
	Oldest  time.Time // zero when empty
}

// CaptureStore is the outbox as the relay drains it (postgres.AuditOutbox,
// sqlite.AuditOutbox). A record is in one of two states: pending (to be
// published) or sent (the stream acknowledged it at a stream sequence). It
// is deleted only by Release, once the archive holds it.
type CaptureStore interface {
	// Pending returns up to limit pending records, oldest first and in
	// sequence order within each stream key.
	Pending(ctx context.Context, limit int) ([]Captured, error)
	// MarkSent marks records sent at their stream sequences. The stream
	// numbers new messages upwards, so a record already sent at a stream
	// sequence at or above the lowest new (not Duplicate) one in ps shows
	// that the stream reused its numbers after losing messages: such
	// records return to pending, to be published again.
	MarkSent(ctx context.Context, ps []Published) error
	// Release deletes every sent record whose stream sequence s has
	// progress.First <= s <= progress.Archived: acknowledged by the archiver
	// while the stream still held it. It returns to pending every sent
	// record the stream no longer holds (s > progress.Last, or s <
	// progress.First: purged or expired, and the floor may have moved past
	// it without an archiver ack). It reports how many it deleted and
	// returned.
	Release(ctx context.Context, progress Progress) (deleted, resent int, err error)
	// Backlog counts what is still in the outbox, pending or sent.
	Backlog(ctx context.Context) (Backlog, error)
}

// Progress is where the audit stream and its archiver are. Archived must
// be read before First and Last.
type Progress struct {
	First, Last uint64 // the stream's first and last sequence held
	// Archived is the archiver's acknowledgement floor: every message at or
	// below it has been acknowledged by the archiver, which it does only
	// after the fsync of the flush holding it (or dead-lettered it), or has
	// left the stream.
	Archived uint64
}

// Stream is the audit stream as the relay publishes to it (nats.AuditStream).
type Stream interface {
	// Publish sends records, deduplicated by record id, and returns the
	// stream's acknowledgement of each (StreamSeq 0 for one not
	// acknowledged: it stays pending). err is set when none could be sent.
	Publish(ctx context.Context, recs []Captured) ([]Ack, error)
	// Progress reports the stream's extent and the archiver's floor.
	Progress(ctx context.Context) (Progress, error)
}

// RelayConfig configures a Relay; zero fields take DefaultRelayConfig's.
type RelayConfig struct {
	Batch        int           // records per publish round (1024)
	Poll         time.Duration // wait after a round that was not full (50 ms)
	ReleaseEvery time.Duration // how often to read the archiver's progress and release (250 ms)
	RetryMin     time.Duration // first wait after a failure (100 ms)
	RetryMax     time.Duration // longest wait after failures (5 s)
	OpTimeout    time.Duration // bound on one store or stream call (10 s)
	// BacklogMetric is how often the backlog gauges are refreshed (10 s).
	// Each refresh counts every row of the outbox, and on PostgreSQL that
	// scans the dead versions its churn leaves until autovacuum comes by
	// (at most once a minute): 35-57 ms of the server's time a refresh
	// 20 s into a wallet benchmark, and rising.
	BacklogMetric time.Duration
}

// DefaultRelayConfig returns the defaults.
func DefaultRelayConfig() RelayConfig {
	return RelayConfig{Batch: 1024, Poll: 50 * time.Millisecond, ReleaseEvery: 250 * time.Millisecond,
		RetryMin: 100 * time.Millisecond, RetryMax: 5 * time.Second, OpTimeout: 10 * time.Second, BacklogMetric: 10 * time.Second}
}

// WithDefaults fills zero fields.
func (c RelayConfig) WithDefaults() RelayConfig {
	d := DefaultRelayConfig()
	if c.Batch == 0 {
		c.Batch = d.Batch
	}
	for _, p := range []struct{ v, d *time.Duration }{{&c.Poll, &d.Poll}, {&c.ReleaseEvery, &d.ReleaseEvery},
		{&c.RetryMin, &d.RetryMin}, {&c.RetryMax, &d.RetryMax}, {&c.OpTimeout, &d.OpTimeout}, {&c.BacklogMetric, &d.BacklogMetric}} {
		if *p.v == 0 {
			*p.v = *p.d
		}
	}
	return c
}

// Validate names the first bad field.
func (c RelayConfig) Validate() error {
	if c.Batch < 1 || c.Batch > 10000 {
		return buzzer.Errorf(buzzer.EINVALID, "audit relay batch must be 1..10000")
	}
	if c.Poll <= 0 || c.ReleaseEvery <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.OpTimeout <= 0 || c.BacklogMetric <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "audit relay durations must be positive and retry_max >= retry_min")
	}
	return nil
}

type relayMetrics struct {
	backlog    prometheus.Gauge
	backlogAge prometheus.Gauge
	lag        prometheus.Gauge
	published  prometheus.Counter
	released   prometheus.Counter
	resent     prometheus.Counter
	errors     prometheus.Counter
}

// Relay moves captured records from a store's outbox to the audit stream
// and deletes them from the outbox only when the archiver's acknowledgement
// floor has passed them: the end-to-end acknowledgement. One goroutine (Run)
// does everything; several relays on one outbox are safe (the stream
// de-duplicates by record id, the archiver by id and sequence) but wasteful.
type Relay struct {
	cfg    RelayConfig
	store  CaptureStore
	stream Stream
	log    *slog.Logger
	m      relayMetrics
}

// NewRelay checks cfg and returns a relay from store to stream; reg receives
// its metrics (nil: unregistered).
func NewRelay(cfg RelayConfig, store CaptureStore, stream Stream, reg prometheus.Registerer, log *slog.Logger) (*Relay, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || stream == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "audit relay needs an outbox and a stream")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := relayMetrics{
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "buzzer_audit_capture_backlog_records",
			Help: "Captured changes still in the database's outbox (pending, or sent and not yet archived)."}),
		backlogAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "buzzer_audit_capture_backlog_age_seconds",
			Help: "Age of the oldest captured change still in the outbox."}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{Name: "buzzer_audit_stream_lag_records",
			Help: "Messages in the audit stream above the archiver's acknowledgement floor."}),
		published: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_relay_published_total",
			Help: "Captured records the audit stream acknowledged."}),
		released: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_relay_released_total",
			Help: "Captured records deleted from the outbox after the archive acknowledged them."}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_relay_resent_total",
			Help: "Sent records returned to pending because the stream no longer held them."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_relay_errors_total",
			Help: "Relay store or stream calls that failed and were retried."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.backlog, m.backlogAge, m.lag, m.published, m.released, m.resent, m.errors} {
			if err := reg.Register(c); err != nil {
				return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot register the audit relay's metrics")
			}
		}
	}
	return &Relay{cfg: cfg, store: store, stream: stream, log: log, m: m}, nil
}

// Run relays until ctx is done, then returns nil. Failures are logged,
// counted and retried with backoff; nothing is deleted on a failure.
func (r *Relay) Run(ctx context.Context) error {
	backoff := r.cfg.RetryMin
	var lastRelease, lastBacklog time.Time
	for ctx.Err() == nil {
		now := time.Now()
		if now.Sub(lastRelease) >= r.cfg.ReleaseEvery {
			if err := r.Release(ctx); err != nil {
				r.fail(ctx, "release", err, &backoff)
				continue
			}
			lastRelease = now
		}
		if now.Sub(lastBacklog) >= r.cfg.BacklogMetric {
			if err := r.observeBacklog(ctx); err == nil {
				lastBacklog = now
			}
		}
		n, err := r.PublishOnce(ctx)
		if err != nil {
			r.fail(ctx, "publish", err, &backoff)
			continue
		}
		backoff = r.cfg.RetryMin
		if n < r.cfg.Batch {
			// Not a full round: the outbox is drained for now. Pausing
			// lets what is captured meanwhile go out in fuller messages
			// and fewer rounds, each of which marks its records sent in a
			// transaction on the store's writer.
			if !sleep(ctx, r.cfg.Poll) {
				break
			}
		}
	}
	return nil
}

func (r *Relay) fail(ctx context.Context, op string, err error, backoff *time.Duration) {
	if ctx.Err() != nil {
		return
	}
	r.m.errors.Inc()
	r.log.Warn("audit relay: "+op+" failed", "err", err, "retry_in", *backoff)
	sleep(ctx, *backoff)
	*backoff = min(2**backoff, r.cfg.RetryMax)
}

// PublishOnce publishes one batch of pending records and marks those the
// stream acknowledged as sent; it returns how many it read.
func (r *Relay) PublishOnce(ctx context.Context) (int, error) {
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	recs, err := r.store.Pending(opCtx, r.cfg.Batch)
	if err != nil || len(recs) == 0 {
		return 0, err
	}
	// Publish each stream key's records in sequence order even if their
	// capture times disagree (clocks of different nodes).
	slices.SortStableFunc(recs, func(a, b Captured) int {
		if c := strings.Compare(a.StreamKey, b.StreamKey); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	})
	acks, err := r.stream.Publish(opCtx, recs)
	if err != nil {
		return 0, err
	}
	ps := make([]Published, 0, len(recs))
	for i, c := range recs {
		if i < len(acks) && acks[i].StreamSeq > 0 {
			ps = append(ps, Published{StreamKey: c.StreamKey, Seq: c.Seq, Ref: c.Ref, StreamSeq: acks[i].StreamSeq, Duplicate: acks[i].Duplicate})
		}
	}
	if len(ps) > 0 {
		if err := r.store.MarkSent(opCtx, ps); err != nil {
			return 0, err
		}
		r.m.published.Add(float64(len(ps)))
	}
	if len(ps) < len(recs) {
		return len(recs), buzzer.Errorf(buzzer.EUNAVAILABLE, "the audit stream acknowledged %d of %d records", len(ps), len(recs))
	}
	return len(recs), nil
}

// Release reads the archiver's progress and releases the outbox up to it.
func (r *Relay) Release(ctx context.Context) error {
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	p, err := r.stream.Progress(opCtx)
	if err != nil {
		return err
	}
	if p.Last >= p.Archived {
		r.m.lag.Set(float64(p.Last - p.Archived))
	}
	deleted, resent, err := r.store.Release(opCtx, p)
	if err != nil {
		return err
	}
	r.m.released.Add(float64(deleted))
	if resent > 0 {
		r.m.resent.Add(float64(resent))
		r.log.Warn("audit relay: the stream no longer holds records it acknowledged; publishing them again", "records", resent)
	}
	return nil
}

func (r *Relay) observeBacklog(ctx context.Context) error {
	opCtx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	b, err := r.store.Backlog(opCtx)
	if err != nil {
		return err
	}
	r.m.backlog.Set(float64(b.Records))
	if b.Oldest.IsZero() {
		r.m.backlogAge.Set(0)
	} else {
		r.m.backlogAge.Set(time.Since(b.Oldest).Seconds())
	}
	return nil
}
