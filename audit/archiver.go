package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
)

// Message is one delivery from the audit stream. Its data is one encoded
// Record, or several separated by newlines (a relay batch; canonical
// records hold no newline). The archiver settles every message it fetched
// exactly one way: Ack once all its records are durably archived (or were
// already), Nak when one arrived ahead of its predecessor on the same
// stream key (the others are then recognised as archived when it comes
// again), Reject when one can never be archived (malformed, oversized, or a
// different record at its place).
type Message interface {
	Data() []byte
	Ack(ctx context.Context) error
	// Nak asks for redelivery after delay.
	Nak(ctx context.Context, delay time.Duration) error
	// Reject removes the message from delivery for good (a dead letter).
	Reject(ctx context.Context, reason string) error
}

// Source is the audit stream as the archiver consumes it (JetStream or
// Kafka, per jurisdiction). A message not acknowledged is delivered again,
// after a Nak or a restart.
type Source interface {
	// Fetch waits for messages and returns at most maxMessages of them
	// totalling at most maxBytes of data. It may return none (nil error)
	// when its own wait expires; it returns promptly when ctx is done.
	Fetch(ctx context.Context, maxMessages, maxBytes int) ([]Message, error)
}

// Config configures the Archiver. Zero fields take the defaults below
// (DefaultConfig); Dir is required.
type Config struct {
	Dir string // the archive directory (serve: DATA_DIR/audit)

	FlushAge       time.Duration // flush when the oldest buffered record is this old (1 s)
	FlushBytes     int           // ... or when this many bytes wait (256 KiB)
	MaxBufferBytes int           // fetched but not yet durable and acknowledged; at the bound, stop fetching (50 MiB)
	FetchMax       int           // messages per Fetch (512)

	SegmentBytes   int64 // seal a segment before it passes this size (64 MiB)
	SegmentRecords int   // ... or this many records (1 Mi)
	MaxRecordBytes int   // larger records are rejected (1 MiB)
	RecentIDs      int   // record ids kept in memory for de-duplication (100 000)

	NakDelay        time.Duration // redelivery delay for an out-of-order record (1 s)
	RetryMin        time.Duration // first wait after a failed flush or fetch (100 ms)
	RetryMax        time.Duration // longest wait between retries (5 s)
	ShutdownTimeout time.Duration // how long Run waits for the last flush when stopping (10 s)
}

// Defaults of the log's settings (package archive has the same).
const (
	DefaultSegmentBytes   = 64 << 20
	DefaultSegmentRecords = 1 << 20
	DefaultMaxRecordBytes = 1 << 20
	DefaultRecentIDs      = 100_000
	// MaxRecordBytesLimit is the largest MaxRecordBytes allowed.
	MaxRecordBytesLimit = 64 << 20
)

// DefaultConfig returns the defaults for an archive in dir.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:             dir,
		FlushAge:        time.Second,
		FlushBytes:      256 << 10,
		MaxBufferBytes:  50 << 20,
		FetchMax:        512,
		SegmentBytes:    DefaultSegmentBytes,
		SegmentRecords:  DefaultSegmentRecords,
		MaxRecordBytes:  DefaultMaxRecordBytes,
		RecentIDs:       DefaultRecentIDs,
		NakDelay:        time.Second,
		RetryMin:        100 * time.Millisecond,
		RetryMax:        5 * time.Second,
		ShutdownTimeout: 10 * time.Second,
	}
}

// WithDefaults fills every zero field from DefaultConfig.
func (c Config) WithDefaults() Config {
	d := DefaultConfig(c.Dir)
	set := func(v *time.Duration, def time.Duration) {
		if *v == 0 {
			*v = def
		}
	}
	seti := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.FlushAge, d.FlushAge)
	set(&c.NakDelay, d.NakDelay)
	set(&c.RetryMin, d.RetryMin)
	set(&c.RetryMax, d.RetryMax)
	set(&c.ShutdownTimeout, d.ShutdownTimeout)
	seti(&c.FlushBytes, d.FlushBytes)
	seti(&c.MaxBufferBytes, d.MaxBufferBytes)
	seti(&c.FetchMax, d.FetchMax)
	seti(&c.SegmentRecords, d.SegmentRecords)
	seti(&c.MaxRecordBytes, d.MaxRecordBytes)
	seti(&c.RecentIDs, d.RecentIDs)
	if c.SegmentBytes == 0 {
		c.SegmentBytes = d.SegmentBytes
	}
	return c
}

// Validate reports the first bad field.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return buzzer.Errorf(buzzer.EINVALID, "audit archiver config: "+format, args...)
	}
	switch {
	case c.Dir == "":
		return bad("Dir is required")
	case c.FlushAge <= 0 || c.NakDelay <= 0 || c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.ShutdownTimeout <= 0:
		return bad("durations must be positive and RetryMax >= RetryMin")
	case c.MaxRecordBytes <= 0 || c.MaxRecordBytes > MaxRecordBytesLimit:
		return bad("MaxRecordBytes must be 1..%d", MaxRecordBytesLimit)
	case c.FlushBytes <= 0 || c.FlushBytes > c.MaxBufferBytes:
		return bad("FlushBytes must be positive and at most MaxBufferBytes")
	case c.MaxBufferBytes < 2*c.MaxRecordBytes:
		return bad("MaxBufferBytes must hold at least two records of MaxRecordBytes")
	case c.FetchMax <= 0:
		return bad("FetchMax must be positive")
	case c.SegmentRecords <= 0 || c.RecentIDs <= 0:
		return bad("SegmentRecords and RecentIDs must be positive")
	}
	return nil
}

type metrics struct {
	bufferBytes prometheus.Gauge
	flush       prometheus.Histogram
	seals       prometheus.Counter
	archived    prometheus.Counter
	duplicates  prometheus.Counter
	outOfOrder  prometheus.Counter
	rejected    prometheus.Counter
	flushErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		bufferBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "buzzer_audit_buffer_bytes",
			Help: "Bytes fetched from the audit stream and not yet durably archived and acknowledged."}),
		flush: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "buzzer_audit_flush_duration_seconds",
			Help: "Time to write and fsync one flush of the audit archive.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		seals: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_segments_sealed_total",
			Help: "Archive segments sealed with a signed trailer."}),
		archived: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_records_archived_total",
			Help: "Records durably written to the audit archive."}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_records_duplicate_total",
			Help: "Re-sent records recognised as already archived and acknowledged without writing."}),
		outOfOrder: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_records_out_of_order_total",
			Help: "Records that arrived before their predecessor and were sent back for redelivery."}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_records_rejected_total",
			Help: "Messages that are not valid records and were dead-lettered."}),
		flushErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_flush_errors_total",
			Help: "Flushes that failed and were retried after reopening the archive."}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.bufferBytes, m.flush, m.seals, m.archived, m.duplicates, m.outOfOrder, m.rejected, m.flushErrors} {
			if err := reg.Register(c); err != nil {
				return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot register the audit archiver's metrics")
			}
		}
	}
	return m, nil
}

// item is one fetched message waiting to be archived.
type item struct {
	msg    Message
	bodies [][]byte // its records' canonical encodings
	size   int      // bytes counted against MaxBufferBytes
	at     time.Time
}

type settleOp int

const (
	opAck settleOp = iota
	opNak
	opReject
)

type settlement struct {
	it     *item
	op     settleOp
	reason string
}

// Archiver consumes the audit stream into the archive: it buffers records
// asynchronously, flushes by age or size, acknowledges a record only after
// the flush that holds it has been fsynced, and stops fetching when its
// buffer is full so a stalled volume backs the stream up rather than
// dropping anything or blocking the producers.
//
// Goroutines (all owned by Run): the fetcher, the flusher and the settler.
// Lock order: a.mu is a leaf lock; nothing is called while holding it.
type Archiver struct {
	cfg    Config
	src    Source
	opener LogOpener
	key    ed25519.PrivateKey
	log    *slog.Logger
	m      *metrics

	mu           sync.Mutex
	pending      []*item
	pendingBytes int
	held         int // bytes fetched and not yet settled

	kick    chan struct{} // fetcher -> flusher: new items
	space   chan struct{} // settler -> fetcher: held went down
	settles chan []settlement

	w Log // owned by the flusher
}

// NewArchiver checks cfg (zero fields take defaults) and prepares an
// archiver that moves records from src into the log opener opens (package
// archive's Opener); Run opens the log and starts. key seals segments;
// reg receives the metrics (nil: unregistered).
func NewArchiver(cfg Config, src Source, opener LogOpener, key ed25519.PrivateKey, reg prometheus.Registerer, log *slog.Logger) (*Archiver, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil || opener == nil || len(key) != ed25519.PrivateKeySize {
		return nil, buzzer.Errorf(buzzer.EINVALID, "audit archiver needs a source, a log and an Ed25519 seal key")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Archiver{
		cfg: cfg, src: src, opener: opener, key: key, log: log, m: m,
		kick: make(chan struct{}, 1), space: make(chan struct{}, 1), settles: make(chan []settlement, 64),
	}, nil
}

func (a *Archiver) openArchive() (Log, error) {
	w, r, err := a.opener.OpenLog(LogOptions{
		Dir: a.cfg.Dir, Key: a.key,
		SegmentBytes: a.cfg.SegmentBytes, SegmentRecords: a.cfg.SegmentRecords,
		MaxRecordBytes: a.cfg.MaxRecordBytes, RecentIDs: a.cfg.RecentIDs,
		OnSeal: func(s Seal) {
			a.m.seals.Inc()
			a.log.Info("audit segment sealed", "file", s.File, "records", s.Records)
		},
	})
	if err != nil {
		return nil, err
	}
	if r.TruncatedBytes > 0 {
		a.log.Warn("audit archive: cut a torn tail write", "file", r.File, "bytes", r.TruncatedBytes)
	}
	return w, nil
}

// Run opens the archive (failing at once if it is damaged) and archives
// until ctx is done. It then stops fetching, flushes what it holds (waiting
// at most ShutdownTimeout; anything not flushed stays unacknowledged
// upstream and is delivered again), settles, and returns nil. It returns an
// error only if the archive cannot be opened.
func (a *Archiver) Run(ctx context.Context) error {
	w, err := a.openArchive()
	if err != nil {
		return err
	}
	a.w = w
	settleDone := make(chan struct{})
	go func() { defer close(settleDone); a.settleLoop() }()
	fetchDone := make(chan struct{})
	go func() { defer close(fetchDone); a.fetchLoop(ctx) }()

	// flushCtx outlives ctx by ShutdownTimeout so the last flush can finish.
	flushCtx, cancelFlush := context.WithCancel(context.Background())
	defer cancelFlush()
	flushDone := make(chan struct{})
	go func() { defer close(flushDone); a.flushLoop(ctx, fetchDone, flushCtx) }()

	<-ctx.Done()
	<-fetchDone
	timer := time.NewTimer(a.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-flushDone:
	case <-timer.C:
		// The volume is stalled and a blocked write cannot be interrupted:
		// the flusher (and the settler it feeds) are left to finish when it
		// returns. Nothing they hold was acknowledged, so the stream
		// delivers it again to the next archiver.
		a.log.Error("audit archiver: last flush did not finish before the shutdown timeout; unflushed records stay upstream")
		cancelFlush()
		return nil
	}
	close(a.settles)
	<-settleDone
	if a.w != nil {
		a.w.Close()
	}
	return nil
}

func (a *Archiver) fetchLoop(ctx context.Context) {
	backoff := a.cfg.RetryMin
	for ctx.Err() == nil {
		a.mu.Lock()
		budget := a.cfg.MaxBufferBytes - a.held
		a.mu.Unlock()
		if budget < a.cfg.MaxRecordBytes {
			// Full: stop pulling; the backlog waits durably upstream.
			select {
			case <-a.space:
			case <-ctx.Done():
			}
			continue
		}
		msgs, err := a.src.Fetch(ctx, a.cfg.FetchMax, budget)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Warn("audit archiver: fetch failed", "err", err, "retry_in", backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, a.cfg.RetryMax)
			continue
		}
		backoff = a.cfg.RetryMin
		a.accept(msgs)
	}
}

// accept decodes fetched messages into the buffer, rejecting what can never
// be archived.
func (a *Archiver) accept(msgs []Message) {
	now := time.Now()
	var items []*item
	var rejects []settlement
	added := 0
	for _, msg := range msgs {
		data := msg.Data()
		it := &item{msg: msg, size: len(data), at: now}
		reason := ""
		for part := range bytes.SplitSeq(data, []byte{'\n'}) {
			if reason = a.canonical(it, part); reason != "" {
				if n := bytes.Count(data, []byte{'\n'}); n > 0 {
					reason = fmt.Sprintf("record %d of %d: %s", len(it.bodies)+1, n+1, reason)
				}
				break
			}
		}
		if reason != "" {
			rejects = append(rejects, settlement{it: it, op: opReject, reason: reason})
		} else {
			items = append(items, it)
		}
		added += it.size
	}
	a.mu.Lock()
	a.held += added
	a.pending = append(a.pending, items...)
	for _, it := range items {
		a.pendingBytes += it.size
	}
	a.m.bufferBytes.Set(float64(a.held))
	a.mu.Unlock()
	if len(rejects) > 0 {
		a.m.rejected.Add(float64(len(rejects)))
		a.settles <- rejects
	}
	if len(items) > 0 {
		select {
		case a.kick <- struct{}{}:
		default:
		}
	}
}

// canonical adds the canonical encoding of one record of a message to it,
// or says why it cannot be archived.
func (a *Archiver) canonical(it *item, data []byte) (reason string) {
	if len(data) > a.cfg.MaxRecordBytes {
		return "record larger than MaxRecordBytes"
	}
	r, err := Decode(data)
	if err != nil {
		return buzzer.ErrorMessage(err)
	}
	body, err := Encode(r)
	if err != nil {
		return buzzer.ErrorMessage(err)
	}
	if len(body) > a.cfg.MaxRecordBytes {
		return "canonical record larger than MaxRecordBytes"
	}
	it.bodies = append(it.bodies, body)
	return ""
}

// flushLoop waits for a flush trigger, takes everything buffered and makes
// it durable. Once stop is done it flushes at once, and it returns when the
// fetcher has finished and nothing is left.
func (a *Archiver) flushLoop(stop context.Context, fetchDone <-chan struct{}, flushCtx context.Context) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		// Read fetchDone before the buffer: once the fetcher has finished,
		// an empty buffer stays empty.
		finished := false
		select {
		case <-fetchDone:
			finished = true
		default:
		}
		a.mu.Lock()
		n, bytes := len(a.pending), a.pendingBytes
		var oldest time.Time
		if n > 0 {
			oldest = a.pending[0].at
		}
		a.mu.Unlock()
		stopping := stop.Err() != nil
		if n == 0 {
			if finished {
				return
			}
			select {
			case <-fetchDone:
			case <-a.kick:
			}
			continue
		}
		if !stopping && bytes < a.cfg.FlushBytes {
			if wait := a.cfg.FlushAge - time.Since(oldest); wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-a.kick:
				case <-timer.C:
				case <-stop.Done():
				}
				if !timer.Stop() {
					select {
					case <-timer.C:
					default:
					}
				}
				continue
			}
		}
		a.mu.Lock()
		batch := a.pending
		a.pending, a.pendingBytes = nil, 0
		a.mu.Unlock()
		if !a.flush(flushCtx, batch) {
			return
		}
	}
}

// flush writes batch durably, retrying (after reopening the archive, which
// recovers it) until it succeeds or ctx is done, then hands every item to
// the settler. It reports false if it gave up.
func (a *Archiver) flush(ctx context.Context, batch []*item) bool {
	var bodies [][]byte
	for _, it := range batch {
		bodies = append(bodies, it.bodies...)
	}
	backoff := a.cfg.RetryMin
	for {
		start := time.Now()
		st, err := a.writeDurably(bodies)
		if err == nil {
			a.m.flush.Observe(time.Since(start).Seconds())
			a.settleBatch(batch, st)
			return true
		}
		a.m.flushErrors.Inc()
		a.log.Error("audit archiver: flush failed; reopening the archive", "err", err, "records", len(batch), "retry_in", backoff)
		if a.w != nil {
			a.w.Close()
			a.w = nil
		}
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, a.cfg.RetryMax)
	}
}

func (a *Archiver) writeDurably(bodies [][]byte) ([]AppendStatus, error) {
	if a.w == nil {
		w, err := a.openArchive()
		if err != nil {
			return nil, err
		}
		a.w = w
	}
	st, err := a.w.Append(bodies)
	if err != nil {
		return nil, err
	}
	if err := a.w.Sync(); err != nil {
		return nil, err
	}
	return st, nil
}

// settleBatch settles each item by the statuses of its records (st holds
// them in the order flush passed the bodies): a rejection of any record
// rejects the message, else one out of order sends it back, else it is
// acknowledged.
func (a *Archiver) settleBatch(batch []*item, st []AppendStatus) {
	ss := make([]settlement, len(batch))
	var archived, dups, ooo, rej int
	for i, it := range batch {
		ss[i] = settlement{it: it, op: opAck}
		sts := st[:len(it.bodies)]
		st = st[len(it.bodies):]
		for _, s := range sts {
			switch s {
			case Appended:
				archived++
			case Duplicate:
				dups++
			case OutOfOrder:
				ooo++
				if ss[i].op == opAck {
					ss[i].op = opNak
				}
			case Conflict:
				rej++
				ss[i] = settlement{it: it, op: opReject, reason: "a different record is archived at this record's key and sequence"}
			default:
				rej++
				ss[i] = settlement{it: it, op: opReject, reason: "the archive cannot identify the record"}
			}
		}
	}
	a.m.archived.Add(float64(archived))
	a.m.duplicates.Add(float64(dups))
	a.m.outOfOrder.Add(float64(ooo))
	a.m.rejected.Add(float64(rej))
	a.settles <- ss
}

// settleLoop acknowledges, naks or rejects settled items and only then
// releases their bytes, so the buffer bound covers everything the stream
// has delivered and not yet heard back about.
func (a *Archiver) settleLoop() {
	for ss := range a.settles {
		freed := 0
		for _, s := range ss {
			ctx, cancel := context.WithTimeout(context.Background(), a.cfg.RetryMax)
			var err error
			switch s.op {
			case opAck:
				err = s.it.msg.Ack(ctx)
			case opNak:
				err = s.it.msg.Nak(ctx, a.cfg.NakDelay)
			case opReject:
				a.log.Error("audit archiver: rejecting a message that is not an archivable record", "reason", s.reason)
				err = s.it.msg.Reject(ctx, s.reason)
			}
			cancel()
			if err != nil {
				// The stream will deliver it again; the archive recognises it.
				a.log.Warn("audit archiver: settling a message failed", "err", err)
			}
			freed += s.it.size
		}
		a.mu.Lock()
		a.held -= freed
		a.m.bufferBytes.Set(float64(a.held))
		a.mu.Unlock()
		select {
		case a.space <- struct{}{}:
		default:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
