package audit

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// Table rounds: capture from the table store's event log.
//
// Table state lives in Redis or memory, outside the SQL transaction that
// holds the outbox, so table events cannot be captured in the transaction
// that makes them. They are captured from the table store's own ordered
// change feed instead: TableCapture reads each table's events after the
// last one captured and writes them to the outbox in one SQL transaction
// together with the cursor, which is the outbox's own per-key sequence
// (audit_sequences, seq = table_seq). A crash between passes therefore
// loses or repeats nothing; two capturers on one outbox cannot both write
// an event (the second fails its transaction, audit_capture_out_of_order).
// After each committed pass the capture sets the table's trim floor to its
// cursor (table.Store.SetTrimFloor), so the store keeps every event the
// capture has not read yet — up to the store's MaxRetain bound. A capture
// lagging past that bound (or events trimmed before the first floor was
// set) leaves a gap, which the capture reports
// (buzzer_audit_table_capture_gaps_total and an error naming the table,
// reason events_trimmed) and never papers over.

// ReasonTableLogRegressed refines the error of a table capture that found
// a table's event log behind what it already captured.
const ReasonTableLogRegressed = "table_log_regressed"

// TableLog is what table capture reads from a table store (table.Store
// implements it).
type TableLog interface {
	// Events returns up to limit events with Seq > after, in order;
	// ECONFLICT/events_trimmed if some were trimmed.
	Events(ctx context.Context, table string, after int64, limit int) ([]table.Event, error)
	// Load returns the table's committed state (Seq: its last event), or
	// ENOTFOUND for a table never written.
	Load(ctx context.Context, table string) (table.Stored, error)
	// Head returns Load's Seq alone, without copying the state: the
	// capture asks it of every table on every pass.
	Head(ctx context.Context, table string) (int64, error)
	// SetTrimFloor lets the store trim the events up to seq, which the
	// capture has committed to the outbox; it keeps the ones after it.
	SetTrimFloor(ctx context.Context, table string, seq int64) error
}

// OutboxTx runs fn with the outbox of one store transaction, committing
// what fn wrote if it returns nil. For PostgreSQL:
//
//	func(ctx context.Context, fn func(audit.Outbox) error) error {
//		return db.InTx(ctx, func(tx pgx.Tx) error { return fn(postgres.NewOutbox(tx)) })
//	}
type OutboxTx func(ctx context.Context, fn func(Outbox) error) error

// NewTableEventRecord builds the table.event record of ev (seq = ev.Seq).
// Detail is the event as the table publishes it to every seat: face-up
// cards only, never the shoe.
func NewTableEventRecord(jurisdiction string, ev table.Event) (*Record, error) {
	if ev.Seq <= 0 {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "table %s event has seq %d", ev.Table, ev.Seq)
	}
	detail, err := json.Marshal(ev)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode event %d of table %s", ev.Seq, ev.Table)
	}
	// No id: Prepare derives it from the stream key and sequence, so a
	// retried capture gives the event the same one.
	r := &Record{Jurisdiction: jurisdiction, Component: ComponentTable, Key: ev.Table, Seq: uint64(ev.Seq), Time: ev.At.UTC(), Type: TypeTableEvent}
	if err := r.SetPayload(TableEvent{TableID: ev.Table, TableSeq: uint64(ev.Seq),
		Round: strconv.FormatInt(ev.Round, 10), Action: string(ev.Kind), Detail: detail}); err != nil {
		return nil, err
	}
	return r, nil
}

// TableCaptureConfig configures a TableCapture; zero fields take the
// defaults in parentheses.
type TableCaptureConfig struct {
	Jurisdiction string          // required: the node's
	Tables       func() []string // required: the tables to capture (serve: IDPrefix1..Count)
	Batch        int             // events per table per transaction (256)
	// TablesPerTx is how many busy tables one transaction captures once
	// their cursors are known (64): a floor of a thousand tables in play
	// would otherwise take a thousand store commits, each an fsync on the
	// writer the wallet's debits wait for, every pass.
	TablesPerTx int
	// Poll is the pause between passes (100 ms). A pass that found
	// events is not followed at once by the next: on a busy floor each
	// pass would then find a few events per table and take a commit on the
	// store's one writer for each group, which the wallet's debits wait
	// behind; after a pause each group carries more. A table's events wait
	// at most about a pass and a pause for the outbox.
	Poll      time.Duration
	RetryMax  time.Duration // longest pause after failing passes (5 s)
	OpTimeout time.Duration // bound on one table's transaction (10 s)
}

func (c TableCaptureConfig) withDefaults() TableCaptureConfig {
	if c.Batch == 0 {
		c.Batch = 256
	}
	if c.TablesPerTx == 0 {
		c.TablesPerTx = 64
	}
	if c.Poll == 0 {
		c.Poll = 100 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.OpTimeout == 0 {
		c.OpTimeout = 10 * time.Second
	}
	return c
}

// TableCapture copies table events from a TableLog into the outbox.
type TableCapture struct {
	cfg      TableCaptureConfig
	log      TableLog
	inTx     OutboxTx
	logger   *slog.Logger
	captured prometheus.Counter
	errors   prometheus.Counter
	gaps     prometheus.Counter

	mu     sync.Mutex
	floors map[string]int64 // the trim floor last set per table
}

// NewTableCapture checks cfg and returns a capture from tables into the
// outbox that inTx opens; reg receives its metrics (nil: unregistered).
func NewTableCapture(cfg TableCaptureConfig, tables TableLog, inTx OutboxTx, reg prometheus.Registerer, logger *slog.Logger) (*TableCapture, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.Jurisdiction == "" || cfg.Tables == nil || tables == nil || inTx == nil:
		return nil, buzzer.Errorf(buzzer.EINVALID, "table capture needs a jurisdiction, a table list, a table log and an outbox")
	case cfg.Batch < 1 || cfg.Batch > 10000 || cfg.TablesPerTx < 1 || cfg.TablesPerTx > 10000 || cfg.Poll <= 0 || cfg.RetryMax <= 0 || cfg.OpTimeout <= 0:
		return nil, buzzer.Errorf(buzzer.EINVALID, "table capture: batch and tables per transaction must be 1..10000 and durations positive")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &TableCapture{cfg: cfg, log: tables, inTx: inTx, logger: logger, floors: map[string]int64{},
		captured: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_table_events_captured_total",
			Help: "Table events written to the audit outbox."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_table_capture_errors_total",
			Help: "Table capture passes that failed and were retried."}),
		gaps: prometheus.NewCounter(prometheus.CounterOpts{Name: "buzzer_audit_table_capture_gaps_total",
			Help: "Table capture passes that found events trimmed from the table store before they were captured."}),
	}
	if reg != nil {
		for _, m := range []prometheus.Collector{c.captured, c.errors, c.gaps} {
			if err := reg.Register(m); err != nil {
				return nil, buzzer.Wrap(err, buzzer.EINTERNAL, "cannot register the table capture's metrics")
			}
		}
	}
	return c, nil
}

// CaptureOnce captures, for every table, the events after the last one
// captured, at most Batch per table, and returns how many it captured. A
// table whose events cannot be read (trimmed, store down) is skipped and
// the first such error returned after the others were captured.
//
// A busy table whose cursor this capture already knows (every table after
// the first pass) has its events read outside any store transaction, and
// up to TablesPerTx such tables are written in one. Anything unusual — a
// table not seen yet, a log behind its cursor, a read that fails, a group
// whose transaction fails — goes through captureTable, one transaction per
// table, which reads the outbox's own cursor and reports what is wrong.
func (c *TableCapture) CaptureOnce(ctx context.Context) (int, error) {
	total := 0
	var first error
	note := func(n int, err error) {
		total += n
		if err != nil {
			if buzzer.ErrorReason(err) == table.ReasonEventsTrimmed {
				c.gaps.Inc()
			}
			if first == nil {
				first = err
			}
		}
	}
	var group []tableBatch
	flush := func() {
		for _, n := range c.captureGroup(ctx, group) {
			note(n.n, n.err)
		}
		group = group[:0]
	}
	for _, id := range c.cfg.Tables() {
		b, ok, busy := c.read(ctx, id)
		switch {
		case !ok:
			note(c.captureTable(ctx, id))
		case busy:
			if group = append(group, b); len(group) == c.cfg.TablesPerTx {
				flush()
			}
		}
	}
	if len(group) > 0 {
		flush()
	}
	c.captured.Add(float64(total))
	return total, first
}

// tableBatch is one table's events read for a grouped transaction.
type tableBatch struct {
	id   string
	recs []*Record
	last int64 // the last event's sequence
}

// read reads table id's events after its known cursor, outside any store
// transaction. ok false means the table needs captureTable (cursor unknown,
// or anything unusual); busy false with ok means it is idle.
func (c *TableCapture) read(ctx context.Context, id string) (b tableBatch, ok, busy bool) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	defer cancel()
	c.mu.Lock()
	floor, known := c.floors[id]
	c.mu.Unlock()
	if !known {
		return b, false, false
	}
	head, err := c.log.Head(ctx, id)
	switch {
	case buzzer.ErrorCode(err) == buzzer.ENOTFOUND:
		return b, floor == 0, false
	case err != nil || head < floor:
		return b, false, false
	case head == floor:
		return b, true, false
	}
	evs, err := c.log.Events(ctx, id, floor, c.cfg.Batch)
	if err != nil || len(evs) == 0 {
		return b, false, false
	}
	b = tableBatch{id: id, recs: make([]*Record, 0, len(evs)), last: evs[len(evs)-1].Seq}
	for _, ev := range evs {
		r, err := NewTableEventRecord(c.cfg.Jurisdiction, ev)
		if err != nil {
			return b, false, false
		}
		b.recs = append(b.recs, r)
	}
	return b, true, true
}

type captured struct {
	n   int
	err error
}

// captureGroup writes the groups' events in one transaction. The outbox
// places each record after its key's last one and fails the transaction if
// that is not the event's own sequence (another capturer got there first,
// or a trim floor that could not be recorded left this cursor behind); each
// table is then captured on its own.
func (c *TableCapture) captureGroup(ctx context.Context, group []tableBatch) []captured {
	tctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	err := c.inTx(tctx, func(ob Outbox) error {
		for i := range group {
			if err := ob.Write(tctx, group[i].recs...); err != nil {
				return err
			}
		}
		return nil
	})
	cancel()
	out := make([]captured, len(group))
	for i, b := range group {
		if err != nil {
			out[i].n, out[i].err = c.captureTable(ctx, b.id)
			continue
		}
		out[i] = captured{len(b.recs), c.setFloor(ctx, b.id, b.last)}
	}
	return out
}

func (c *TableCapture) captureTable(ctx context.Context, id string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	defer cancel()
	if c.idle(ctx, id) {
		return 0, nil
	}
	n, cursor := 0, int64(0)
	err := c.inTx(ctx, func(ob Outbox) error {
		n = 0
		last, err := ob.LastSeq(ctx, c.cfg.Jurisdiction, ComponentTable, id)
		if err != nil {
			return err
		}
		cursor = int64(last)
		evs, err := c.log.Events(ctx, id, int64(last), c.cfg.Batch)
		if err != nil {
			if buzzer.ErrorReason(err) == table.ReasonEventsTrimmed {
				return buzzer.Wrap(err, buzzer.EINTERNAL, "table %s: events after %d were trimmed before the audit captured them", id, last).WithReason(table.ReasonEventsTrimmed)
			}
			return err
		}
		if len(evs) == 0 && last > 0 {
			// Nothing new, or a table log that started again below what
			// was captured (an in-memory store restarted): its new events
			// would take places in the archive that are already taken.
			stored, err := c.log.Load(ctx, id)
			if err != nil && buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
				return err
			}
			if stored.Seq < int64(last) {
				return buzzer.Errorf(buzzer.EINTERNAL, "table %s: its event log is at %d but the audit captured %d; the table store lost its log", id, stored.Seq, last).WithReason(ReasonTableLogRegressed)
			}
		}
		recs := make([]*Record, 0, len(evs))
		for _, ev := range evs {
			r, err := NewTableEventRecord(c.cfg.Jurisdiction, ev)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		if len(recs) == 0 {
			return nil
		}
		n, cursor = len(recs), evs[len(evs)-1].Seq
		return ob.Write(ctx, recs...)
	})
	if err != nil {
		return 0, err
	}
	return n, c.setFloor(ctx, id, cursor)
}

// idle reports whether the table's log is exactly where this capture last
// left it, so a pass need not open a store transaction (an idle table costs
// one table-store read per pass, not a SQL write lock). Anything else — a
// table not seen yet, a log ahead (or behind) — goes through the
// transaction, which reads the outbox's own cursor.
func (c *TableCapture) idle(ctx context.Context, id string) bool {
	c.mu.Lock()
	floor, ok := c.floors[id]
	c.mu.Unlock()
	if !ok {
		return false
	}
	stored, err := c.log.Load(ctx, id)
	switch {
	case buzzer.ErrorCode(err) == buzzer.ENOTFOUND:
		return floor == 0
	case err != nil:
		return false
	}
	return stored.Seq == floor
}

// setFloor lets the table store trim what the outbox now holds; a floor is
// set once per table even with nothing captured, so the store keeps a new
// table's events from the first one. A failure is returned (and the floor
// set again next pass): the events stay captured.
func (c *TableCapture) setFloor(ctx context.Context, id string, cursor int64) error {
	c.mu.Lock()
	prev, ok := c.floors[id]
	c.mu.Unlock()
	if ok && prev >= cursor {
		return nil
	}
	if err := c.log.SetTrimFloor(ctx, id, cursor); err != nil {
		return buzzer.Wrap(err, buzzer.ErrorCode(err), "table %s: cannot set the trim floor to %d", id, cursor)
	}
	c.mu.Lock()
	c.floors[id] = max(c.floors[id], cursor)
	c.mu.Unlock()
	return nil
}

// Run captures until ctx is done, then returns nil; failures are logged,
// counted and retried with backoff.
func (c *TableCapture) Run(ctx context.Context) error {
	backoff := c.cfg.Poll
	for ctx.Err() == nil {
		wait := c.cfg.Poll
		if _, err := c.CaptureOnce(ctx); err != nil && ctx.Err() == nil {
			c.errors.Inc()
			c.logger.Warn("audit: table capture failed", "err", err, "retry_in", backoff)
			wait, backoff = backoff, min(2*backoff, c.cfg.RetryMax)
		} else {
			backoff = c.cfg.Poll
		}
		if !sleep(ctx, wait) {
			break
		}
	}
	return nil
}

// TableLogState reads each table's last sequence number from the table
// store for Compare (State.Tables); tables never written are absent.
type TableLogState struct {
	Log    TableLog
	Tables func() []string
}

var _ StateReader = TableLogState{}

// ReadState implements StateReader: only Tables is set.
func (s TableLogState) ReadState(ctx context.Context) (State, error) {
	st := State{Tables: map[string]uint64{}}
	for _, id := range s.Tables() {
		stored, err := s.Log.Load(ctx, id)
		if buzzer.ErrorCode(err) == buzzer.ENOTFOUND {
			continue
		}
		if err != nil {
			return State{}, err
		}
		if stored.Seq > 0 {
			st.Tables[id] = uint64(stored.Seq)
		}
	}
	return st, nil
}
