package feedsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// UOFConfig configures the UOF-shaped provider.
type UOFConfig struct {
	Margin        float64       // default 0.05
	Latency       time.Duration // default 30ms
	AliveInterval time.Duration // default 500ms
	Seed          uint64
}

// UOF is a provider shaped like Sportradar's Unified Odds Feed: XML messages
// (odds_change, bet_stop, bet_settlement, alive, snapshot_complete) from the
// live-odds producer (product 1). Real UOF delivers them over AMQP; here they
// flow over a long-lived HTTP response as length-prefixed frames (4-byte
// big-endian length, then the XML document), and recovery is the UOF REST call
// POST /v1/liveodds/recovery/initiate_request?request_id=N&after=MS&node_id=X,
// answered by an odds_change per live match carrying request_id, then
// snapshot_complete.
type UOF struct {
	cfg UOFConfig
	sim *Sim
	outlet

	mu      sync.Mutex
	state   map[int]MatchState
	clients map[*uofClient]struct{}
}

type uofClient struct {
	node string
	ch   chan []byte
	gone chan struct{}
}

const uofProduct = 1

// NewUOF returns the provider; Start begins serving.
func NewUOF(sim *Sim, cfg UOFConfig) *UOF {
	if cfg.Margin == 0 {
		cfg.Margin = 0.05
	}
	if cfg.Latency == 0 {
		cfg.Latency = 30 * time.Millisecond
	}
	if cfg.AliveInterval == 0 {
		cfg.AliveInterval = 500 * time.Millisecond
	}
	p := &UOF{cfg: cfg, sim: sim, outlet: newOutlet(cfg.Seed+1, cfg.Latency), state: map[int]MatchState{}, clients: map[*uofClient]struct{}{}}
	for _, m := range sim.Matches() {
		p.state[m.Index] = m
	}
	p.follow(sim, p.deliver)
	return p
}

// URL is the provider's base URL once started.
func (p *UOF) URL() string { return "http://" + p.ln.Addr().String() }

// Start listens on addr (e.g. "127.0.0.1:0") and serves until ctx is done.
func (p *UOF) Start(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", p.serveStream)
	mux.HandleFunc("POST /v1/liveodds/recovery/initiate_request", p.serveRecovery)
	return p.serveHTTP(ctx, addr, mux, p.alive)
}

func (p *UOF) alive(ctx context.Context) {
	t := time.NewTicker(p.cfg.AliveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Heartbeats queue behind the data, so a lagging producer's alives are late too.
			now := time.Now()
			msg := []byte(fmt.Sprintf(`<alive product="%d" timestamp="%d" subscribed="1"/>`, uofProduct, now.UnixMilli()))
			p.pipe.push(p.due(now), func() {
				p.mu.Lock()
				p.broadcast(msg)
				p.mu.Unlock()
			})
		}
	}
}

// broadcast sends msg to every stream; p.mu must be held, which is what keeps
// every stream in the same order as the provider's state.
func (p *UOF) broadcast(msg []byte) {
	for c := range p.clients {
		p.send(c, msg)
	}
}

func (p *UOF) send(c *uofClient, msg []byte) {
	if p.faults.get().Silent {
		return
	}
	msg = p.faults.mangle(msg)
	select {
	case c.ch <- msg:
	default: // a consumer this far behind is cut off, as a broker would; it recovers on reconnect
		delete(p.clients, c)
		close(c.gone)
	}
}

func (p *UOF) deliver(ms []MatchState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	div := p.faults.get().Diverge
	for _, m := range ms {
		prev, had := p.state[m.Index]
		p.state[m.Index] = m
		if m.Danger && !(had && prev.Danger) {
			p.broadcast([]byte(fmt.Sprintf(`<bet_stop product="%d" event_id="%s" timestamp="%d" groups="all" market_status="-1"/>`,
				uofProduct, UOFEventID(m.Index), m.At.UnixMilli())))
		}
		p.broadcast(p.oddsChange(m, div, 0))
		if m.Ended {
			p.broadcast(uofSettlement(m))
			delete(p.state, m.Index)
		}
	}
}

// UOF market ids and outcome ids, as in Sportradar's market descriptions.
func uofMarket(sport string, mk Market) (id int, spec string, outcomes map[string]int) {
	line := strconv.FormatFloat(float64(mk.Line)/100, 'f', -1, 64)
	switch {
	case mk.Kind == KMatchResult:
		return 1, "", map[string]int{OHome: 1, ODraw: 2, OAway: 3}
	case mk.Kind == KMoneyline:
		return 219, "", map[string]int{OHome: 4, OAway: 5}
	case mk.Kind == KTotals && sport == SportFootball:
		return 18, "total=" + line, map[string]int{OOver: 12, OUnder: 13}
	case mk.Kind == KTotals:
		return 225, "total=" + line, map[string]int{OOver: 12, OUnder: 13}
	case mk.Kind == KHandicap && sport == SportFootball:
		return 16, "hcp=" + line, map[string]int{OHome: 1714, OAway: 1715}
	default:
		return 223, "hcp=" + line, map[string]int{OHome: 1714, OAway: 1715}
	}
}

func (p *UOF) oddsChange(m MatchState, diverge float64, requestID int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<odds_change product="%d" event_id="%s" timestamp="%d"`, uofProduct, UOFEventID(m.Index), m.At.UnixMilli())
	if requestID > 0 {
		fmt.Fprintf(&b, ` request_id="%d"`, requestID)
	}
	status, mstatus := 1, 1 // live, active
	switch {
	case m.Ended:
		status, mstatus = 3, 0 // ended, inactive (settlement follows)
	case m.Danger:
		mstatus = -1
	}
	fmt.Fprintf(&b, `><sport_event_status status="%d" home_score="%d" away_score="%d"/><odds>`, status, m.HomeScore, m.AwayScore)
	for _, mk := range m.Markets {
		id, spec, oc := uofMarket(m.Sport, mk)
		fmt.Fprintf(&b, `<market id="%d"`, id)
		if spec != "" {
			fmt.Fprintf(&b, ` specifiers="%s"`, spec)
		}
		fmt.Fprintf(&b, ` status="%d">`, mstatus)
		for _, o := range mk.Outcomes {
			fmt.Fprintf(&b, `<outcome id="%d" odds="%s" active="1"/>`, oc[o.Key], twoDP(decimal(o.Prob, p.cfg.Margin, diverge)))
		}
		b.WriteString(`</market>`)
	}
	b.WriteString(`</odds></odds_change>`)
	return []byte(b.String())
}

func uofSettlement(m MatchState) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `<bet_settlement product="%d" event_id="%s" timestamp="%d" certainty="2"><outcomes>`, uofProduct, UOFEventID(m.Index), m.At.UnixMilli())
	for _, mk := range m.Markets {
		id, spec, oc := uofMarket(m.Sport, mk)
		fmt.Fprintf(&b, `<market id="%d"`, id)
		if spec != "" {
			fmt.Fprintf(&b, ` specifiers="%s"`, spec)
		}
		b.WriteString(`>`)
		for _, o := range mk.Outcomes {
			switch o.Result {
			case "won":
				fmt.Fprintf(&b, `<outcome id="%d" result="1"/>`, oc[o.Key])
			case "void":
				fmt.Fprintf(&b, `<outcome id="%d" result="0" void_factor="1"/>`, oc[o.Key])
			default:
				fmt.Fprintf(&b, `<outcome id="%d" result="0"/>`, oc[o.Key])
			}
		}
		b.WriteString(`</market>`)
	}
	b.WriteString(`</outcomes></bet_settlement>`)
	return []byte(b.String())
}

func (p *UOF) serveStream(w http.ResponseWriter, r *http.Request) {
	c := &uofClient{node: r.URL.Query().Get("node_id"), ch: make(chan []byte, 8192), gone: make(chan struct{})}
	p.mu.Lock()
	p.clients[c] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if _, ok := p.clients[c]; ok {
			delete(p.clients, c)
		}
		p.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	var hdr [4]byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.gone:
			return
		case msg := <-c.ch:
			binary.BigEndian.PutUint32(hdr[:], uint32(len(msg)))
			if _, err := w.Write(hdr[:]); err != nil {
				return
			}
			if _, err := w.Write(msg); err != nil {
				return
			}
			if len(c.ch) == 0 && fl != nil {
				fl.Flush()
			}
		}
	}
}

func (p *UOF) serveRecovery(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	reqID, err := strconv.Atoi(q.Get("request_id"))
	if err != nil || reqID <= 0 {
		http.Error(w, `<response response_code="BAD_REQUEST"><message>request_id required</message></response>`, http.StatusBadRequest)
		return
	}
	if a := q.Get("after"); a != "" {
		ms, err := strconv.ParseInt(a, 10, 64)
		if err != nil || time.Since(time.UnixMilli(ms)) > 72*time.Hour {
			http.Error(w, `<response response_code="BAD_REQUEST"><message>after must be within 72 hours</message></response>`, http.StatusBadRequest)
			return
		}
	}
	node := q.Get("node_id")
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `<response response_code="ACCEPTED"><action>Request for LiveOdds recovery (request_id=%d) accepted</action></response>`, reqID)
	p.mu.Lock()
	defer p.mu.Unlock()
	div := p.faults.get().Diverge
	for c := range p.clients {
		if c.node != node {
			continue
		}
		for _, m := range p.sortedState() {
			p.send(c, p.oddsChange(m, div, reqID))
		}
		p.send(c, []byte(fmt.Sprintf(`<snapshot_complete request_id="%d" timestamp="%d" product="%d"/>`, reqID, time.Now().UnixMilli(), uofProduct)))
	}
}

func (p *UOF) sortedState() []MatchState {
	out := make([]MatchState, 0, len(p.state))
	for _, m := range p.state {
		out = append(out, m)
	}
	sortMatches(out)
	return out
}
