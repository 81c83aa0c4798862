// Package kafka is Buzzer's Kafka engine package (franz-go): it implements
// the odds backbone (odds.Bus) on a Kafka topic keyed by event id, so one
// event's deltas stay in one partition, in order, written by an idempotent
// producer. It is selectable instead of JetStream by configuration and is
// tested against kfake with the same conformance suite. It must never decide
// what a delta means.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

var _ odds.Bus = (*Bus)(nil)

// Config names the brokers and the delta topic.
type Config struct {
	Brokers []string `yaml:"brokers"`
	Topic   string   `yaml:"topic"` // buzzer.odds.deltas
	// Partitions and ReplicationFactor are used when the topic is created.
	Partitions        int32 `yaml:"partitions"`         // 12
	ReplicationFactor int16 `yaml:"replication_factor"` // 1 (3 in production)
	// Linger lets the producer batch (default 2ms).
	Linger time.Duration `yaml:"linger"`
	// RequestTimeout bounds topic creation and metadata reads (default 10s).
	RequestTimeout time.Duration `yaml:"request_timeout"`
}

// DefaultConfig returns the defaults (brokers must still be named).
func DefaultConfig() Config {
	return Config{Topic: "buzzer.odds.deltas", Partitions: 12, ReplicationFactor: 1, Linger: 2 * time.Millisecond, RequestTimeout: 10 * time.Second}
}

// Validate names the bad field.
func (c Config) Validate() error {
	switch {
	case len(c.Brokers) == 0:
		return buzzer.Errorf(buzzer.EINVALID, "kafka brokers must be set")
	case c.Topic == "":
		return buzzer.Errorf(buzzer.EINVALID, "kafka topic must be set")
	case c.Partitions < 1:
		return buzzer.Errorf(buzzer.EINVALID, "kafka partitions must be >= 1")
	case c.ReplicationFactor < 1:
		return buzzer.Errorf(buzzer.EINVALID, "kafka replication_factor must be >= 1")
	case c.Linger < 0 || c.RequestTimeout <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "kafka linger must be >= 0 and request_timeout > 0")
	}
	return nil
}

// Record headers.
const (
	headerMsgID = "buzzer-msg-id"
	headerEpoch = "buzzer-epoch"
)

// Bus is odds.Bus on Kafka. Publish goes through one idempotent producer
// (acks=all): the broker drops a retried batch it has already written, and
// per-partition order survives retries. A delta published again by the
// application (a retry after an unclear failure) is dropped on the consumer
// side: within an epoch an event's seq only grows, so Subscribe skips any
// delta at or below the last it delivered for that event.
type Bus struct {
	cfg      Config
	producer *kgo.Client
}

// New connects the producer and creates the topic if it does not exist.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		// The default partitioner hashes the key (murmur2, as Kafka's own
		// clients do), so an event's deltas always go to one partition.
	)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "bad kafka client configuration")
	}
	b := &Bus{cfg: cfg, producer: cl}
	if err := b.ensureTopic(ctx); err != nil {
		cl.Close()
		return nil, err
	}
	return b, nil
}

// Close flushes nothing (Publish waits for its records) and disconnects.
func (b *Bus) Close() { b.producer.Close() }

func (b *Bus) ensureTopic(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	req := kmsg.NewPtrCreateTopicsRequest()
	t := kmsg.NewCreateTopicsRequestTopic()
	t.Topic, t.NumPartitions, t.ReplicationFactor = b.cfg.Topic, b.cfg.Partitions, b.cfg.ReplicationFactor
	req.Topics = append(req.Topics, t)
	req.TimeoutMillis = int32(b.cfg.RequestTimeout.Milliseconds())
	resp, err := req.RequestWith(ctx, b.producer)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create kafka topic %s", b.cfg.Topic)
	}
	for _, rt := range resp.Topics {
		if err := kerr.ErrorForCode(rt.ErrorCode); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create kafka topic %s", b.cfg.Topic)
		}
	}
	return nil
}

// Publish produces ds keyed by event and waits until every record is
// acknowledged by all in-sync replicas.
func (b *Bus) Publish(ctx context.Context, epoch string, ds ...odds.Delta) error {
	if err := ctx.Err(); err != nil {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "odds publish canceled")
	}
	recs := make([]*kgo.Record, 0, len(ds))
	for _, d := range ds {
		v, err := json.Marshal(d)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode delta %s", odds.MsgID(epoch, d))
		}
		recs = append(recs, &kgo.Record{Key: []byte(d.EventID), Value: v, Headers: []kgo.RecordHeader{
			{Key: headerMsgID, Value: []byte(odds.MsgID(epoch, d))}, {Key: headerEpoch, Value: []byte(epoch)},
		}})
	}
	if err := b.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		if ctx.Err() != nil {
			return buzzer.Wrap(err, buzzer.ETIMEOUT, "odds publish not acknowledged in time")
		}
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "kafka refused odds deltas")
	}
	return nil
}

// partitions reads the topic's partition count.
func (b *Bus) partitions(ctx context.Context) (int32, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(b.cfg.Topic)
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, b.producer)
	if err != nil {
		return 0, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read kafka metadata")
	}
	for _, rt := range resp.Topics {
		if rt.Topic != nil && *rt.Topic == b.cfg.Topic {
			if err := kerr.ErrorForCode(rt.ErrorCode); err != nil {
				return 0, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "kafka topic %s", b.cfg.Topic)
			}
			return int32(len(rt.Partitions)), nil
		}
	}
	return 0, buzzer.Errorf(buzzer.EUNAVAILABLE, "kafka topic %s not found", b.cfg.Topic)
}

// Tail returns every partition's end offset (the next offset to be written).
func (b *Bus) Tail(ctx context.Context) (string, error) {
	n, err := b.partitions(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.RequestTimeout)
	defer cancel()
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	t := kmsg.NewListOffsetsRequestTopic()
	t.Topic = b.cfg.Topic
	for p := int32(0); p < n; p++ {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1 // -1: the latest offset
		t.Partitions = append(t.Partitions, rp)
	}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, b.producer)
	if err != nil {
		return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot list kafka offsets")
	}
	next := map[int32]int64{}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return "", buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot list kafka offsets")
			}
			next[rp.Partition] = rp.Offset
		}
	}
	if int32(len(next)) != n {
		return "", buzzer.Errorf(buzzer.EUNAVAILABLE, "kafka listed %d of %d partitions", len(next), n)
	}
	return formatPosition(next), nil
}

// Position is the next offset to read per partition, encoded as
// "partition:offset" pairs joined by commas ("0:17,3:5"); partitions not
// named start from their beginning.
func parsePosition(s string) (map[int32]int64, error) {
	out := map[int32]int64{}
	if s == odds.FromStart || s == odds.FromLatest {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		ps, os, ok := strings.Cut(pair, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || p < 0 || o < 0 {
			return nil, buzzer.Errorf(buzzer.EINVALID, "odds stream position %q is not a kafka position", s)
		}
		out[int32(p)] = o
	}
	return out, nil
}

func formatPosition(next map[int32]int64) string {
	ps := make([]int32, 0, len(next))
	for p := range next {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	var sb strings.Builder
	for i, p := range ps {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatInt(int64(p), 10))
		sb.WriteByte(':')
		sb.WriteString(strconv.FormatInt(next[p], 10))
	}
	return sb.String()
}

// Subscribe reads every partition of the topic directly (no consumer group:
// each fan-out node reads everything) from the position after from.
func (b *Bus) Subscribe(ctx context.Context, from string, handle func(odds.BusMessage) error) error {
	next, err := parsePosition(from)
	if err != nil {
		return err
	}
	n, err := b.partitions(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	offsets := map[int32]kgo.Offset{}
	for p := int32(0); p < n; p++ {
		if o, ok := next[p]; ok {
			offsets[p] = kgo.NewOffset().At(o)
		} else if from == odds.FromLatest {
			offsets[p] = kgo.NewOffset().AtEnd()
		} else {
			offsets[p] = kgo.NewOffset().AtStart()
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{b.cfg.Topic: offsets}),
		kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "bad kafka consumer configuration")
	}
	defer cl.Close()
	type key struct{ epoch, event string }
	last := map[key]uint64{}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return buzzer.Wrap(ferr, buzzer.EUNAVAILABLE, "kafka fetch failed")
		}
		var herr error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, r := range p.Records {
				if herr != nil {
					return
				}
				next[r.Partition] = r.Offset + 1
				var d odds.Delta
				if err := json.Unmarshal(r.Value, &d); err != nil {
					herr = buzzer.Wrap(err, buzzer.EINTERNAL, "undecodable delta at %s/%d@%d", r.Topic, r.Partition, r.Offset)
					return
				}
				epoch := ""
				for _, h := range r.Headers {
					if h.Key == headerEpoch {
						epoch = string(h.Value)
					}
				}
				k := key{epoch, d.EventID}
				if d.Seq <= last[k] {
					continue // the application published it again
				}
				last[k] = d.Seq
				herr = handle(odds.BusMessage{Epoch: epoch, Delta: d, Position: formatPosition(next)})
			}
		})
		if herr != nil {
			return herr
		}
	}
}
