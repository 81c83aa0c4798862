package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	centrifugego "github.com/centrifugal/centrifuge-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/feedsim"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// oddsNode builds the parts of a node the odds part needs (NATS, the HTTP
// server), listening on free ports; it is closed at the test's end.
func oddsNode(t *testing.T) *node {
	t.Helper()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.resolve()
	cfg.HTTP.HTTPAddr, cfg.HTTP.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Odds.Football, cfg.Odds.AmericanFootball, cfg.Odds.Seed = 2, 1, 7
	log := slog.New(slog.DiscardHandler)
	n := &node{cfg: &cfg, log: log, reg: prometheus.NewRegistry()}
	var err error
	if n.nats, err = nats.Start(context.Background(), cfg.NATS, log); err != nil {
		t.Fatal(err)
	}
	n.onClose(n.nats.Close)
	if n.http, err = httpapi.New(cfg.HTTP, log, nil, nil, n.reg); err != nil {
		t.Fatal(err)
	}
	return n
}

// serveOdds starts the odds part on n and serves it; it returns the player
// address once /readyz says the fan-out has loaded.
func serveOdds(t *testing.T, n *node, sc OddsStreamConfig) (*odds.Engine, string) {
	t.Helper()
	p, player := serveOddsPart(t, n, sc, nil)
	return p.engine, player
}

// serveOddsPart is serveOdds with a provider priority, returning the whole
// odds part.
func serveOddsPart(t *testing.T, n *node, sc OddsStreamConfig, providers []string) (*oddsPart, string) {
	t.Helper()
	p, err := startOddsWith(context.Background(), n, sc, oddsOptions{Providers: providers})
	if err != nil {
		n.close()
		t.Fatal(err)
	}
	if err := n.http.Listen(); err != nil {
		n.close()
		t.Fatal(err)
	}
	n.http.Serve()
	n.http.SetReady(true)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.http.Shutdown(ctx)
		n.close() // stops and waits for everything startOdds started
	})
	player, _ := n.http.Addrs()
	waitFor(t, "readyz", func() bool {
		code, _, _ := get(t, "http://"+player+"/readyz", "")
		return code == http.StatusOK
	})
	return p, player
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(40 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// followOverWebSocket subscribes to the lobby and to one live event through
// /v1/stream/ws and checks the client reaches exactly the engine's state,
// with every message in sequence, while the simulated providers keep
// changing it.
func followOverWebSocket(t *testing.T, eng *odds.Engine, player string) {
	t.Helper()
	var evID string
	waitFor(t, "an event with markets", func() bool {
		for _, e := range eng.Events() {
			if s, err := eng.Snapshot(e.EventID); err == nil && len(s.Markets) > 0 && !s.Event.Ended {
				evID = e.EventID
				return true
			}
		}
		return false
	})
	c := centrifugego.NewJsonClient("ws://"+player+"/v1/stream/ws", centrifugego.Config{HandshakeTimeout: 10 * time.Second})
	defer c.Close()
	var mu sync.Mutex
	var f fanout.Follower
	var lobby fanout.Lobby
	var ferr error
	keep := func(err error) {
		if err != nil && ferr == nil {
			ferr = err
		}
	}
	ls, err := c.NewSubscription(fanout.LobbyChannel)
	if err != nil {
		t.Fatal(err)
	}
	ls.OnSubscribed(func(e centrifugego.SubscribedEvent) { mu.Lock(); defer mu.Unlock(); keep(lobby.Subscribed(e.Data)) })
	ls.OnPublication(func(e centrifugego.PublicationEvent) { mu.Lock(); defer mu.Unlock(); keep(lobby.Publication(e.Data)) })
	es, err := c.NewSubscription(fanout.EventChannel(evID))
	if err != nil {
		t.Fatal(err)
	}
	es.OnSubscribed(func(e centrifugego.SubscribedEvent) { mu.Lock(); defer mu.Unlock(); keep(f.Subscribed(e.Data)) })
	es.OnPublication(func(e centrifugego.PublicationEvent) { mu.Lock(); defer mu.Unlock(); keep(f.Publication(e.Data)) })
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*centrifugego.Subscription{ls, es} {
		if err := s.Subscribe(); err != nil {
			t.Fatal(err)
		}
	}
	// The providers keep moving: catch a moment where the client is at the
	// engine's sequence and compare the whole state then.
	waitFor(t, "the client holds the engine's state of "+evID, func() bool {
		snap, err := eng.Snapshot(evID)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if ferr != nil {
			t.Fatal(ferr)
		}
		if f.State.Seq != snap.Seq || f.Deltas+f.Conflated == 0 {
			return false
		}
		a, _ := json.Marshal(f.State)
		b, _ := json.Marshal(snap)
		if string(a) != string(b) {
			t.Fatalf("client state at seq %d differs from the engine's:\n%s\n%s", snap.Seq, a, b)
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(lobby.Events) == 0 {
		t.Fatal("the lobby listed no event")
	}
}

func TestOddsStreamOverJetStream(t *testing.T) {
	n := oddsNode(t)
	eng, player := serveOdds(t, n, DefaultOddsStreamConfig())
	followOverWebSocket(t, eng, player)

	// The SSE transport is mounted too: a connect command in the query
	// string is answered on the event stream.
	resp, err := http.Get("http://" + player + "/v1/stream/sse?cf_connect=" + url.QueryEscape(`{"id":1,"connect":{"name":"test"}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("SSE: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("SSE stream ended before the connect reply: %v", err)
		}
		if strings.HasPrefix(line, "data:") {
			if !strings.Contains(line, `"connect"`) {
				t.Fatalf("SSE first event %q is not the connect reply", line)
			}
			break
		}
	}

	// Raw provider messages are journaled on JetStream.
	waitFor(t, "raw messages journaled", func() bool {
		s, err := n.nats.JS.Stream(context.Background(), nats.DefaultOddsConfig().RawStream)
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs > 0
	})
}

func TestOddsStreamOverKafka(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	n := oddsNode(t)
	sc := DefaultOddsStreamConfig()
	sc.Backbone = "kafka"
	sc.Kafka.Brokers = cluster.ListenAddrs()
	eng, player := serveOdds(t, n, sc)
	followOverWebSocket(t, eng, player)
}

func TestOddsStreamConfigValidate(t *testing.T) {
	if err := DefaultOddsStreamConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*OddsStreamConfig){
		"backbone":      func(c *OddsStreamConfig) { c.Backbone = "rabbit" },
		"kafka brokers": func(c *OddsStreamConfig) { c.Backbone = "kafka" },
		"window":        func(c *OddsStreamConfig) { c.Fanout.Window = 0 },
		"history":       func(c *OddsStreamConfig) { c.Fanout.History = 0 },
		"write delay":   func(c *OddsStreamConfig) { c.Fanout.WriteDelay = -time.Millisecond },
	} {
		c := DefaultOddsStreamConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFeedsimCommand runs `buzzer feedsim` and checks every endpoint it
// prints accepts connections.
func TestFeedsimCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- oddsCommands()["feedsim"].run(ctx, []string{"--football", "1", "--american-football", "1"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var eps map[string]string
	if err := json.Unmarshal([]byte(line), &eps); err != nil {
		t.Fatalf("feedsim printed %q: %v", line, err)
	}
	for _, name := range []string{"uof", "betfair", "usodds", "control"} {
		ep, ok := eps[name]
		if !ok {
			t.Fatalf("no %s endpoint in %v", name, eps)
		}
		host := ep
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			host = u.Host
		}
		conn, err := net.DialTimeout("tcp", host, 5*time.Second)
		if err != nil {
			t.Fatalf("%s endpoint %s: %v", name, ep, err)
		}
		conn.Close()
	}
	cancel()
	go io.Copy(io.Discard, pr)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := runFeedsim(context.Background(), []string{"--football", "0", "--american-football", "0"}, io.Discard, io.Discard); err == nil {
		t.Fatal("feedsim with no matches accepted")
	}
}

// eventWatch is a player subscribed to one event's channel over a real
// WebSocket (centrifuge-go): it keeps the client's state and the time
// every delta arrived.
type eventWatch struct {
	mu   sync.Mutex
	f    fanout.Follower
	err  error
	seen []seenDelta
}

type seenDelta struct {
	at time.Time
	d  odds.Delta
}

func watchEvent(t *testing.T, player, eventID string) *eventWatch {
	t.Helper()
	w := &eventWatch{}
	c := centrifugego.NewJsonClient("ws://"+player+"/v1/stream/ws", centrifugego.Config{HandshakeTimeout: 10 * time.Second})
	t.Cleanup(c.Close)
	s, err := c.NewSubscription(fanout.EventChannel(eventID))
	if err != nil {
		t.Fatal(err)
	}
	s.OnSubscribed(func(e centrifugego.SubscribedEvent) {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.keep(w.f.Subscribed(e.Data))
	})
	s.OnPublication(func(e centrifugego.PublicationEvent) {
		at := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		var m fanout.Message
		if err := json.Unmarshal(e.Data, &m); err == nil {
			if m.Delta != nil {
				w.seen = append(w.seen, seenDelta{at, *m.Delta})
			}
			for _, d := range m.Deltas {
				w.seen = append(w.seen, seenDelta{at, d})
			}
		}
		w.keep(w.f.Publication(e.Data))
	})
	if err := c.Connect(); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *eventWatch) keep(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// state returns the client's state; a gap or anything out of order fails t.
func (w *eventWatch) state(t *testing.T) odds.Snapshot {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		t.Fatalf("subscriber: %v", w.err)
	}
	return w.f.State.Clone()
}

func marketOf(s odds.Snapshot, id string) (odds.Market, bool) {
	for _, m := range s.Markets {
		if m.ID == id {
			return m, true
		}
	}
	return odds.Market{}, false
}

// setFaults sets a simulated provider's faults through the simulator's
// control API, as an operator would.
func setFaults(t *testing.T, p *oddsPart, provider string, f feedsim.Faults) {
	t.Helper()
	b, _ := json.Marshal(f)
	req, _ := http.NewRequest(http.MethodPut, p.feeds.ControlURL()+"/faults/"+provider, strings.NewReader(string(b)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("PUT faults/%s: %d", provider, resp.StatusCode)
	}
}

// silenceMargin bounds, beyond the silence timeout, how late subscribers
// may learn that a silent provider's markets are no longer offered: one
// health-check interval, the provider's in-flight latency, and delivery
// through the backbone and the fan-out on a shared machine under -race. It
// is a correctness bound (stale prices must not keep showing), not a speed
// target: those are in docs/benchmarks.md.
const silenceMargin = 3 * time.Second

// TestProviderSilence is the must-show: the primary provider goes
// silent (through the simulator's fault control); a WebSocket subscriber
// learns within the silence timeout (plus the margin) that its markets are
// suspended, and a bet on one is refused by the wallet reading the live
// prices; where a secondary is configured it takes over and the market
// reopens under it. When the primary recovers it drives the event again.
func TestProviderSilence(t *testing.T) {
	for _, tc := range []struct {
		name      string
		providers []string
		secondary string
	}{
		{"primary only", []string{feedsim.ProviderUOF}, ""},
		{"with secondary", []string{feedsim.ProviderUOF, feedsim.ProviderBetfair}, feedsim.ProviderBetfair},
	} {
		t.Run(tc.name, func(t *testing.T) { providerSilence(t, tc.providers, tc.secondary) })
	}
}

func providerSilence(t *testing.T, providers []string, secondary string) {
	const primary = feedsim.ProviderUOF
	ctx := context.Background()
	n := oddsNode(t)
	silence := n.cfg.Odds.SilenceTimeout
	p, player := serveOddsPart(t, n, DefaultOddsStreamConfig(), providers)

	// The wallet reads the live prices, in-process on its own SQLite store
	// (the HTTP money routes add authentication and geolocation, which this
	// test is not about).
	wcfg := wallet.DefaultConfig()
	ws, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(enginetest.SQLite(t)),
		Prices: livePrices{engine: p.engine, inPlayDelay: n.cfg.Odds.InPlayBetDelay}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Deposit(ctx, "alice", "dep-1", wallet.MoneyRequest{Amount: 1_000_000, Currency: "USD"}); err != nil {
		t.Fatal(err)
	}

	// The match with the most time left, so it outlasts the test; its main
	// market (match result or moneyline) is offered by every provider.
	var match feedsim.MatchState
	for _, m := range p.feeds.Sim.Matches() {
		if !m.Ended && (match.Duration == 0 || m.Duration-m.Elapsed > match.Duration-match.Elapsed) {
			match = m
		}
	}
	evID := feedsim.EventID(match.Index)
	mt := odds.MatchResult
	if match.Sport == feedsim.SportAmericanFootball {
		mt = odds.Moneyline
	}
	marketID := odds.MarketID(evID, mt, 0)
	waitFor(t, evID+" driven by "+primary+" with "+marketID+" published", func() bool {
		s, err := p.engine.Snapshot(evID)
		_, ok := marketOf(s, marketID)
		return err == nil && s.Event.Provider == primary && ok
	})
	w := watchEvent(t, player, evID)
	waitFor(t, "the subscriber holds "+evID, func() bool { return w.state(t).Event.Provider == primary })

	n0 := 0
	bet := func(key string) (*wallet.Response, error) {
		q, err := p.engine.Quote(evID, marketID, odds.Home)
		if err != nil {
			t.Fatal(err)
		}
		return ws.PlaceBet(ctx, "alice", key, wallet.PlaceBetRequest{Stake: 500, Currency: "USD", PriceChange: wallet.PriceAny,
			Legs: []wallet.LegRequest{{EventID: evID, MarketID: marketID, SelectionID: odds.Home, Price: q.Price}}})
	}
	// accepted places bets until one is accepted: the simulated match stops
	// betting around dangerous moments, which refuses a bet for a while.
	accepted := func(what string) {
		t.Helper()
		waitFor(t, "a bet accepted "+what, func() bool {
			n0++
			resp, err := bet(fmt.Sprintf("bet-%d", n0))
			if err != nil && buzzer.ErrorReason(err) == "market_not_open" {
				return false
			}
			if err != nil || resp.Status != http.StatusCreated {
				t.Fatalf("bet %s: %v %+v", what, err, resp)
			}
			return true
		})
	}
	accepted("before the silence")

	t0 := time.Now()
	setFaults(t, p, primary, feedsim.Faults{Silent: true})
	deadline := t0.Add(silence + silenceMargin)
	waitFor(t, "the subscriber learns "+primary+" no longer drives "+evID, func() bool { return w.state(t).Event.Provider != primary })

	// The verdict is one event delta (the driving provider changes), then
	// one delta per market that changes with it; both reached the client in time.
	w.mu.Lock()
	var verdict *seenDelta
	wasOpen, suspended := false, (*seenDelta)(nil)
	for i := range w.seen {
		sd := &w.seen[i]
		if verdict == nil {
			if sd.d.Kind == odds.DeltaMarket && sd.d.Market.ID == marketID {
				wasOpen = sd.d.Market.Status == odds.Open
			}
			if sd.d.Kind == odds.DeltaEvent && sd.d.Event.Provider != primary && sd.at.After(t0) {
				verdict = sd
			}
			continue
		}
		if sd.d.Kind == odds.DeltaMarket && sd.d.Market.ID == marketID && suspended == nil {
			suspended = sd
		}
	}
	w.mu.Unlock()
	if verdict == nil {
		t.Fatal("no event delta told the subscriber the driving provider changed")
	}
	if verdict.at.After(deadline) {
		t.Fatalf("the subscriber learned of the silence %s after it began; the bound is %s", verdict.at.Sub(t0), silence+silenceMargin)
	}
	t.Logf("silence verdict reached the subscriber %s after the provider went silent (timeout %s)", verdict.at.Sub(t0), silence)

	if secondary == "" {
		// Nobody else may drive: every market is suspended, none shows a price as open.
		if verdict.d.Event.Provider != "" {
			t.Fatalf("event driven by %q with no secondary configured", verdict.d.Event.Provider)
		}
		if wasOpen {
			if suspended == nil || suspended.d.Market.Status != odds.Suspended || suspended.d.Reason != "provider_unavailable" {
				t.Fatalf("the open market was not suspended for the silence: %+v", suspended)
			}
			if suspended.at.After(deadline) {
				t.Fatalf("suspension reached the subscriber %s after the silence began", suspended.at.Sub(t0))
			}
		}
		st := w.state(t)
		for _, m := range st.Markets {
			if m.Status == odds.Open {
				t.Fatalf("market %s still open at the subscriber after the silence", m.ID)
			}
		}
		if q, err := p.engine.Quote(evID, marketID, odds.Home); err != nil || q.Status != odds.Suspended {
			t.Fatalf("engine quote after the silence: %+v %v", q, err)
		}
		_, err := bet("bet-silent")
		if buzzer.ErrorReason(err) != "market_not_open" || !strings.Contains(buzzer.ErrorMessage(err), "suspended") {
			t.Fatalf("a bet on a silent provider's market: %v", err)
		}
	} else {
		// The secondary takes over and the market reopens under it (it may
		// first pass through a bet stop of the secondary's own).
		waitFor(t, secondary+" takes over "+marketID, func() bool {
			st := w.state(t)
			m, ok := marketOf(st, marketID)
			return st.Event.Provider == secondary && ok && m.Provider == secondary && m.Status == odds.Open
		})
		accepted("under the secondary")
	}

	// The primary recovers: its adapter re-synchronizes and it drives the event again.
	setFaults(t, p, primary, feedsim.Faults{})
	waitFor(t, primary+" drives "+evID+" again", func() bool {
		st := w.state(t)
		m, ok := marketOf(st, marketID)
		return st.Event.Provider == primary && ok && m.Provider == primary && m.Status == odds.Open
	})
	accepted("after the primary recovered")

	// The subscriber saw every delta in order and holds the engine's state.
	waitFor(t, "the subscriber holds the engine's state", func() bool {
		snap, err := p.engine.Snapshot(evID)
		if err != nil {
			t.Fatal(err)
		}
		st := w.state(t)
		if st.Seq != snap.Seq {
			return false
		}
		a, _ := json.Marshal(st)
		b, _ := json.Marshal(snap)
		if string(a) != string(b) {
			t.Fatalf("subscriber state at seq %d differs from the engine's:\n%s\n%s", snap.Seq, a, b)
		}
		return true
	})
}

// TestBenchOddsCommand runs `buzzer bench odds` in-process with a few
// subscribers and checks what it prints: every subscriber got a snapshot
// and then deltas, none with a gap or out of order, with latencies measured.
func TestBenchOddsCommand(t *testing.T) {
	var out, errb bytes.Buffer
	args := []string{"--clients", "20", "--duration", "2s", "--warmup", "500ms", "--football", "3", "--american-football", "2", "--json"}
	if err := oddsCommands()["bench odds"].run(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("bench odds: %v\n%s", err, errb.String())
	}
	var res OddsBenchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench odds printed %q: %v", out.String(), err)
	}
	var keys map[string]any
	_ = json.Unmarshal(out.Bytes(), &keys)
	for _, k := range []string{"clients", "subscribers", "deliveries_per_s", "p50_ms", "p95_ms", "p99_ms", "gaps", "out_of_order", "conflated", "snapshot_p99_ms"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("no %q in %s", k, out.String())
		}
	}
	switch {
	case res.Clients != 20 || res.Subscribers != 20 || res.Events != 5:
		t.Fatalf("subscribers: %+v", res)
	case res.Deliveries == 0 || res.DeliveriesPerS <= 0 || res.DeltasPerS <= 0 || res.BytesPerDelivery <= 0:
		t.Fatalf("nothing delivered: %+v", res)
	case res.Gaps != 0 || res.OutOfOrder != 0 || res.Disconnects != 0:
		t.Fatalf("the stream broke: %+v", res)
	case res.P50ms <= 0 || res.P50ms > res.P95ms || res.P95ms > res.P99ms || res.P99ms > res.MaxMs:
		t.Fatalf("latency percentiles: %+v", res)
	}
	for _, bad := range [][]string{{"--clients", "0"}, {"--duration", "0s"}, {"--target", "ftp://x"}} {
		if err := runBenchOdds(context.Background(), bad, io.Discard, io.Discard); err == nil {
			t.Errorf("bench odds %v accepted", bad)
		}
	}
}

// TestBenchReadPub checks the bench's scanning of publications against the
// fan-out's own encoding: sequence, conflation and every source time.
func TestBenchReadPub(t *testing.T) {
	src := time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC)
	now := src.Add(42 * time.Millisecond)
	push := func(m fanout.Message) []byte {
		data, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return []byte(`{"push":{"channel":"` + fanout.EventChannel("ev-1") + `","pub":{"data":` + string(data) + `}}}`)
	}
	mk := &odds.Market{ID: "ev-1:match_result", Type: odds.MatchResult, Status: odds.Open, Version: 9}
	d := func(seq uint64, st time.Time) odds.Delta {
		return odds.Delta{EventID: "ev-1", Seq: seq, Kind: odds.DeltaMarket, Market: mk, SourceTime: st, At: now}
	}
	sb := &benchSub{seeded: true, last: 4}
	for _, line := range [][]byte{
		push(fanout.Message{Type: fanout.TypeDelta, EventID: "ev-1", Seq: 5, Delta: ptr(d(5, src))}),
		push(fanout.Message{Type: fanout.TypeConflated, EventID: "ev-1", Con: true, From: 5, Seq: 9, Deltas: []odds.Delta{d(7, src), d(9, time.Time{})}}),
		push(fanout.Message{Type: fanout.TypeDelta, EventID: "ev-1", Seq: 11, Delta: ptr(d(11, src))}), // a gap
		push(fanout.Message{Type: fanout.TypeDelta, EventID: "ev-1", Seq: 11, Delta: ptr(d(11, src))}), // out of order
	} {
		if err := sb.read(line, now, now, true); err != nil {
			t.Fatal(err)
		}
	}
	if sb.last != 11 || sb.gaps != 1 || sb.ooo != 1 || sb.conflated != 1 || sb.deliveries != 4 {
		t.Fatalf("last %d gaps %d out of order %d conflated %d deliveries %d", sb.last, sb.gaps, sb.ooo, sb.conflated, sb.deliveries)
	}
	if len(sb.lat) != 4 { // the zero source time is not timed
		t.Fatalf("latencies %v", sb.lat)
	}
	for _, l := range sb.lat {
		if l != 42 {
			t.Fatalf("latencies %v, want 42 ms each", sb.lat)
		}
	}
}

func ptr[T any](v T) *T { return &v }
