package feedsim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer/odds"
)

// Faults are the controllable misbehaviours of a provider.
type Faults struct {
	// Silent stops everything the provider sends (data and heartbeats).
	Silent bool `json:"silent"`
	// LagMS delays delivery by this many milliseconds; message timestamps keep
	// the time the change happened, so an adapter sees the lag.
	LagMS int `json:"lag_ms"`
	// MalformedEvery corrupts one message in N (0: never).
	MalformedEvery int `json:"malformed_every"`
	// Diverge multiplies every price the provider quotes (0 or 1: none).
	Diverge float64 `json:"diverge"`
}

// faultBox holds a provider's faults and the seeded randomness that decides
// which message to corrupt.
type faultBox struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
	n   int
}

func newFaultBox(seed uint64) *faultBox {
	return &faultBox{rng: rand.New(rand.NewPCG(seed, 7))}
}

func (b *faultBox) get() Faults {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.f
}

func (b *faultBox) set(f Faults) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.f = f
}

// mangle returns msg, or a corrupted copy of it when the malformed fault picks it.
func (b *faultBox) mangle(msg []byte) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.f.MalformedEvery <= 0 || len(msg) < 4 {
		return msg
	}
	b.n++
	if b.n%b.f.MalformedEvery != 0 {
		return msg
	}
	c := append([]byte(nil), msg...)
	switch b.rng.IntN(3) {
	case 0: // truncated
		return c[:len(c)/2]
	case 1: // a byte flipped into garbage
		c[b.rng.IntN(len(c))] = '\x01'
		return c
	default: // a well-formed envelope with nonsense in it
		return []byte(`{"op":"mcm","mc":[{"id":7,"rc":"x"}]}<odds_change event_id="sr:match:x" product="z"/>`)
	}
}

// decimal returns the provider's decimal price for fair probability p with
// margin and the diverge fault applied, clamped to [1.01, 1000].
func decimal(p, margin, diverge float64) float64 {
	d := 1 / (p * (1 + margin))
	if diverge > 0 && diverge != 1 {
		d = 1 + (d-1)*diverge
	}
	return math.Min(1000, math.Max(1.01, d))
}

// twoDP formats d rounded down to two decimals, as UOF publishes odds.
func twoDP(d float64) string {
	c := int64(math.Floor(d*100 + 1e-9))
	if c < 101 {
		c = 101
	}
	return fmt.Sprintf("%d.%02d", c/100, c%100)
}

// pipe delivers work in FIFO order, each item not before its due time: it is
// how provider latency and the lag fault are simulated.
type pipe struct {
	ch chan pipeItem
}

type pipeItem struct {
	due time.Time
	fn  func()
}

func newPipe() *pipe { return &pipe{ch: make(chan pipeItem, 4096)} }

func (p *pipe) push(due time.Time, fn func()) { p.ch <- pipeItem{due, fn} }

func (p *pipe) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-p.ch:
			if d := time.Until(it.due); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
			}
			it.fn()
		}
	}
}

// outlet is what every simulated provider has in common: its faults, the
// pipe that delays what it sends by its latency (plus the lag fault), its
// listener, and the goroutines it runs until its context ends.
type outlet struct {
	faults  *faultBox
	pipe    *pipe
	latency time.Duration
	ln      net.Listener
	wg      sync.WaitGroup
}

// newOutlet returns an outlet whose faults are seeded with seed and whose
// latency is latency.
func newOutlet(seed uint64, latency time.Duration) outlet {
	return outlet{faults: newFaultBox(seed), pipe: newPipe(), latency: latency}
}

// due is when something sent now arrives: after the latency and the lag fault.
func (o *outlet) due(now time.Time) time.Time {
	return now.Add(o.latency + time.Duration(o.faults.get().LagMS)*time.Millisecond)
}

// follow hands every step of sim to deliver once it is due.
func (o *outlet) follow(sim *Sim, deliver func([]MatchState)) {
	sim.Subscribe(func(ms []MatchState) { o.pipe.push(o.due(time.Now()), func() { deliver(ms) }) })
}

// SetFaults replaces the provider's faults.
func (o *outlet) SetFaults(f Faults) { o.faults.set(f) }

// Faults returns the provider's faults.
func (o *outlet) Faults() Faults { return o.faults.get() }

// Wait blocks until the provider has stopped after its context ended.
func (o *outlet) Wait() { o.wg.Wait() }

// listen opens addr and runs the pipe and each of runs until ctx is done.
func (o *outlet) listen(ctx context.Context, addr string, runs ...func(context.Context)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	o.ln = ln
	for _, run := range append([]func(context.Context){o.pipe.run}, runs...) {
		o.wg.Add(1)
		go func() { defer o.wg.Done(); run(ctx) }()
	}
	return nil
}

// serveHTTP is listen with an HTTP server of mux on the listener.
func (o *outlet) serveHTTP(ctx context.Context, addr string, mux http.Handler, runs ...func(context.Context)) error {
	srv := &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return ctx }}
	serve := func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		_ = srv.Serve(o.ln)
	}
	return o.listen(ctx, addr, append([]func(context.Context){serve}, runs...)...)
}

// Provider names, as the dev wiring and the control API use them.
const (
	ProviderUOF     = "uof"
	ProviderBetfair = "betfair"
	ProviderUSOdds  = "usodds"
)

// EventID is the canonical event id the dev catalog gives match index.
func EventID(index int) string { return fmt.Sprintf("ev-%d", index) }

// UOFEventID is the UOF provider's id of match index.
func UOFEventID(index int) string { return fmt.Sprintf("sr:match:%d", 50000000+index) }

// BetfairEventID is the Betfair provider's event id of match index.
func BetfairEventID(index int) string { return fmt.Sprintf("%d", 32000000+index) }

// BetfairRunnerIDs are the Betfair selection ids of match index's teams.
func BetfairRunnerIDs(index int) (home, away int64) {
	return 1000000 + 2*int64(index), 1000001 + 2*int64(index)
}

func betfairMarketID(index, slot int) string { return fmt.Sprintf("1.%d", 200000000+index*10+slot) }

// USOddsEventID is the US odds feed's id of match index (a 32-hex-digit id).
func USOddsEventID(index int) string { return fmt.Sprintf("%032x", uint64(index)*0x9e3779b97f4a7c15) }

// Links returns the dev mapping of match m for every simulated provider.
func Links(m MatchState) []odds.EventLink {
	h, a := BetfairRunnerIDs(m.Index)
	ev := EventID(m.Index)
	return []odds.EventLink{
		{Provider: ProviderUOF, ProviderEventID: UOFEventID(m.Index), EventID: ev},
		{Provider: ProviderBetfair, ProviderEventID: BetfairEventID(m.Index), EventID: ev, Home: fmt.Sprint(h), Away: fmt.Sprint(a)},
		{Provider: ProviderUSOdds, ProviderEventID: USOddsEventID(m.Index), EventID: ev, Home: m.Home, Away: m.Away},
	}
}

// Fixture returns the dev catalog entry of match m.
func Fixture(m MatchState) odds.Fixture {
	sport := odds.Football
	if m.Sport == SportAmericanFootball {
		sport = odds.AmericanFootball
	}
	return odds.Fixture{EventID: EventID(m.Index), Sport: sport, Home: m.Home, Away: m.Away, StartTime: m.Start}
}
