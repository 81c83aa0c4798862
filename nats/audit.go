package nats

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
)

// The audit stream: the relay publishes captured records to it
// (AuditStream implements audit.Stream), the archiver consumes them through
// one durable pull consumer (AuditSource implements audit.Source), and the
// consumer's acknowledgement floor, which moves only when the archiver acks
// after its fsync, is what lets the relay delete records from the outbox.
var (
	_ audit.Stream  = (*AuditStream)(nil)
	_ audit.Source  = (*AuditSource)(nil)
	_ audit.Message = (*auditMsg)(nil)
)

// AuditConfig names the audit stream, its dead letters and the archiver's
// consumer. Zero fields take DefaultAuditConfig's.
type AuditConfig struct {
	Stream      string `yaml:"stream"`       // AUDIT
	Subject     string `yaml:"subject"`      // audit.records: records go to <subject>.<jurisdiction>
	DeadStream  string `yaml:"dead_stream"`  // AUDIT_DEAD
	DeadSubject string `yaml:"dead_subject"` // audit.dead: rejected records go to <dead_subject>.<jurisdiction>
	Consumer    string `yaml:"consumer"`     // audit-archiver (durable)
	// Duplicates is the window in which a re-published record id is dropped
	// by the stream (the archiver de-duplicates beyond it).
	Duplicates time.Duration `yaml:"duplicates"`
	// MaxAge bounds how long the stream keeps a message (0: forever). A
	// message that expires before it was archived is published again by
	// the relay, which still holds it.
	MaxAge        time.Duration `yaml:"max_age"`
	AckWait       time.Duration `yaml:"ack_wait"`        // redelivery after an unacknowledged delivery (30 s)
	MaxAckPending int           `yaml:"max_ack_pending"` // deliveries outstanding at once (100 000)
	FetchWait     time.Duration `yaml:"fetch_wait"`      // longest wait of one Fetch (1 s)
	Replicas      int           `yaml:"replicas"`
	// BatchRecords is how many records (of one jurisdiction, in the relay's
	// order, at most BatchBytes in all) one stream message carries,
	// separated by newlines (128; 1: one record a message). A file stream
	// syncs every message it stores, so records per message is what the
	// audit's throughput scales with.
	BatchRecords int `yaml:"batch_records"`
}

// BatchBytes bounds the records one audit message carries (a single larger
// record still goes alone), well inside NATS's default 1 MiB payload.
const BatchBytes = 256 << 10

// DefaultAuditConfig returns the defaults.
func DefaultAuditConfig() AuditConfig {
	return AuditConfig{Stream: "AUDIT", Subject: "audit.records", DeadStream: "AUDIT_DEAD", DeadSubject: "audit.dead",
		Consumer: "audit-archiver", Duplicates: 2 * time.Minute, MaxAge: 7 * 24 * time.Hour, AckWait: 30 * time.Second,
		MaxAckPending: 100_000, FetchWait: time.Second, Replicas: 1, BatchRecords: 128}
}

// WithDefaults fills zero fields.
func (c AuditConfig) WithDefaults() AuditConfig {
	d := DefaultAuditConfig()
	str := func(v *string, def string) {
		if *v == "" {
			*v = def
		}
	}
	str(&c.Stream, d.Stream)
	str(&c.Subject, d.Subject)
	str(&c.DeadStream, d.DeadStream)
	str(&c.DeadSubject, d.DeadSubject)
	str(&c.Consumer, d.Consumer)
	if c.Duplicates == 0 {
		c.Duplicates = d.Duplicates
	}
	if c.AckWait == 0 {
		c.AckWait = d.AckWait
	}
	if c.MaxAckPending == 0 {
		c.MaxAckPending = d.MaxAckPending
	}
	if c.FetchWait == 0 {
		c.FetchWait = d.FetchWait
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.BatchRecords == 0 {
		c.BatchRecords = d.BatchRecords
	}
	return c
}

// Validate names the first bad field.
func (c AuditConfig) Validate() error {
	bad := func(f string) error { return buzzer.Errorf(buzzer.EINVALID, "nats audit %s", f) }
	switch {
	case c.Stream == "" || c.DeadStream == "" || c.Stream == c.DeadStream || c.Consumer == "":
		return bad("stream, dead_stream (different) and consumer must be set")
	case !subjectPrefix(c.Subject) || !subjectPrefix(c.DeadSubject) || c.Subject == c.DeadSubject ||
		strings.HasPrefix(c.Subject+".", c.DeadSubject+".") || strings.HasPrefix(c.DeadSubject+".", c.Subject+"."):
		return bad("subject and dead_subject must be distinct, non-overlapping subject prefixes without wildcards")
	case c.Duplicates <= 0 || c.AckWait <= 0 || c.FetchWait <= 0 || c.MaxAge < 0:
		return bad("durations must be positive (max_age may be 0: forever)")
	case c.MaxAckPending < 1:
		return bad("max_ack_pending must be >= 1")
	case c.BatchRecords < 1 || c.BatchRecords > 4096:
		return bad("batch_records must be 1..4096")
	}
	return nil
}

func subjectPrefix(s string) bool {
	if s == "" || strings.ContainsAny(s, "*> \t\r\n") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return false
	}
	return true
}

// ensureAudit creates or updates the audit streams and the archiver's
// consumer.
func ensureAudit(ctx context.Context, c *Conn, cfg AuditConfig) (AuditConfig, jetstream.Stream, jetstream.Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, err
	}
	st, err := c.EnsureStream(ctx, StreamSpec{Name: cfg.Stream, Subjects: []string{cfg.Subject + ".>"}, Regulated: true,
		Duplicates: cfg.Duplicates, MaxAge: cfg.MaxAge, Replicas: cfg.Replicas})
	if err != nil {
		return cfg, nil, nil, err
	}
	if _, err := c.EnsureStream(ctx, StreamSpec{Name: cfg.DeadStream, Subjects: []string{cfg.DeadSubject + ".>"}, Regulated: true,
		Duplicates: cfg.Duplicates, Replicas: cfg.Replicas}); err != nil {
		return cfg, nil, nil, err
	}
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		MaxDeliver:    -1,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		FilterSubject: cfg.Subject + ".>",
		Replicas:      cfg.Replicas,
	})
	if err != nil {
		return cfg, nil, nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create the audit archiver's consumer %s", cfg.Consumer)
	}
	return cfg, st, cons, nil
}

// AuditStream publishes captured records to the audit stream and reports
// the archiver's progress on it.
type AuditStream struct {
	cfg  AuditConfig
	js   jetstream.JetStream
	st   jetstream.Stream
	cons jetstream.Consumer
}

// NewAuditStream ensures the audit streams and consumer exist and returns
// the relay's side of them.
func NewAuditStream(ctx context.Context, c *Conn, cfg AuditConfig) (*AuditStream, error) {
	cfg, st, cons, err := ensureAudit(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	return &AuditStream{cfg: cfg, js: c.JS, st: st, cons: cons}, nil
}

// Publish implements audit.Stream. Consecutive records of one jurisdiction
// go in one message, up to BatchRecords and BatchBytes, separated by
// newlines (canonical records hold none); each message is published
// asynchronously with a Nats-Msg-Id that names exactly the records it
// holds (msgID), then every acknowledgement is awaited, and each record is
// acknowledged with its message's stream sequence.
func (s *AuditStream) Publish(ctx context.Context, recs []audit.Captured) ([]audit.Ack, error) {
	type message struct{ from, to int } // recs[from:to]
	var msgs []message
	for i := 0; i < len(recs); {
		j, size := i+1, len(recs[i].Data)
		for j < len(recs) && j-i < s.cfg.BatchRecords && recs[j].Jurisdiction == recs[i].Jurisdiction && size+1+len(recs[j].Data) <= BatchBytes {
			size += 1 + len(recs[j].Data)
			j++
		}
		msgs = append(msgs, message{i, j})
		i = j
	}
	futs := make([]jetstream.PubAckFuture, len(msgs))
	var firstErr error
	for k, g := range msgs {
		m := natsgo.NewMsg(s.cfg.Subject + "." + recs[g.from].Jurisdiction)
		m.Data = joinRecords(recs[g.from:g.to])
		f, err := s.js.PublishMsgAsync(m, jetstream.WithMsgID(batchID(recs[g.from:g.to])), jetstream.WithExpectStream(s.cfg.Stream))
		if err != nil {
			firstErr = err
			break
		}
		futs[k] = f
	}
	acks := make([]audit.Ack, len(recs))
	n := 0
	for k, f := range futs {
		if f == nil {
			continue
		}
		select {
		case pa := <-f.Ok():
			for i := msgs[k].from; i < msgs[k].to; i++ {
				acks[i] = audit.Ack{StreamSeq: pa.Sequence, Duplicate: pa.Duplicate}
			}
			n++
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			if n == 0 {
				return nil, buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "the audit stream did not acknowledge in time")
			}
			return acks, nil
		}
	}
	if n == 0 && firstErr != nil {
		return nil, buzzer.Wrap(firstErr, buzzer.EUNAVAILABLE, "cannot publish to the audit stream")
	}
	return acks, nil
}

func joinRecords(recs []audit.Captured) []byte {
	if len(recs) == 1 {
		return recs[0].Data
	}
	var b []byte
	for i, r := range recs {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, r.Data...)
	}
	return b
}

// batchID is a message's Nats-Msg-Id: a lone record's msgID, or for
// several a hash of theirs, so the stream drops a message only when it
// holds exactly the same records, sent as often, already.
func batchID(recs []audit.Captured) string {
	if len(recs) == 1 {
		return msgID(recs[0])
	}
	h := sha256.New()
	for _, r := range recs {
		h.Write([]byte(msgID(r)))
		h.Write([]byte{'\n'})
	}
	return "batch-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// msgID is the record id, or for a record the stream lost and the relay
// sends again, the id with the resend count: the stream's duplicate window
// may still hold the lost message's id and would swallow the re-send.
func msgID(r audit.Captured) string {
	if r.Resends == 0 {
		return r.ID
	}
	return r.ID + "~" + strconv.Itoa(r.Resends)
}

// Progress implements audit.Stream: the archiver consumer's acknowledgement
// floor, then the stream's first and last sequence. The order matters: the
// server also moves the floor past messages the stream dropped (purge,
// expiry), so only a message still held after the floor was read is known
// to be acknowledged (see audit.CaptureStore.Release).
func (s *AuditStream) Progress(ctx context.Context) (audit.Progress, error) {
	ci, err := s.cons.Info(ctx)
	if err != nil {
		return audit.Progress{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit archiver's progress")
	}
	si, err := s.st.Info(ctx)
	if err != nil {
		return audit.Progress{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit stream's state")
	}
	return audit.Progress{First: si.State.FirstSeq, Last: si.State.LastSeq, Archived: ci.AckFloor.Stream}, nil
}

// AuditSource is the archiver's durable pull consumer on the audit stream.
type AuditSource struct {
	cfg  AuditConfig
	js   jetstream.JetStream
	cons jetstream.Consumer
}

// NewAuditSource ensures the audit streams and consumer exist and returns
// the archiver's side of them.
func NewAuditSource(ctx context.Context, c *Conn, cfg AuditConfig) (*AuditSource, error) {
	cfg, _, cons, err := ensureAudit(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	return &AuditSource{cfg: cfg, js: c.JS, cons: cons}, nil
}

// Fetch implements audit.Source: one pull of at most maxMessages and
// maxBytes, waiting at most FetchWait.
func (s *AuditSource) Fetch(ctx context.Context, maxMessages, maxBytes int) ([]audit.Message, error) {
	fctx, cancel := context.WithTimeout(ctx, s.cfg.FetchWait)
	defer cancel()
	batch, err := s.cons.Fetch(maxMessages, jetstream.FetchMaxBytes(maxBytes), jetstream.FetchContext(fctx))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot fetch from the audit stream")
	}
	var out []audit.Message
	for m := range batch.Messages() {
		out = append(out, &auditMsg{m: m, src: s})
	}
	if err := batch.Error(); err != nil && len(out) == 0 && !quietFetchEnd(err) {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "fetching from the audit stream failed")
	}
	return out, nil
}

// quietFetchEnd reports whether a pull ended only because its wait ran out.
func quietFetchEnd(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, natsgo.ErrTimeout) || errors.Is(err, jetstream.ErrNoMessages)
}

type auditMsg struct {
	m   jetstream.Msg
	src *AuditSource
}

func (a *auditMsg) Data() []byte { return a.m.Data() }

// Ack sends the acknowledgement without waiting for the server's reply: the
// relay trusts only the consumer's ack floor, which moves when the server
// has recorded the ack, and an ack that is lost only means the message is
// delivered again after AckWait and recognised by the archive as a
// duplicate. Waiting for a reply per message would bound the archiver's
// throughput by round trips.
func (a *auditMsg) Ack(context.Context) error { return a.m.Ack() }

func (a *auditMsg) Nak(_ context.Context, delay time.Duration) error { return a.m.NakWithDelay(delay) }

// Reject stores the message in the dead-letter stream (same message id, the
// reason in a header) and only then terminates its delivery, so a record
// the archiver cannot write is kept durably, never dropped.
func (a *auditMsg) Reject(ctx context.Context, reason string) error {
	subj := a.src.cfg.DeadSubject
	if rest, ok := strings.CutPrefix(a.m.Subject(), a.src.cfg.Subject+"."); ok {
		subj += "." + rest
	} else {
		subj += ".unknown"
	}
	dm := natsgo.NewMsg(subj)
	dm.Data = a.m.Data()
	dm.Header.Set("Buzzer-Audit-Reject-Reason", reason)
	var opts []jetstream.PublishOpt
	if id := a.m.Headers().Get(jetstream.MsgIDHeader); id != "" {
		opts = append(opts, jetstream.WithMsgID(id))
	}
	if _, err := a.src.js.PublishMsg(ctx, dm, opts...); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot dead-letter an audit message")
	}
	return a.m.TermWithReason(reason)
}
