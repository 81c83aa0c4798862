package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/centrifugal/protocol"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
)

// clock is a settable clock safe for concurrent reads.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// skewed is the harness's clock moved by a fixed offset: a fan-out clock
// ahead of the engine's sees every delta that much late.
type skewed struct {
	c  *clock
	by time.Duration
}

func (s *skewed) Now() time.Time { return s.c.Now().Add(s.by) }

// harness is the real pipeline: engine -> bus publisher -> JetStream ->
// fan-out consumer -> centrifuge node.
type harness struct {
	eng    *odds.Engine
	pub    *odds.BusPublisher
	srv    *fanout.Server
	clock  *clock
	events []string
	rng    *rand.Rand
	n      int
}

func newHarness(t *testing.T, nEvents int, silence time.Duration, cfg fanout.Config) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ncfg := nats.DefaultConfig()
	ncfg.StoreDir = t.TempDir()
	nc, err := nats.Start(ctx, ncfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus, err := nats.NewOddsBus(ctx, nc, nats.OddsConfig{Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := odds.NewBusPublisher(bus, odds.BusPublisherConfig{Epoch: "epoch-1"})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)}
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"p1"}, Publisher: pub, Clock: clk, SilenceTimeout: silence, DivergenceBP: -1})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{eng: eng, pub: pub, clock: clk, rng: rand.New(rand.NewPCG(42, uint64(nEvents)))}
	for i := 0; i < nEvents; i++ {
		id := fmt.Sprintf("ev-%d", i)
		h.events = append(h.events, id)
		if err := eng.AddFixture(odds.Fixture{EventID: id, Sport: odds.Football, Home: "H" + id, Away: "A" + id, StartTime: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if sk, ok := cfg.Clock.(*skewed); ok {
		sk.c = clk
	} else {
		cfg.Clock = clk
	}
	cfg.Epoch = "epoch-1"
	if cfg.MaxLag == 0 {
		cfg.MaxLag = -1 // the tests' clock jumps: a jump is not a lagging consumer
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = -1 // these tests count single deltas; coalescing has its own
	}
	h.srv, err = fanout.New(eng, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil {
				t.Errorf("pipeline stopped: %v", err)
			}
		}()
	}
	run(h.srv.Run)
	run(pub.Run)
	run(func(ctx context.Context) error { return h.srv.Consume(ctx, bus) })
	t.Cleanup(func() { cancel(); wg.Wait(); nc.Close() })
	select {
	case <-h.srv.Loaded():
	case <-time.After(30 * time.Second):
		t.Fatal("the fan-out never loaded")
	}
	if err := eng.Apply(odds.Update{Provider: "p1", Kind: odds.KindStatus, Status: odds.ProviderUp}); err != nil {
		t.Fatal(err)
	}
	return h
}

// caughtUp waits until the fan-out holds the engine's sequence of ev.
func (h *harness) caughtUp(t *testing.T, ev string) {
	t.Helper()
	snap, err := h.eng.Snapshot(ev)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "fan-out catches up with "+ev, func() bool {
		_, seq, _ := h.srv.Position(ev)
		return seq == snap.Seq
	})
}

func price(rng *rand.Rand) buzzer.Price { return buzzer.Price(12000 + rng.IntN(40000)) }

// update applies one random provider message to a random event: new prices,
// a bet stop, a reopened market, or a full image that drops a market.
func (h *harness) update(t *testing.T) {
	t.Helper()
	h.n++
	ev := h.events[h.rng.IntN(len(h.events))]
	inPlay := true
	u := odds.Update{Provider: "p1", Kind: odds.KindOdds, EventID: ev, InPlay: &inPlay,
		SourceTime: h.clock.Now().Add(-time.Duration(h.rng.IntN(50)) * time.Millisecond), Score: &odds.Score{Home: h.n % 3, Away: h.n % 2}}
	status := odds.Open
	switch r := h.rng.IntN(10); {
	case r == 0:
		u.SuspendAll, u.Reason = true, "bet_stop"
	case r == 1:
		status = odds.Suspended
	case r == 2:
		u.Full = true
	}
	if !u.SuspendAll {
		u.Markets = append(u.Markets, odds.MarketUpdate{Type: odds.MatchResult, Status: status, Selections: []odds.Selection{
			{ID: odds.Home, Price: price(h.rng)}, {ID: odds.Draw, Price: price(h.rng)}, {ID: odds.Away, Price: price(h.rng)}}})
		for _, line := range []odds.Line{150, 250, 350} {
			if u.Full && line == odds.Line(150+100*h.rng.IntN(3)) {
				continue // dropped from the full image: removed
			}
			if !u.Full && h.rng.IntN(2) == 0 {
				continue
			}
			u.Markets = append(u.Markets, odds.MarketUpdate{Type: odds.Totals, Line: line, Status: odds.Open, Selections: []odds.Selection{
				{ID: odds.Over, Price: price(h.rng)}, {ID: odds.Under, Price: price(h.rng)}}})
		}
	}
	if err := h.eng.Apply(u); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) snapshotJSON(t *testing.T, ev string) string {
	t.Helper()
	s, err := h.eng.Snapshot(ev)
	if err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, s)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond until it holds or 30 s pass (a bound, not a timing
// assertion: it only turns a hang into a failure).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// direct is a client attached to the node through an in-memory transport,
// whose writes can be held to play a subscriber that stops reading.
type direct struct {
	t      *testing.T
	client *centrifuge.Client
	closeF centrifuge.ClientCloseFunc

	gateMu  sync.Mutex
	gate    chan struct{} // non-nil: writes wait until it is closed
	mu      sync.Mutex
	f       fanout.Follower
	err     error
	reasons map[string]int // delta reasons seen
	maxCon  int            // most deltas in one conflated update
	subOK   chan struct{}
}

func (d *direct) Name() string                                { return "direct" }
func (d *direct) AcceptProtocol() string                      { return "" }
func (d *direct) Protocol() centrifuge.ProtocolType           { return centrifuge.ProtocolTypeJSON }
func (d *direct) ProtocolVersion() centrifuge.ProtocolVersion { return centrifuge.ProtocolVersion2 }
func (d *direct) Unidirectional() bool                        { return false }
func (d *direct) Emulation() bool                             { return false }
func (d *direct) DisabledPushFlags() uint64                   { return 0 }
func (d *direct) PingPongConfig() centrifuge.PingPongConfig {
	return centrifuge.PingPongConfig{PingInterval: -1, PongTimeout: -1}
}
func (d *direct) Close(centrifuge.Disconnect) error { d.hold(false); return nil }

func (d *direct) hold(on bool) {
	d.gateMu.Lock()
	defer d.gateMu.Unlock()
	if on && d.gate == nil {
		d.gate = make(chan struct{})
	}
	if !on && d.gate != nil {
		close(d.gate)
		d.gate = nil
	}
}

func (d *direct) Write(b []byte) error { return d.WriteMany(b) }

func (d *direct) WriteMany(bs ...[]byte) error {
	d.gateMu.Lock()
	g := d.gate
	d.gateMu.Unlock()
	if g != nil {
		<-g
	}
	for _, b := range bs {
		for _, line := range splitLines(b) {
			d.handle(line)
		}
	}
	return nil
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := 0
		for i < len(b) && b[i] != '\n' {
			i++
		}
		if i > 0 {
			out = append(out, b[:i])
		}
		if i == len(b) {
			break
		}
		b = b[i+1:]
	}
	return out
}

type wireReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Subscribe *struct {
		Data json.RawMessage `json:"data"`
	} `json:"subscribe"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data json.RawMessage `json:"data"`
		} `json:"pub"`
	} `json:"push"`
}

func (d *direct) handle(line []byte) {
	var r wireReply
	if err := json.Unmarshal(line, &r); err != nil {
		d.fail(fmt.Errorf("undecodable frame %q: %w", line, err))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case r.Error != nil:
		d.failLocked(fmt.Errorf("command %d failed: %d %s", r.ID, r.Error.Code, r.Error.Message))
	case r.Subscribe != nil:
		if err := d.f.Subscribed(r.Subscribe.Data); err != nil {
			d.failLocked(err)
		}
		close(d.subOK)
	case r.Push != nil && r.Push.Pub != nil:
		var m fanout.Message
		_ = json.Unmarshal(r.Push.Pub.Data, &m)
		if m.ContinuityLost {
			d.reasons["lost:"+m.Reason]++
		}
		if m.Delta != nil && m.Delta.Reason != "" {
			d.reasons[m.Delta.Reason]++
		}
		for _, x := range m.Deltas {
			if x.Reason != "" {
				d.reasons[x.Reason]++
			}
		}
		d.maxCon = max(d.maxCon, len(m.Deltas))
		if err := d.f.Publication(r.Push.Pub.Data); err != nil {
			d.failLocked(err)
		}
	}
}

func (d *direct) fail(err error) { d.mu.Lock(); defer d.mu.Unlock(); d.failLocked(err) }
func (d *direct) failLocked(err error) {
	if d.err == nil {
		d.err = err
	}
}

// dial connects a direct client and subscribes it to ev's channel with the
// follower's resume data, waiting for the subscribe reply.
func dial(t *testing.T, srv *fanout.Server, ev string, prev *direct) *direct {
	t.Helper()
	d := &direct{t: t, reasons: map[string]int{}, subOK: make(chan struct{})}
	if prev != nil {
		prev.mu.Lock()
		d.f = prev.f
		d.f.State = prev.f.State.Clone()
		prev.mu.Unlock()
	}
	c, closeF, err := centrifuge.NewClient(context.Background(), srv.Node(), d)
	if err != nil {
		t.Fatal(err)
	}
	d.client, d.closeF = c, closeF
	t.Cleanup(func() { d.hold(false); _ = closeF() })
	c.HandleCommand(&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{}}, 0)
	c.HandleCommand(&protocol.Command{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: fanout.EventChannel(ev), Data: d.f.ResumeRequest()}}, 0)
	select {
	case <-d.subOK:
	case <-time.After(30 * time.Second):
		t.Fatal("no subscribe reply")
	}
	return d
}

func (d *direct) state(t *testing.T) (string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return mustJSON(t, d.f.State), d.err
}
