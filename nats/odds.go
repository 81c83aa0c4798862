package nats

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

// The odds backbone on JetStream: every delta goes to <subject>.<event> (so
// one event's deltas stay in order on one subject), carries its "EventID:Seq"
// as Nats-Msg-Id (a re-publish inside the duplicates window is dropped by the
// stream), and subscribers read with an ordered consumer from a stream
// sequence. Raw provider messages go to a second stream.
var (
	_ odds.Bus     = (*OddsBus)(nil)
	_ feed.Journal = (*OddsJournal)(nil)
)

// OddsConfig names the odds streams. Zero fields take DefaultOddsConfig's.
type OddsConfig struct {
	Stream     string        `yaml:"stream"`     // ODDS_DELTAS
	Subject    string        `yaml:"subject"`    // odds.delta: deltas go to <subject>.<event id>
	Duplicates time.Duration `yaml:"duplicates"` // 2m
	MaxAge     time.Duration `yaml:"max_age"`    // 24h
	// MaxBytes bounds the delta stream, oldest discarded first (64 MiB): a
	// consumer further behind than that rebuilds from the engine's
	// snapshots, and a memory stream must stay within the server's memory
	// store (256 MiB embedded), shared with every other memory stream.
	MaxBytes int64 `yaml:"max_bytes"`
	// Memory keeps the delta stream in memory: the engine can rebuild every
	// event's state, so an operator may trade durability for write speed.
	Memory     bool          `yaml:"memory"`
	RawStream  string        `yaml:"raw_stream"`  // ODDS_RAW
	RawSubject string        `yaml:"raw_subject"` // odds.raw: raw messages go to <raw_subject>.<provider>
	RawMaxAge  time.Duration `yaml:"raw_max_age"` // 72h
	Replicas   int           `yaml:"replicas"`    // 1
}

// DefaultOddsConfig returns the defaults.
func DefaultOddsConfig() OddsConfig {
	return OddsConfig{Stream: "ODDS_DELTAS", Subject: "odds.delta", Duplicates: 2 * time.Minute, MaxAge: 24 * time.Hour, MaxBytes: 64 << 20,
		RawStream: "ODDS_RAW", RawSubject: "odds.raw", RawMaxAge: 72 * time.Hour, Replicas: 1}
}

// WithDefaults fills zero fields.
func (c OddsConfig) WithDefaults() OddsConfig {
	d := DefaultOddsConfig()
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&c.Stream, d.Stream}, {&c.Subject, d.Subject}, {&c.RawStream, d.RawStream}, {&c.RawSubject, d.RawSubject},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	for _, f := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.Duplicates, d.Duplicates}, {&c.MaxAge, d.MaxAge}, {&c.RawMaxAge, d.RawMaxAge},
	} {
		if *f.v == 0 {
			*f.v = f.def
		}
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = d.MaxBytes
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	return c
}

// OddsBus is odds.Bus on JetStream.
type OddsBus struct {
	c   *Conn
	cfg OddsConfig
}

// NewOddsBus creates (or updates) the delta stream and returns the bus.
func NewOddsBus(ctx context.Context, c *Conn, cfg OddsConfig) (*OddsBus, error) {
	cfg = cfg.WithDefaults()
	storage := jetstream.FileStorage
	if cfg.Memory {
		storage = jetstream.MemoryStorage
	}
	_, err := c.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.Stream, Subjects: []string{cfg.Subject + ".>"}, Storage: storage,
		Duplicates: cfg.Duplicates, MaxAge: cfg.MaxAge, MaxBytes: cfg.MaxBytes, Replicas: max(1, cfg.Replicas),
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create stream %s", cfg.Stream)
	}
	return &OddsBus{c: c, cfg: cfg}, nil
}

// SubjectToken makes an id safe as one subject token: bytes outside
// [A-Za-z0-9_-] become ~XX (hex), so distinct ids stay distinct.
func SubjectToken(id string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if ch == '-' || ch == '_' || ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' {
			b.WriteByte(ch)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[ch>>4])
		b.WriteByte(hex[ch&15])
	}
	if b.Len() == 0 {
		return "~"
	}
	return b.String()
}

// Publish appends ds asynchronously in order on one connection and waits for
// every acknowledgement. A duplicate acknowledgement (the stream had the
// Nats-Msg-Id already) counts as success.
func (b *OddsBus) Publish(ctx context.Context, epoch string, ds ...odds.Delta) error {
	if err := ctx.Err(); err != nil {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "odds publish canceled")
	}
	futures := make([]jetstream.PubAckFuture, 0, len(ds))
	for _, d := range ds {
		data, err := json.Marshal(d)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode delta %s", odds.MsgID(epoch, d))
		}
		msg := natsgo.NewMsg(b.cfg.Subject + "." + SubjectToken(d.EventID))
		msg.Data = data
		msg.Header.Set(HeaderEpoch, epoch)
		f, err := b.c.JS.PublishMsgAsync(msg, jetstream.WithMsgID(odds.MsgID(epoch, d)))
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "odds publish failed")
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "odds stream refused a delta")
		case <-ctx.Done():
			return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "odds publish not acknowledged in time")
		}
	}
	return nil
}

// Tail returns the stream's last sequence.
func (b *OddsBus) Tail(ctx context.Context) (string, error) {
	st, err := b.c.JS.Stream(ctx, b.cfg.Stream)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read stream %s", b.cfg.Stream)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read stream %s", b.cfg.Stream)
	}
	return strconv.FormatUint(info.State.LastSeq, 10), nil
}

// Subscribe reads the stream with an ordered consumer from the stream
// sequence after from. Positions are stream sequences in decimal.
func (b *OddsBus) Subscribe(ctx context.Context, from string, handle func(odds.BusMessage) error) error {
	cc := jetstream.OrderedConsumerConfig{FilterSubjects: []string{b.cfg.Subject + ".>"}, DeliverPolicy: jetstream.DeliverAllPolicy}
	switch from {
	case odds.FromStart:
	case odds.FromLatest:
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	default:
		seq, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			return buzzer.Errorf(buzzer.EINVALID, "odds stream position %q is not a stream sequence", from)
		}
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := b.c.JS.OrderedConsumer(ctx, b.cfg.Stream, cc)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read stream %s", b.cfg.Stream)
	}
	it, err := cons.Messages()
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read stream %s", b.cfg.Stream)
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
		case <-stopped:
		}
		it.Stop()
	}()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "stream %s subscription closed", b.cfg.Stream)
			}
			continue // missed heartbeats: the ordered consumer recreates itself
		}
		meta, err := msg.Metadata()
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "stream message without metadata")
		}
		var d odds.Delta
		if err := json.Unmarshal(msg.Data(), &d); err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "undecodable delta at %s sequence %d", b.cfg.Stream, meta.Sequence.Stream)
		}
		if err := handle(odds.BusMessage{Epoch: msg.Headers().Get(HeaderEpoch), Delta: d, Position: strconv.FormatUint(meta.Sequence.Stream, 10)}); err != nil {
			return err
		}
	}
}

// OddsJournal records raw provider messages on <raw_subject>.<provider>
// with their receipt time. Record never blocks an adapter: a core publish
// only buffers in the client, and the raw stream captures the subject.
type OddsJournal struct {
	nc      *natsgo.Conn
	subject string
	failed  atomic.Uint64
}

// NewOddsJournal creates (or updates) the raw stream and returns the journal.
func NewOddsJournal(ctx context.Context, c *Conn, cfg OddsConfig) (*OddsJournal, error) {
	cfg = cfg.WithDefaults()
	if _, err := c.EnsureStream(ctx, StreamSpec{Name: cfg.RawStream, Subjects: []string{cfg.RawSubject + ".>"},
		MaxAge: cfg.RawMaxAge, Replicas: cfg.Replicas}); err != nil {
		return nil, err
	}
	return &OddsJournal{nc: c.NC, subject: cfg.RawSubject}, nil
}

// Journal headers.
const (
	HeaderReceived = "Buzzer-Received" // RFC 3339 nanoseconds, UTC
	HeaderProvider = "Buzzer-Provider"
	// HeaderEpoch carries the publishing engine's epoch on a delta.
	HeaderEpoch = "Buzzer-Epoch"
)

// Record publishes m; a failure (client buffer full, connection closed) is
// counted, never returned to the adapter.
func (j *OddsJournal) Record(_ context.Context, m feed.RawMessage) {
	msg := natsgo.NewMsg(j.subject + "." + SubjectToken(m.Provider))
	msg.Header.Set(HeaderReceived, m.Received.UTC().Format(time.RFC3339Nano))
	msg.Header.Set(HeaderProvider, m.Provider)
	msg.Data = m.Payload
	if err := j.nc.PublishMsg(msg); err != nil {
		j.failed.Add(1)
	}
}

// Failed returns how many raw messages could not be journaled.
func (j *OddsJournal) Failed() uint64 { return j.failed.Load() }
