package odds

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Bus is the backbone between the engine and everything downstream of it
// (fan-out nodes, analytics): an ordered, deduplicated stream of deltas keyed
// by event. JetStream (nats.OddsBus) and Kafka (kafka.Bus) implement it; one
// conformance suite (oddstest.RunBus) runs against both.
type Bus interface {
	// Publish appends ds, all of one engine epoch, in order and returns once
	// the stream holds all of them durably. Deltas of one event stay in the
	// order they are published. It is safe to retry after an error: a delta
	// whose MsgID was appended already is not delivered twice.
	Publish(ctx context.Context, epoch string, ds ...Delta) error
	// Subscribe delivers every delta appended after position from (FromStart:
	// all the stream still holds; FromLatest: only what comes next) to handle, in order per event, until ctx is
	// done (it then returns nil) or handle returns an error (returned as is).
	// handle runs on one goroutine; a slow handle slows only this subscription.
	Subscribe(ctx context.Context, from string, handle func(BusMessage) error) error
	// Tail returns the position after the newest delta appended so far: a
	// subscription from it gets exactly what is appended afterwards. A
	// consumer reads Tail, then loads snapshots, then subscribes from the
	// tail, and misses nothing in between.
	Tail(ctx context.Context) (string, error)
}

// Subscription starting points besides a delivered Position.
const (
	// FromStart subscribes from the oldest delta the stream holds.
	FromStart = ""
	// FromLatest subscribes to deltas appended after the subscription starts.
	FromLatest = "latest"
)

// BusMessage is one delivered delta, the epoch of the engine that published
// it, and the position just after it: a subscription started from Position
// continues with the next delta.
type BusMessage struct {
	Epoch    string
	Delta    Delta
	Position string
}

// An epoch names one engine incarnation. A restarted engine numbers every
// event's deltas from 1 again; its new epoch keeps those deltas from being
// taken for duplicates of the old ones, and tells consumers to rebuild.

// MsgID is the deduplication key of a delta on the backbone:
// "Epoch:EventID:Seq" (within an epoch, "EventID:Seq").
func MsgID(epoch string, d Delta) string {
	return epoch + ":" + d.EventID + ":" + strconv.FormatUint(d.Seq, 10)
}

func deltaName(d Delta) string { return d.EventID + ":" + strconv.FormatUint(d.Seq, 10) }

// ErrSequenceGap is the reason of the error Apply returns for a delta that
// skips sequence numbers: the state must be rebuilt from a fresh snapshot.
const ErrSequenceGap = "sequence_gap"

// Apply folds d into the snapshot. A delta at or below s.Seq was applied
// already and is ignored (false, nil); one that skips sequence numbers is
// refused with ECONFLICT / ErrSequenceGap and changes nothing.
func (s *Snapshot) Apply(d Delta) (bool, error) {
	if d.EventID != s.Event.EventID {
		return false, buzzer.Errorf(buzzer.EINVALID, "delta of event %q applied to event %q", d.EventID, s.Event.EventID)
	}
	if d.Seq <= s.Seq {
		return false, nil
	}
	if d.Seq != s.Seq+1 {
		return false, buzzer.Errorf(buzzer.ECONFLICT, "event %s: delta %d after %d", d.EventID, d.Seq, s.Seq).WithReason(ErrSequenceGap)
	}
	return true, s.Fold(d)
}

// Fold applies d without the consecutive-sequence check, for a conflated set
// of deltas (the latest per market): each carries the full new state of what
// it changes, so folding the latest per market yields the state at the last
// one. A delta at or below s.Seq is ignored.
func (s *Snapshot) Fold(d Delta) error {
	if d.EventID != s.Event.EventID {
		return buzzer.Errorf(buzzer.EINVALID, "delta of event %q applied to event %q", d.EventID, s.Event.EventID)
	}
	if d.Seq <= s.Seq {
		return nil
	}
	switch d.Kind {
	case DeltaEvent:
		if d.Event == nil {
			return buzzer.Errorf(buzzer.EINVALID, "event delta %s without event", deltaName(d))
		}
		s.Event = *cloneInfo(*d.Event)
	case DeltaMarket:
		if d.Market == nil {
			return buzzer.Errorf(buzzer.EINVALID, "market delta %s without market", deltaName(d))
		}
		m := *d.Market.clone()
		i, found := slices.BinarySearchFunc(s.Markets, m.ID, func(x Market, id string) int { return cmpString(x.ID, id) })
		if found {
			s.Markets[i] = m
		} else {
			s.Markets = slices.Insert(s.Markets, i, m)
		}
	case DeltaMarketRemoved:
		if i, found := slices.BinarySearchFunc(s.Markets, d.MarketID, func(x Market, id string) int { return cmpString(x.ID, id) }); found {
			s.Markets = slices.Delete(s.Markets, i, i+1)
		}
	default:
		return buzzer.Errorf(buzzer.EINVALID, "unknown delta kind %q", d.Kind)
	}
	s.Seq = d.Seq
	return nil
}

// Clone returns a deep copy of the snapshot.
func (s Snapshot) Clone() Snapshot {
	c := Snapshot{Event: *cloneInfo(s.Event), Seq: s.Seq, Markets: make([]Market, len(s.Markets))}
	for i := range s.Markets {
		c.Markets[i] = *s.Markets[i].clone()
	}
	return c
}

// ConflationKey names what a delta changes: deltas with the same key replace
// one another when a slow consumer is conflated.
func ConflationKey(d Delta) string {
	if d.Kind == DeltaEvent {
		return "event"
	}
	if d.Market != nil {
		return "market:" + d.Market.ID
	}
	return "market:" + d.MarketID
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// BusPublisherConfig configures the hand-off from the engine to the bus.
type BusPublisherConfig struct {
	// Queue bounds the deltas waiting to be published (default 65536). When it
	// is full a delta is dropped and counted: consumers see a gap in the
	// event's sequence and rebuild from a snapshot. The engine never waits.
	Queue int
	// Batch is the most deltas one Publish call carries (default 512).
	Batch int
	// Epoch names this engine incarnation on the bus (required; random per
	// process start).
	Epoch string
	// Attempts bounds how often a batch is tried before it is dropped
	// (default 5), with Backoff doubling between tries (default 50ms).
	Attempts int
	Backoff  time.Duration
	Logger   *slog.Logger
}

// BusPublisher implements Publisher over a Bus: PublishDelta only enqueues
// (it runs under the engine lock), Run publishes in batches, in order.
type BusPublisher struct {
	bus   Bus
	cfg   BusPublisherConfig
	queue chan Delta

	published, dropped, failed atomic.Uint64
}

var _ Publisher = (*BusPublisher)(nil)

// NewBusPublisher returns a publisher; nothing is published until Run runs.
func NewBusPublisher(bus Bus, cfg BusPublisherConfig) (*BusPublisher, error) {
	if cfg.Epoch == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "odds bus publisher needs an epoch")
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 65536
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 512
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 50 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &BusPublisher{bus: bus, cfg: cfg, queue: make(chan Delta, cfg.Queue)}, nil
}

// PublishDelta enqueues d without ever blocking; a full queue drops it.
func (p *BusPublisher) PublishDelta(d Delta) {
	select {
	case p.queue <- d:
	default:
		p.dropped.Add(1)
	}
}

// BusPublisherStats counts deltas by fate.
type BusPublisherStats struct {
	Published uint64 // appended to the bus
	Dropped   uint64 // refused because the queue was full
	Failed    uint64 // given up after Attempts
	Queued    int    // waiting now
}

// Stats returns the counters.
func (p *BusPublisher) Stats() BusPublisherStats {
	return BusPublisherStats{Published: p.published.Load(), Dropped: p.dropped.Load(), Failed: p.failed.Load(), Queued: len(p.queue)}
}

// Run publishes queued deltas until ctx is done.
func (p *BusPublisher) Run(ctx context.Context) error {
	batch := make([]Delta, 0, p.cfg.Batch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case d := <-p.queue:
			batch = append(batch[:0], d)
		}
	fill:
		for len(batch) < p.cfg.Batch {
			select {
			case d := <-p.queue:
				batch = append(batch, d)
			default:
				break fill
			}
		}
		p.publish(ctx, batch)
	}
}

func (p *BusPublisher) publish(ctx context.Context, batch []Delta) {
	wait := p.cfg.Backoff
	for attempt := 1; ; attempt++ {
		err := p.bus.Publish(ctx, p.cfg.Epoch, batch...)
		if err == nil {
			p.published.Add(uint64(len(batch)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		if attempt >= p.cfg.Attempts {
			p.failed.Add(uint64(len(batch)))
			p.cfg.Logger.Error("odds deltas not published; consumers will resynchronize", "deltas", len(batch), "err", err)
			return
		}
		p.cfg.Logger.Warn("odds delta publish failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}
