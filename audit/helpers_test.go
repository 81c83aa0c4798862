package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
)

// memSource simulates a work-queue stream (JetStream's pull consumer
// semantics): messages stay until acknowledged, a Nak makes one deliverable
// again after its delay, and Publish never waits for the consumer.
type memSource struct {
	mu      sync.Mutex
	msgs    []*memMsg
	first   int // msgs before first are settled for good
	changed chan struct{}

	outstanding, maxOutstanding int
	acks                        map[string]int // ack count per record id
	rejected                    int
	fetches                     int
	onAck                       func(data []byte) error // checked before an ack is taken
}

type memState int

const (
	msgReady memState = iota
	msgInFlight
	msgAcked
	msgRejected
)

type memMsg struct {
	src     *memSource
	data    []byte
	ids     []string // of the records it carries (a relay batch holds several)
	state   memState
	readyAt time.Time
}

func newMemSource() *memSource {
	return &memSource{changed: make(chan struct{}), acks: map[string]int{}}
}

func (s *memSource) signal() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Publish appends a message; it never blocks on the consumer.
func (s *memSource) Publish(data []byte) {
	var ids []string
	for part := range bytes.SplitSeq(data, []byte{'\n'}) {
		if r, err := audit.Decode(part); err == nil {
			ids = append(ids, r.ID)
		}
	}
	s.mu.Lock()
	s.msgs = append(s.msgs, &memMsg{src: s, data: data, ids: ids})
	s.signal()
	s.mu.Unlock()
}

func (s *memSource) Fetch(ctx context.Context, maxMessages, maxBytes int) ([]audit.Message, error) {
	for {
		s.mu.Lock()
		s.fetches++
		now := time.Now()
		var out []audit.Message
		bytes := 0
		wake := 50 * time.Millisecond
		for s.first < len(s.msgs) && s.msgs[s.first].state >= msgAcked {
			s.first++
		}
		for _, m := range s.msgs[s.first:] {
			if len(out) == maxMessages {
				break
			}
			if m.state != msgReady {
				continue
			}
			if m.readyAt.After(now) {
				wake = min(wake, m.readyAt.Sub(now))
				continue
			}
			if bytes+len(m.data) > maxBytes {
				break
			}
			bytes += len(m.data)
			m.state = msgInFlight
			out = append(out, m)
		}
		s.outstanding += bytes
		s.maxOutstanding = max(s.maxOutstanding, s.outstanding)
		ch := s.changed
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		t := time.NewTimer(wake)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		t.Stop()
	}
}

func (m *memMsg) Data() []byte { return m.data }

func (m *memMsg) settle(to memState, delay time.Duration) error {
	s := m.src
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.state != msgInFlight {
		return errors.New("message is not in flight")
	}
	s.outstanding -= len(m.data)
	m.state = to
	switch to {
	case msgAcked:
		for _, id := range m.ids {
			s.acks[id]++
		}
	case msgRejected:
		s.rejected++
	case msgReady:
		m.readyAt = time.Now().Add(delay)
	}
	s.signal()
	return nil
}

func (m *memMsg) Ack(context.Context) error {
	if h := m.src.onAck; h != nil {
		if err := h(m.data); err != nil {
			return err
		}
	}
	return m.settle(msgAcked, 0)
}
func (m *memMsg) Nak(_ context.Context, d time.Duration) error { return m.settle(msgReady, d) }
func (m *memMsg) Reject(context.Context, string) error         { return m.settle(msgRejected, 0) }

// waitAcked waits until every id in ids is acknowledged.
func (s *memSource) waitAcked(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.mu.Lock()
		missing := 0
		for _, id := range ids {
			if s.acks[id] == 0 {
				missing++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records never acknowledged", missing, len(ids))
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitFor waits until cond (called under the source's lock) holds.
func (s *memSource) waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.mu.Lock()
		ok := cond()
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitAckedAtLeast waits until at least n distinct records are acknowledged.
func (s *memSource) waitAckedAtLeast(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.acks)
		ch := s.changed
		s.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d records acknowledged", got, n)
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *memSource) stats() (outstanding, maxOutstanding, backlog, fetches int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.msgs[s.first:] {
		if m.state == msgReady {
			backlog++
		}
	}
	return s.outstanding, s.maxOutstanding, backlog, s.fetches
}

// gateFS wraps the OS filesystem; while the gate is closed every write and
// fsync blocks (a stalled volume), and fail makes the next n writes fail
// with EIO. It also keeps, per file, the bytes known durable (written and
// then fsynced), so acknowledgements can be checked against them.
type gateFS struct {
	archive.OSFS
	mu      sync.Mutex
	open    chan struct{} // closed: writes pass
	blocked int           // writes/syncs currently waiting at the gate
	fails   int
	durable map[string][]byte
}

func newGateFS() *gateFS {
	g := &gateFS{open: make(chan struct{}), durable: map[string][]byte{}}
	close(g.open)
	return g
}

func (g *gateFS) Stall() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateFS) Resume() {
	g.mu.Lock()
	close(g.open)
	g.mu.Unlock()
}

func (g *gateFS) FailNext(n int) {
	g.mu.Lock()
	g.fails = n
	g.mu.Unlock()
}

func (g *gateFS) Blocked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked
}

func (g *gateFS) pass() error {
	g.mu.Lock()
	ch := g.open
	g.blocked++
	g.mu.Unlock()
	<-ch
	g.mu.Lock()
	defer g.mu.Unlock()
	g.blocked--
	if g.fails > 0 {
		g.fails--
		return &fs.PathError{Op: "write", Path: "injected", Err: syscall.EIO}
	}
	return nil
}

// isDurable reports whether body is inside some file's durable bytes.
func (g *gateFS) isDurable(body []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, d := range g.durable {
		if bytes.Contains(d, body) {
			return true
		}
	}
	return false
}

type gateFile struct {
	archive.File
	g       *gateFS
	name    string
	written []byte
}

func (g *gateFS) OpenFile(name string, flag int, perm fs.FileMode) (archive.File, error) {
	f, err := g.OSFS.OpenFile(name, flag, perm)
	if err != nil || flag == os.O_RDONLY {
		return f, err
	}
	cur, _ := os.ReadFile(name)
	return &gateFile{File: f, g: g, name: name, written: cur}, nil
}

func (f *gateFile) Write(b []byte) (int, error) {
	if err := f.g.pass(); err != nil {
		return 0, err
	}
	n, err := f.File.Write(b)
	f.written = append(f.written, b[:n]...)
	return n, err
}

func (f *gateFile) Sync() error {
	if err := f.g.pass(); err != nil {
		return err
	}
	if err := f.File.Sync(); err != nil {
		return err
	}
	f.g.mu.Lock()
	f.g.durable[f.name] = bytes.Clone(f.written)
	f.g.mu.Unlock()
	return nil
}

func (f *gateFile) Truncate(n int64) error {
	if err := f.File.Truncate(n); err != nil {
		return err
	}
	if n < int64(len(f.written)) {
		f.written = f.written[:n]
	}
	return nil
}

// workload builds records over keys: deposits and bets for players, RNG
// draws and table events, with dense per-key sequences.
type workload struct {
	t    *testing.T
	n    int
	seqs map[string]uint64
	now  time.Time
	recs [][]byte
	ids  []string
}

func newWorkload(t *testing.T) *workload {
	return &workload{t: t, seqs: map[string]uint64{}, now: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
}

func (w *workload) add(c audit.Component, key, typ string, payload any) []byte {
	w.t.Helper()
	w.n++
	sk := string(c) + "/" + key
	w.seqs[sk]++
	w.now = w.now.Add(time.Millisecond)
	r := &audit.Record{ID: fmt.Sprintf("rec-%06d", w.n), Jurisdiction: "US-NJ", Component: c, Key: key, Seq: w.seqs[sk], Time: w.now, Type: typ}
	if err := r.SetPayload(payload); err != nil {
		w.t.Fatal(err)
	}
	b, err := audit.Encode(r)
	if err != nil {
		w.t.Fatal(err)
	}
	w.recs = append(w.recs, b)
	w.ids = append(w.ids, r.ID)
	return b
}

// push appends a record built by one of the contract constructors, checking
// that it continues its stream key densely.
func (w *workload) push(r *audit.Record, err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
	sk := string(r.Component) + "/" + r.Key
	w.seqs[sk]++
	if r.Seq != w.seqs[sk] {
		w.t.Fatalf("constructor gave %s seq %d, want %d", sk, r.Seq, w.seqs[sk])
	}
	b, err := audit.Encode(r)
	if err != nil {
		w.t.Fatal(err)
	}
	w.recs = append(w.recs, b)
	w.ids = append(w.ids, r.ID)
}

func (w *workload) nextID() (string, time.Time) {
	w.n++
	w.now = w.now.Add(time.Millisecond)
	return fmt.Sprintf("rec-%06d", w.n), w.now
}

func acct(player string) string { return player + "|US-NJ|USD|cash|0" }

func house(bucket int) string { return fmt.Sprintf("house|US-NJ|USD|stakes|%d", bucket) }

func (w *workload) ledger(player string, tx audit.LedgerTransaction) {
	id, at := w.nextID()
	w.push(audit.NewLedgerTransaction(id, "US-NJ", w.seqs[string(audit.ComponentWallet)+"/"+player]+1, at, tx))
}

func (w *workload) deposit(player string, amt buzzer.Amount) {
	w.ledger(player, audit.LedgerTransaction{
		TxID: fmt.Sprintf("tx-%d", w.n+1), Kind: "deposit", Player: player, EffectKey: fmt.Sprintf("dep-%d", w.n+1),
		Postings: []audit.Posting{{acct(player), "USD", amt}, {"house|US-NJ|USD|cashier|0", "USD", -amt}},
	})
}

func (w *workload) bet(player, betID string, stake buzzer.Amount) {
	w.ledger(player, audit.LedgerTransaction{
		TxID: "tx-" + betID, Kind: "bet_placed", Player: player, Reference: betID, EffectKey: "place-" + betID,
		Postings: []audit.Posting{{acct(player), "USD", -stake}, {house(len(betID) % 4), "USD", stake}},
	})
	id, at := w.nextID()
	w.push(audit.NewBetPlaced(id, "US-NJ", at, audit.BetPlaced{BetID: betID, Player: player, Currency: "USD", Stake: stake,
		PotentialPayout: stake * 2, TxID: "tx-" + betID,
		Legs: []audit.BetLeg{{EventID: "ev1", MarketID: "m1", SelectionID: "home", Price: 20000}}}))
}

func (w *workload) settle(player, betID string, rev uint64, payout, delta buzzer.Amount) {
	txID := ""
	if delta != 0 {
		txID = fmt.Sprintf("tx-%s-r%d", betID, rev)
		w.ledger(player, audit.LedgerTransaction{
			TxID: txID, Kind: "bet_settled", Player: player, Reference: betID, EffectKey: fmt.Sprintf("settle-%s-%d", betID, rev),
			Postings: []audit.Posting{{acct(player), "USD", delta}, {house(len(betID) % 4), "USD", -delta}},
		})
	}
	id, at := w.nextID()
	w.push(audit.NewBetSettled(id, "US-NJ", at, audit.BetSettled{BetID: betID, Revision: rev, Status: "settled", Payout: payout, TxID: txID}))
}

func (w *workload) market(market string, version int64) {
	id, at := w.nextID()
	w.push(audit.NewMarketSettled(id, "US-NJ", w.seqs[string(audit.ComponentSettlement)+"/"+market]+1, at,
		audit.MarketSettled{MarketID: market, ResultVersion: version, Outcomes: []byte(`[{"selection":"home","result":"won"}]`)}))
}

func (w *workload) draw(log string) {
	id, at := w.nextID()
	w.push(audit.NewRNGDraw(id, "US-NJ", at, audit.RNGDraw{DrawID: "draw-" + id, Log: log, Index: w.seqs[string(audit.ComponentRNG)+"/"+log], Purpose: "shuffle"}))
}

func (w *workload) table(table, action string) {
	id, at := w.nextID()
	w.push(audit.NewTableEvent(id, "US-NJ", at, audit.TableEvent{TableID: table, TableSeq: w.seqs[string(audit.ComponentTable)+"/"+table] + 1, Action: action}))
}

// mixed builds a varied workload of roughly n records and returns the state
// it must replay to, computed independently of State.Apply.
func (w *workload) mixed(players, rounds int) audit.State {
	want := audit.State{Balances: map[string]buzzer.Amount{}, Bets: map[string]audit.BetState{}, Markets: map[string]int64{},
		RNGLogs: map[string]uint64{}, Tables: map[string]uint64{}}
	move := func(a string, amt buzzer.Amount) { want.Balances[a] += amt }
	for p := 0; p < players; p++ {
		pl := fmt.Sprintf("player-%03d", p)
		w.deposit(pl, 10_000)
		move(acct(pl), 10_000)
		move("house|US-NJ|USD|cashier|0", -10_000)
	}
	for r := 0; r < rounds; r++ {
		for p := 0; p < players; p++ {
			pl := fmt.Sprintf("player-%03d", p)
			betID := fmt.Sprintf("bet-%03d-%03d", p, r)
			stake := buzzer.Amount(100 + p + r)
			w.bet(pl, betID, stake)
			move(acct(pl), -stake)
			move(house(len(betID)%4), stake)
			bs := audit.BetState{Player: pl, Currency: "USD", Stake: stake, Status: "open"}
			switch (p + r) % 3 {
			case 0: // won, later resettled as lost
				w.settle(pl, betID, 1, 2*stake, 2*stake)
				w.settle(pl, betID, 2, 0, -2*stake)
				bs.Status, bs.Payout, bs.Revision = "settled", 0, 2
			case 1: // lost
				w.settle(pl, betID, 1, 0, 0)
				bs.Status, bs.Revision = "settled", 1
			}
			want.Bets[betID] = bs
			if p == 0 {
				w.market("m1", int64(2*r+1))
				want.Markets["m1"] = int64(2*r + 1)
			}
			if p%4 == 0 {
				w.draw("bj-table-1")
				w.table("bj-table-1", "deal")
				want.RNGLogs["bj-table-1"]++
				want.Tables["bj-table-1"]++
			}
		}
	}
	want.Records = uint64(len(w.recs))
	return want
}

func testKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
}

func testPub() ed25519.PublicKey { return testKey().Public().(ed25519.PublicKey) }

// archivedIDs reads every record id in the verified archive, in order.
func archivedIDs(t *testing.T, dir string) []string {
	t.Helper()
	if _, err := archive.VerifyRecords(nil, dir, testPub()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	var ids []string
	if _, err := archive.Walk(nil, dir, nil, 0, func(ri archive.RecordInfo) error {
		r, err := audit.Decode(ri.Body)
		if err != nil {
			return err
		}
		ids = append(ids, r.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// flipFirstRecordOfLastSegment damages the first record of the newest
// segment, which has complete records after it.
func flipFirstRecordOfLastSegment(t *testing.T, dir string) {
	t.Helper()
	var file string
	var off int64
	if _, err := archive.Walk(nil, dir, nil, 0, func(ri archive.RecordInfo) error {
		if ri.File != file {
			file, off = ri.File, ri.Offset
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b[off+40] ^= 0x08
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
