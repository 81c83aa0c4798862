package rng

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Config configures a Service. Zero values take the documented defaults.
type Config struct {
	// Origin is the log's identity: the checkpoint origin line and the
	// signer's key name, e.g. "rng.nj.buzzer.example/v1". Required; must
	// equal Signer.Name().
	Origin string
	// Jurisdiction is stamped into every record, e.g. "US-NJ". Required.
	Jurisdiction string
	// MaxBatch bounds how many draws one append carries. Default 256.
	MaxBatch int
	// BatchWait is how long the batcher lingers for more draws after the
	// first one of a batch. Default 0: take what is queued and go; under
	// load batches grow on their own while the previous append runs.
	BatchWait time.Duration
	// CheckpointInterval: a new checkpoint is signed this often if the log
	// grew. Default 1s.
	CheckpointInterval time.Duration
	// CheckpointEvery: a new checkpoint is signed as soon as this many
	// records are not yet covered. Default 1000.
	CheckpointEvery int64
	// AppendTimeout bounds one store append or checkpoint save. Default 5s.
	AppendTimeout time.Duration
	// Random is the CSPRNG read at request time; it must be safe for
	// concurrent use. Default crypto/rand.Reader.
	Random io.Reader
	// Clock stamps records and checkpoints. Default buzzer.SystemClock.
	Clock buzzer.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the service's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (c Config) withDefaults() Config {
	if c.MaxBatch == 0 {
		c.MaxBatch = 256
	}
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = time.Second
	}
	if c.CheckpointEvery == 0 {
		c.CheckpointEvery = 1000
	}
	if c.AppendTimeout == 0 {
		c.AppendTimeout = 5 * time.Second
	}
	if c.Random == nil {
		c.Random = rand.Reader
	}
	if c.Clock == nil {
		c.Clock = buzzer.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports the first bad setting as an EINVALID error.
func (c Config) Validate() error {
	switch {
	case c.Origin == "":
		return buzzer.Errorf(buzzer.EINVALID, "rng: origin is required")
	case checkText("jurisdiction", c.Jurisdiction, MaxJurisdictionLen, true) != nil:
		return buzzer.Errorf(buzzer.EINVALID, "rng: jurisdiction is required (at most %d printable bytes)", MaxJurisdictionLen)
	case c.MaxBatch < 0 || c.MaxBatch > 10000:
		return buzzer.Errorf(buzzer.EINVALID, "rng: max batch must be between 1 and 10000")
	case c.BatchWait < 0 || c.BatchWait > time.Second:
		return buzzer.Errorf(buzzer.EINVALID, "rng: batch wait must be between 0 and 1s")
	case c.CheckpointInterval < 0:
		return buzzer.Errorf(buzzer.EINVALID, "rng: checkpoint interval must be positive")
	case c.CheckpointEvery < 0:
		return buzzer.Errorf(buzzer.EINVALID, "rng: checkpoint entry count must be positive")
	case c.AppendTimeout < 0:
		return buzzer.Errorf(buzzer.EINVALID, "rng: append timeout must be positive")
	}
	return nil
}

// Service draws random values, logs them and serves checkpoints and proofs.
// One Service is the only writer of its Store.
type Service struct {
	store    Store
	signer   Signer
	verifier note.Verifier
	cfg      Config
	log      *slog.Logger
	m        *metrics

	reqs   chan *pending
	cpReqs chan chan error
	stop   chan struct{}
	done   chan struct{}
	close  sync.Once

	// f is the committed tree's frontier; nil after a failed append, until the
	// owner goroutine reloads it from the store. Owned by run.
	f *frontier

	mu     sync.RWMutex
	latest SavedCheckpoint // newest checkpoint issued or loaded; guarded by mu
	cp     Checkpoint      // latest, parsed; guarded by mu
}

type pending struct {
	id   string
	data []byte
	done chan result
}

type result struct {
	index int64
	err   error
}

// NewService opens the log in store (continuing it if it has records),
// checks the stored tree against its latest checkpoint, and starts the owner
// goroutine that batches appends and issues checkpoints. Close stops it.
func NewService(ctx context.Context, store Store, signer Signer, cfg Config) (*Service, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if signer == nil || signer.Name() != cfg.Origin {
		return nil, buzzer.Errorf(buzzer.EINVALID, "rng: the signer's key name must equal the log origin %q", cfg.Origin)
	}
	v, err := NewVerifier(signer.VerifierKey())
	if err != nil {
		return nil, err
	}
	if v.Name() != signer.Name() || v.KeyHash() != signer.KeyHash() {
		return nil, buzzer.Errorf(buzzer.EINVALID, "rng: the signer's verifier key does not match its key")
	}
	s := &Service{
		store: store, signer: signer, verifier: v, cfg: cfg, log: cfg.Logger,
		reqs:   make(chan *pending, cfg.MaxBatch),
		cpReqs: make(chan chan error),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	s.m = newMetrics(s)
	if cfg.Registerer != nil {
		if err := s.m.register(cfg.Registerer); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "rng: registering metrics failed")
		}
	}
	if err := s.load(ctx); err != nil {
		return nil, err
	}
	if s.latest.Note == nil || s.latest.Size < s.f.size {
		// A log always has a checkpoint covering everything appended before
		// this start, so proofs work at once.
		if err := s.issueCheckpoint(); err != nil {
			return nil, err
		}
	}
	go s.run()
	return s, nil
}

// load reads the frontier and the latest checkpoint and checks that the
// stored tree still has the root that checkpoint signed.
func (s *Service) load(ctx context.Context) error {
	size, err := s.store.TreeSize(ctx)
	if err != nil {
		return err
	}
	hs, err := s.store.ReadHashes(ctx, frontierIndexes(size))
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "rng: reading the log's frontier failed")
	}
	f, err := newFrontier(size, hs)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "rng: the store returned a bad frontier")
	}
	saved, err := s.store.LatestCheckpoint(ctx)
	switch buzzer.ErrorCode(err) {
	case "":
		cp, err := ParseCheckpoint(noteText(saved.Note))
		if err != nil {
			return buzzer.Wrap(err, buzzer.ECONFLICT, "rng: the latest stored checkpoint is malformed")
		}
		if cp.Origin != s.cfg.Origin {
			return buzzer.Errorf(buzzer.EINVALID, "rng: the store holds the log %q, not %q", cp.Origin, s.cfg.Origin)
		}
		if cp.Size > size {
			return tampered(size, cp.Size, "checkpoint covers more records than the store holds")
		}
		root, err := tlog.TreeHash(cp.Size, storeHashReader(ctx, s.store))
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "rng: reading the log failed")
		}
		if root != cp.Hash {
			return tampered(-1, cp.Size, "stored tree no longer has the root this checkpoint signed")
		}
		s.setLatest(saved, cp)
	case buzzer.ENOTFOUND:
	default:
		return err
	}
	s.f = f
	return nil
}

// noteText returns the text of a signed note (everything up to the blank
// line before the signatures), unverified.
func noteText(msg []byte) []byte {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return nil
	}
	return msg[:i+1]
}

func (s *Service) setLatest(saved SavedCheckpoint, cp Checkpoint) {
	s.mu.Lock()
	s.latest, s.cp = saved, cp
	s.mu.Unlock()
}

// Close stops the owner goroutine and waits for it; draws still queued fail
// with EUNAVAILABLE. It does not close the store.
func (s *Service) Close() error {
	s.close.Do(func() { close(s.stop) })
	<-s.done
	return nil
}

// VerifierKey returns the log's public verifier key in signed-note format.
func (s *Service) VerifierKey() string { return s.signer.VerifierKey() }

// Origin returns the log's origin line.
func (s *Service) Origin() string { return s.cfg.Origin }

// Draw validates req, draws fresh values from the CSPRNG, appends the record
// to the log and returns it once the append is durable. If the append fails
// the error is returned and the values are discarded, never revealed.
func (s *Service) Draw(ctx context.Context, req DrawRequest) (Draw, error) {
	if err := req.Validate(); err != nil {
		return Draw{}, err
	}
	select {
	case <-s.stop:
		return Draw{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG service is shutting down")
	default:
	}
	id, err := uuid.NewRandomFromReader(s.cfg.Random)
	if err != nil {
		return Draw{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "random source failed")
	}
	ints, raw, err := NewSampler(s.cfg.Random).sample(req)
	if err != nil {
		return Draw{}, err
	}
	rec := newRecord(id.String(), s.cfg.Clock.Now(), s.cfg.Jurisdiction, req, ints, raw)
	data, err := rec.MarshalBinary()
	if err != nil {
		return Draw{}, buzzer.Wrap(err, buzzer.EINTERNAL, "encoding the draw record failed")
	}
	p := &pending{id: rec.ID, data: data, done: make(chan result, 1)}
	select {
	case s.reqs <- p:
	case <-ctx.Done():
		return Draw{}, buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "the draw was not logged before the deadline; no values are returned")
	case <-s.stop:
		return Draw{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG service is shutting down")
	}
	select {
	case r := <-p.done:
		if r.err != nil {
			return Draw{}, r.err
		}
		s.m.draws.WithLabelValues(string(req.Kind)).Inc()
		return Draw{Record: rec, Index: r.index}, nil
	case <-s.done:
		select {
		case r := <-p.done: // answered just before the owner stopped
			if r.err != nil {
				return Draw{}, r.err
			}
			s.m.draws.WithLabelValues(string(req.Kind)).Inc()
			return Draw{Record: rec, Index: r.index}, nil
		default:
			// Enqueued after the owner's last drain: never appended.
			return Draw{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG service is shutting down")
		}
	case <-ctx.Done():
		// The record may still be logged; the values are never revealed.
		return Draw{}, buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "the draw was not confirmed before the deadline; no values are returned")
	}
}

// run is the owner goroutine: it alone appends and signs.
func (s *Service) run() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.CheckpointInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			s.failQueued()
			return
		case p := <-s.reqs:
			s.commit(s.collect(p))
			if s.f != nil && s.f.size-s.latestSize() >= s.cfg.CheckpointEvery {
				s.checkpointIfGrown()
			}
		case <-tick.C:
			s.checkpointIfGrown()
		case reply := <-s.cpReqs:
			reply <- s.checkpointIfGrown()
		}
	}
}

// collect gathers a batch: first, everything already queued, and (with
// BatchWait) what arrives within the wait, up to MaxBatch.
func (s *Service) collect(first *pending) []*pending {
	batch := []*pending{first}
	var wait <-chan time.Time
	if s.cfg.BatchWait > 0 {
		t := time.NewTimer(s.cfg.BatchWait)
		defer t.Stop()
		wait = t.C
	}
	for len(batch) < s.cfg.MaxBatch {
		if wait == nil {
			select {
			case p := <-s.reqs:
				batch = append(batch, p)
				continue
			default:
				return batch
			}
		}
		select {
		case p := <-s.reqs:
			batch = append(batch, p)
		case <-wait:
			return batch
		case <-s.stop:
			return batch
		}
	}
	return batch
}

func (s *Service) failQueued() {
	for {
		select {
		case p := <-s.reqs:
			p.done <- result{err: buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG service is shutting down")}
		default:
			return
		}
	}
}

// commit appends one batch with a single store call.
func (s *Service) commit(batch []*pending) {
	fail := func(err error) {
		s.m.appendFailures.Inc()
		s.log.Error("rng: append failed; the batch's draws are discarded", "draws", len(batch), "err", err)
		e := buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the draw could not be logged; no values are returned")
		for _, p := range batch {
			p.done <- result{err: e}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendTimeout)
	defer cancel()
	if s.f == nil {
		if err := s.reload(ctx); err != nil {
			fail(err)
			return
		}
	}
	stage := s.f.clone()
	records := make([]StoredRecord, len(batch))
	var hashes []tlog.Hash
	for i, p := range batch {
		hs, err := stage.append(p.data)
		if err != nil {
			fail(err)
			return
		}
		hashes = append(hashes, hs...)
		records[i] = StoredRecord{Index: stage.size - 1, ID: p.id, Data: p.data}
	}
	start := time.Now()
	err := s.store.Append(ctx, s.f.size, records, hashes)
	s.m.appendSeconds.Observe(time.Since(start).Seconds())
	s.m.batchSize.Observe(float64(len(batch)))
	if err != nil {
		// The outcome may be unknown (e.g. a commit whose reply was lost), so
		// the frontier is reloaded from the store before the next batch.
		s.f = nil
		fail(err)
		return
	}
	s.f = stage
	for i, p := range batch {
		p.done <- result{index: records[i].Index}
	}
}

// reload re-reads the frontier after a failed append.
func (s *Service) reload(ctx context.Context) error {
	size, err := s.store.TreeSize(ctx)
	if err != nil {
		return err
	}
	hs, err := s.store.ReadHashes(ctx, frontierIndexes(size))
	if err != nil {
		return err
	}
	f, err := newFrontier(size, hs)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

func (s *Service) latestSize() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.latest.Note == nil {
		return -1
	}
	return s.latest.Size
}

// checkpointIfGrown signs and saves a checkpoint if records were appended
// since the latest one. Called only by the owner goroutine.
func (s *Service) checkpointIfGrown() error {
	if s.f == nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendTimeout)
		err := s.reload(ctx)
		cancel()
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the RNG log is unavailable")
		}
	}
	if s.f.size <= s.latestSize() {
		return nil
	}
	return s.issueCheckpoint()
}

// issueCheckpoint signs the current tree and saves the checkpoint.
func (s *Service) issueCheckpoint() error {
	root, err := s.f.root()
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "computing the tree root failed")
	}
	cp := Checkpoint{Origin: s.cfg.Origin, Size: s.f.size, Hash: root}
	msg, err := SignCheckpoint(cp, s.signer)
	if err != nil {
		s.log.Error("rng: signing a checkpoint failed", "size", cp.Size, "err", err)
		return err
	}
	saved := SavedCheckpoint{Size: cp.Size, Note: msg, Time: s.cfg.Clock.Now().UTC().Truncate(time.Microsecond)}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.AppendTimeout)
	defer cancel()
	if err := s.store.SaveCheckpoint(ctx, saved); err != nil {
		s.log.Error("rng: saving a checkpoint failed", "size", cp.Size, "err", err)
		if buzzer.ErrorCode(err) == buzzer.ECONFLICT {
			// Saved by an earlier attempt whose reply was lost: use the stored one.
			if got, lerr := s.store.LatestCheckpoint(ctx); lerr == nil {
				if c, perr := ParseCheckpoint(noteText(got.Note)); perr == nil && c.Size == cp.Size && c.Hash == cp.Hash {
					s.setLatest(got, c)
					return nil
				}
			}
		}
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "saving the checkpoint failed")
	}
	s.setLatest(saved, cp)
	s.m.checkpoints.Inc()
	return nil
}

// Checkpoint returns the latest signed checkpoint.
func (s *Service) Checkpoint(ctx context.Context) (SavedCheckpoint, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.latest.Note == nil {
		return SavedCheckpoint{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "no checkpoint has been issued yet")
	}
	return s.latest, nil
}

// requestCheckpoint asks the owner goroutine to cover everything appended so far.
func (s *Service) requestCheckpoint(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.cpReqs <- reply:
	case <-ctx.Done():
		return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "waiting for a checkpoint timed out")
	case <-s.stop:
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "the RNG service is shutting down")
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "waiting for a checkpoint timed out")
	}
}

// Proof returns the draw's record with its inclusion proof against the latest
// checkpoint, asking for a new checkpoint first if the latest does not cover it.
func (s *Service) Proof(ctx context.Context, drawID string) (Proof, error) {
	if _, err := uuid.Parse(drawID); err != nil {
		return Proof{}, buzzer.Errorf(buzzer.EINVALID, "draw id must be a UUID")
	}
	rec, err := s.store.RecordByID(ctx, uuid.MustParse(drawID).String())
	if err != nil {
		return Proof{}, err
	}
	cp, err := s.Checkpoint(ctx)
	if err != nil || rec.Index >= cp.Size {
		if err := s.requestCheckpoint(ctx); err != nil {
			return Proof{}, err
		}
		if cp, err = s.Checkpoint(ctx); err != nil {
			return Proof{}, err
		}
		if rec.Index >= cp.Size {
			return Proof{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "the draw is not yet covered by a checkpoint")
		}
	}
	hashes, err := tlog.ProveRecord(cp.Size, rec.Index, storeHashReader(ctx, s.store))
	if err != nil {
		return Proof{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "building the inclusion proof failed")
	}
	return Proof{Index: rec.Index, Data: rec.Data, Checkpoint: cp.Note, Hashes: hashes}, nil
}

// Consistency returns the proof that the tree of size to extends the tree of
// size from (0 <= from <= to <= the latest checkpoint's size).
func (s *Service) Consistency(ctx context.Context, from, to int64) (ConsistencyProof, error) {
	cp, err := s.Checkpoint(ctx)
	if err != nil {
		return ConsistencyProof{}, err
	}
	if from < 0 || from > to || to > cp.Size {
		return ConsistencyProof{}, buzzer.Errorf(buzzer.EINVALID, "need 0 <= from <= to <= %d (the latest checkpoint's size)", cp.Size)
	}
	p := ConsistencyProof{From: from, To: to, Hashes: tlog.TreeProof{}}
	if from == 0 || from == to {
		return p, nil
	}
	p.Hashes, err = tlog.ProveTree(to, from, storeHashReader(ctx, s.store))
	if err != nil {
		return ConsistencyProof{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "building the consistency proof failed")
	}
	return p, nil
}

// metrics are the service's Prometheus collectors.
type metrics struct {
	draws          *prometheus.CounterVec
	batchSize      prometheus.Histogram
	appendSeconds  prometheus.Histogram
	appendFailures prometheus.Counter
	checkpoints    prometheus.Counter
	checkpointAge  prometheus.GaugeFunc
}

func newMetrics(s *Service) *metrics {
	return &metrics{
		draws: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "buzzer_rng_draws_total", Help: "Draws durably logged and returned, by kind.",
		}, []string{"kind"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "buzzer_rng_append_batch_size", Help: "Draws per log append (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 11),
		}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "buzzer_rng_append_duration_seconds", Help: "Latency of one durable log append.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		appendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_rng_append_failures_total", Help: "Log appends that failed (their draws were discarded).",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "buzzer_rng_checkpoints_total", Help: "Checkpoints signed and saved.",
		}),
		checkpointAge: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "buzzer_rng_checkpoint_age_seconds", Help: "Age of the latest signed checkpoint.",
		}, func() float64 {
			s.mu.RLock()
			t := s.latest.Time
			s.mu.RUnlock()
			if t.IsZero() {
				return 0
			}
			return s.cfg.Clock.Now().Sub(t).Seconds()
		}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.draws, m.batchSize, m.appendSeconds, m.appendFailures, m.checkpoints, m.checkpointAge} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
