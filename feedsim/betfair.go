package feedsim

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BetfairConfig configures the Betfair-shaped provider.
type BetfairConfig struct {
	Margin  float64       // default 0.01 (an exchange's best back price is near fair)
	Latency time.Duration // default 10ms
	Seed    uint64
}

// Betfair is a provider shaped like the Betfair Exchange Stream API: a TCP
// socket carrying CRLF-delimited JSON. The server greets with op=connection;
// the client sends op=authentication then op=marketSubscription (with
// heartbeatMs and, on reconnect, initialClk/clk); the server answers with
// op=status, an op=mcm image (ct SUB_IMAGE, or RESUB_DELTA when clock tokens
// were given) and then mcm deltas carrying clk, with ct HEARTBEAT when idle.
type Betfair struct {
	cfg BetfairConfig
	sim *Sim
	outlet

	mu      sync.Mutex
	clk     uint64
	state   map[int]MatchState
	clients map[*bfClient]struct{}

	connID int
}

type bfClient struct {
	subID int
	hb    time.Duration
	out   chan []byte
	gone  chan struct{}
	once  sync.Once
}

func (c *bfClient) close() { c.once.Do(func() { close(c.gone) }) }

// NewBetfair returns the provider; Start begins serving.
func NewBetfair(sim *Sim, cfg BetfairConfig) *Betfair {
	if cfg.Margin == 0 {
		cfg.Margin = 0.01
	}
	if cfg.Latency == 0 {
		cfg.Latency = 10 * time.Millisecond
	}
	p := &Betfair{cfg: cfg, sim: sim, outlet: newOutlet(cfg.Seed+2, cfg.Latency), state: map[int]MatchState{}, clients: map[*bfClient]struct{}{}, clk: 1}
	for _, m := range sim.Matches() {
		p.state[m.Index] = m
	}
	p.follow(sim, p.deliver)
	return p
}

// Addr is the provider's host:port once started.
func (p *Betfair) Addr() string { return p.ln.Addr().String() }

// Start listens on addr and serves until ctx is done.
func (p *Betfair) Start(ctx context.Context, addr string) error {
	return p.listen(ctx, addr, func(ctx context.Context) {
		go func() { <-ctx.Done(); _ = p.ln.Close() }()
		for {
			conn, err := p.ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() { defer p.wg.Done(); p.serve(ctx, conn) }()
		}
	})
}

// Betfair ladder: the price increments of the exchange.
var bfLadder = []struct{ upTo, step float64 }{
	{2, 0.01}, {3, 0.02}, {4, 0.05}, {6, 0.1}, {10, 0.2}, {20, 0.5}, {30, 1}, {50, 2}, {100, 5}, {1000, 10},
}

// ladderDown rounds d down to a valid exchange price.
func ladderDown(d float64) string {
	lo := 1.0
	for _, t := range bfLadder {
		if d <= t.upTo {
			ticks := math.Floor((d-lo)/t.step + 1e-9)
			v := lo + ticks*t.step
			if v < 1.01 {
				v = 1.01
			}
			return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
		}
		lo = t.upTo
	}
	return "1000"
}

type bfRunner struct {
	id   int64
	sort int
	hc   string
	key  string
}

func bfMarketType(m MatchState, mk Market) (string, []bfRunner) {
	h, a := BetfairRunnerIDs(m.Index)
	line := strconv.FormatFloat(float64(mk.Line)/100, 'f', -1, 64)
	neg := strconv.FormatFloat(-float64(mk.Line)/100, 'f', -1, 64)
	switch mk.Kind {
	case KMatchResult:
		return "MATCH_ODDS", []bfRunner{{h, 1, "", OHome}, {a, 2, "", OAway}, {58805, 3, "", ODraw}}
	case KMoneyline:
		return "MONEY_LINE", []bfRunner{{h, 1, "", OHome}, {a, 2, "", OAway}}
	case KHandicap:
		t := "ASIAN_HANDICAP"
		if m.Sport == SportAmericanFootball {
			t = "HANDICAP"
		}
		return t, []bfRunner{{h, 1, line, OHome}, {a, 2, neg, OAway}}
	default:
		if m.Sport == SportFootball {
			return fmt.Sprintf("OVER_UNDER_%d", mk.Line/10), []bfRunner{{47972, 1, "", OUnder}, {47973, 2, "", OOver}}
		}
		return "TOTAL_POINTS", []bfRunner{{47972, 1, line, OUnder}, {47973, 2, line, OOver}}
	}
}

func bfStatus(m MatchState) string {
	switch {
	case m.Ended:
		return "CLOSED"
	case m.Danger:
		return "SUSPENDED"
	}
	return "OPEN"
}

// marketChange builds one mc entry; def adds the marketDefinition (with img
// for images).
func (p *Betfair) marketChange(m MatchState, slot int, img, def bool, diverge float64) map[string]any {
	mk := m.Markets[slot]
	mt, runners := bfMarketType(m, mk)
	mc := map[string]any{"id": betfairMarketID(m.Index, slot)}
	if img {
		mc["img"] = true
	}
	if def || img {
		eventType := "1"
		if m.Sport == SportAmericanFootball {
			eventType = "6423"
		}
		var rs []map[string]any
		for _, r := range runners {
			st := "ACTIVE"
			if m.Ended {
				for _, o := range mk.Outcomes {
					if o.Key == r.key {
						st = map[string]string{"won": "WINNER", "lost": "LOSER", "void": "REMOVED"}[o.Result]
					}
				}
			}
			rd := map[string]any{"id": r.id, "sortPriority": r.sort, "status": st}
			if r.hc != "" {
				rd["hc"] = json.Number(r.hc)
			}
			rs = append(rs, rd)
		}
		mc["marketDefinition"] = map[string]any{
			"eventId": BetfairEventID(m.Index), "eventTypeId": eventType, "marketType": mt,
			"status": bfStatus(m), "inPlay": true, "betDelay": 5, "bspMarket": false, "turnInPlayEnabled": true,
			"openDate": m.Start.UTC().Format("2006-01-02T15:04:05.000Z"), "numberOfWinners": 1,
			"complete": true, "version": m.Rev, "runners": rs,
		}
	}
	if !m.Ended {
		var rc []map[string]any
		for _, r := range runners {
			for _, o := range mk.Outcomes {
				if o.Key == r.key {
					e := map[string]any{"id": r.id, "batb": [][]json.Number{{"0", json.Number(ladderDown(decimal(o.Prob, p.cfg.Margin, diverge))), json.Number(fmt.Sprintf("%d.%02d", 100+int(o.Prob*1000), m.Rev%100))}}}
					if r.hc != "" {
						e["hc"] = json.Number(r.hc)
					}
					rc = append(rc, e)
				}
			}
		}
		mc["rc"] = rc
	}
	return mc
}

func (p *Betfair) deliver(ms []MatchState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	div := p.faults.get().Diverge
	var mcs []map[string]any
	for _, m := range ms {
		prev, had := p.state[m.Index]
		p.state[m.Index] = m
		if m.Ended {
			delete(p.state, m.Index)
		}
		for slot := range m.Markets {
			mcs = append(mcs, p.marketChange(m, slot, !had, !had || bfStatus(prev) != bfStatus(m), div))
		}
	}
	if len(mcs) == 0 {
		return
	}
	p.clk++
	for c := range p.clients {
		p.send(c, map[string]any{"op": "mcm", "id": c.subID, "clk": strconv.FormatUint(p.clk, 10), "pt": time.Now().UnixMilli(), "mc": mcs})
	}
}

func (p *Betfair) send(c *bfClient, msg map[string]any) {
	if p.faults.get().Silent {
		return
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	b = p.faults.mangle(b)
	select {
	case c.out <- b:
	default: // too slow: the exchange closes such connections; the client resubscribes with its clk
		delete(p.clients, c)
		c.close()
	}
}

func (p *Betfair) serve(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	p.mu.Lock()
	p.connID++
	id := p.connID
	p.mu.Unlock()
	c := &bfClient{out: make(chan []byte, 8192), gone: make(chan struct{}), hb: 5 * time.Second}
	defer func() {
		p.mu.Lock()
		delete(p.clients, c)
		p.mu.Unlock()
		c.close()
	}()
	w := bufio.NewWriter(conn)
	writeLine := func(b []byte) error {
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := w.Write(b); err != nil {
			return err
		}
		if _, err := w.WriteString("\r\n"); err != nil {
			return err
		}
		return w.Flush()
	}
	hello, _ := json.Marshal(map[string]any{"op": "connection", "connectionId": fmt.Sprintf("002-%06d-%d", id, p.cfg.Seed)})
	if writeLine(hello) != nil {
		return
	}
	// The writer owns the socket's write side once subscribed; before that
	// the reader answers directly.
	subscribed := make(chan struct{})
	var wdone sync.WaitGroup
	wdone.Add(1)
	go func() {
		defer wdone.Done()
		select {
		case <-subscribed:
		case <-c.gone:
			return
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(c.hb)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				_ = conn.Close()
				return
			case <-c.gone:
				_ = conn.Close()
				return
			case b := <-c.out:
				if writeLine(b) != nil {
					c.close()
					_ = conn.Close()
					return
				}
				t.Reset(c.hb)
			case <-t.C:
				p.mu.Lock()
				p.send(c, map[string]any{"op": "mcm", "id": c.subID, "clk": strconv.FormatUint(p.clk, 10), "pt": time.Now().UnixMilli(), "ct": "HEARTBEAT"})
				p.mu.Unlock()
				t.Reset(c.hb)
			}
		}
	}()
	defer wdone.Wait()
	r := bufio.NewReaderSize(conn, 64<<10)
	authed := false
	status := func(reqID int, code, errCode, msg string, closed bool) []byte {
		m := map[string]any{"op": "status", "id": reqID, "statusCode": code, "connectionClosed": closed}
		if errCode != "" {
			m["errorCode"], m["errorMessage"] = errCode, msg
		}
		b, _ := json.Marshal(m)
		return b
	}
	for {
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			Op          string `json:"op"`
			ID          int    `json:"id"`
			AppKey      string `json:"appKey"`
			Session     string `json:"session"`
			HeartbeatMs int    `json:"heartbeatMs"`
			InitialClk  string `json:"initialClk"`
			Clk         string `json:"clk"`
		}
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(line))), &req); err != nil {
			p.reply(c, subscribed, writeLine, status(0, "FAILURE", "INVALID_INPUT", "bad json", true))
			return
		}
		switch req.Op {
		case "authentication":
			if req.AppKey == "" || req.Session == "" {
				p.reply(c, subscribed, writeLine, status(req.ID, "FAILURE", "NO_APP_KEY", "appKey and session required", true))
				return
			}
			authed = true
			p.reply(c, subscribed, writeLine, status(req.ID, "SUCCESS", "", "", false))
		case "heartbeat":
			p.reply(c, subscribed, writeLine, status(req.ID, "SUCCESS", "", "", false))
		case "marketSubscription":
			if !authed {
				p.reply(c, subscribed, writeLine, status(req.ID, "FAILURE", "NOT_AUTHORIZED", "authenticate first", true))
				return
			}
			select {
			case <-subscribed:
				continue // one subscription per connection here
			default:
			}
			if req.HeartbeatMs >= 500 && req.HeartbeatMs <= 5000 {
				c.hb = time.Duration(req.HeartbeatMs) * time.Millisecond
			}
			if writeLine(status(req.ID, "SUCCESS", "", "", false)) != nil {
				return
			}
			p.mu.Lock()
			c.subID = req.ID
			ct := "SUB_IMAGE"
			if req.Clk != "" || req.InitialClk != "" {
				ct = "RESUB_DELTA" // every market replaced by an image (img) as the docs allow
			}
			var mcs []map[string]any
			div := p.faults.get().Diverge
			for _, m := range p.sortedState() {
				for slot := range m.Markets {
					mcs = append(mcs, p.marketChange(m, slot, true, true, div))
				}
			}
			clk := strconv.FormatUint(p.clk, 10)
			p.clients[c] = struct{}{}
			p.send(c, map[string]any{"op": "mcm", "id": req.ID, "ct": ct, "initialClk": "i" + clk, "clk": clk, "pt": time.Now().UnixMilli(), "heartbeatMs": c.hb.Milliseconds(), "conflateMs": 0, "mc": mcs})
			p.mu.Unlock()
			close(subscribed)
		default:
			p.reply(c, subscribed, writeLine, status(req.ID, "FAILURE", "INVALID_REQUEST", "unknown op", false))
		}
	}
}

// reply writes a status: directly before the subscription, through the
// ordered output queue after it.
func (p *Betfair) reply(c *bfClient, subscribed chan struct{}, writeLine func([]byte) error, b []byte) {
	select {
	case <-subscribed:
		select {
		case c.out <- b:
		default:
		}
	default:
		_ = writeLine(b)
	}
}

func (p *Betfair) sortedState() []MatchState {
	out := make([]MatchState, 0, len(p.state))
	for _, m := range p.state {
		out = append(out, m)
	}
	sortMatches(out)
	return out
}

func sortMatches(ms []MatchState) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].Index < ms[j].Index })
}
