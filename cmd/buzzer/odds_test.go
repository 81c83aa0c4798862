package main

import (
	"bufio"
	"context"
	"encoding/json"
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

	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/odds"
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
	eng, err := startOddsWith(context.Background(), n, sc)
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
	return eng, player
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
