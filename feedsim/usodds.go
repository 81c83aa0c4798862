package feedsim

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// USOddsConfig configures the US odds provider.
type USOddsConfig struct {
	Margin  float64       // default 0.045
	Latency time.Duration // default 50ms
	Seed    uint64
	// Bookmaker is the bookmaker key in the feed (default "buzzsim").
	Bookmaker string
}

// USOdds is a provider shaped like a US odds aggregation API polled over HTTP
// (The Odds API's v4 shape): GET /v4/sports/{sport}/odds?apiKey=K&regions=us&
// markets=h2h,spreads,totals&oddsFormat=american returns every upcoming and
// live event with bookmakers[].markets[].outcomes[] in American odds; markets
// not currently offered are simply absent. GET /v4/sports/{sport}/scores
// returns scores and a completed flag.
type USOdds struct {
	cfg USOddsConfig
	sim *Sim
	outlet

	mu       sync.Mutex
	state    map[int]MatchState
	finished map[int]MatchState
	polls    int
}

// Sport keys of the US feed.
const (
	USSoccer = "soccer_epl"
	USNFL    = "americanfootball_nfl"
)

// NewUSOdds returns the provider; Start begins serving.
func NewUSOdds(sim *Sim, cfg USOddsConfig) *USOdds {
	if cfg.Margin == 0 {
		cfg.Margin = 0.045
	}
	if cfg.Latency == 0 {
		cfg.Latency = 50 * time.Millisecond
	}
	if cfg.Bookmaker == "" {
		cfg.Bookmaker = "buzzsim"
	}
	p := &USOdds{cfg: cfg, sim: sim, outlet: newOutlet(cfg.Seed+3, cfg.Latency), state: map[int]MatchState{}, finished: map[int]MatchState{}}
	for _, m := range sim.Matches() {
		p.state[m.Index] = m
	}
	p.follow(sim, p.deliver)
	return p
}

// URL is the provider's base URL once started.
func (p *USOdds) URL() string { return "http://" + p.ln.Addr().String() }

// Start listens on addr and serves until ctx is done.
func (p *USOdds) Start(ctx context.Context, addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v4/sports/{sport}/odds", p.serveOdds)
	mux.HandleFunc("GET /v4/sports/{sport}/scores", p.serveScores)
	return p.serveHTTP(ctx, addr, mux)
}

func (p *USOdds) deliver(ms []MatchState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range ms {
		if m.Ended {
			delete(p.state, m.Index)
			p.finished[m.Index] = m
			continue
		}
		p.state[m.Index] = m
	}
	// Completed games stay on /scores for a while (here: the last 200).
	if len(p.finished) > 200 {
		lowest := math.MaxInt
		for i := range p.finished {
			lowest = min(lowest, i)
		}
		delete(p.finished, lowest)
	}
}

// American returns the American odds of decimal price d, rounded to the
// nearest integer as US books quote them.
func American(d float64) int {
	if d >= 2 {
		return int(math.Round((d - 1) * 100))
	}
	return -int(math.Round(100 / (d - 1)))
}

func sportKey(sport string) string {
	if sport == SportAmericanFootball {
		return USNFL
	}
	return USSoccer
}

// gate applies the silence and lag faults to a request: a silent provider
// never answers (the client times out).
func (p *USOdds) gate(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get("apiKey") == "" {
		http.Error(w, `{"message":"API key is missing"}`, http.StatusUnauthorized)
		return false
	}
	if p.faults.get().Silent {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
		return false
	}
	return true
}

func (p *USOdds) write(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	p.polls++
	n := p.polls
	p.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-requests-used", strconv.Itoa(n))
	w.Header().Set("x-requests-remaining", strconv.Itoa(max(0, 1000000-n)))
	_, _ = w.Write(p.faults.mangle(b))
}

type usOutcome struct {
	Name  string   `json:"name"`
	Price int      `json:"price"`
	Point *float64 `json:"point,omitempty"`
}

type usMarket struct {
	Key        string      `json:"key"`
	LastUpdate string      `json:"last_update"`
	Outcomes   []usOutcome `json:"outcomes"`
}

type usBookmaker struct {
	Key        string     `json:"key"`
	Title      string     `json:"title"`
	LastUpdate string     `json:"last_update"`
	Markets    []usMarket `json:"markets"`
}

type usEvent struct {
	ID           string        `json:"id"`
	SportKey     string        `json:"sport_key"`
	SportTitle   string        `json:"sport_title"`
	CommenceTime string        `json:"commence_time"`
	HomeTeam     string        `json:"home_team"`
	AwayTeam     string        `json:"away_team"`
	Bookmakers   []usBookmaker `json:"bookmakers"`
}

func (p *USOdds) serveOdds(w http.ResponseWriter, r *http.Request) {
	if !p.gate(w, r) {
		return
	}
	sport := r.PathValue("sport")
	div := p.faults.get().Diverge
	p.mu.Lock()
	ms := make([]MatchState, 0, len(p.state))
	for _, m := range p.state {
		if sportKey(m.Sport) == sport {
			ms = append(ms, m)
		}
	}
	p.mu.Unlock()
	sortMatches(ms)
	out := make([]usEvent, 0, len(ms))
	for _, m := range ms {
		ts := m.At.UTC().Format(time.RFC3339)
		ev := usEvent{ID: USOddsEventID(m.Index), SportKey: sport, SportTitle: map[string]string{USSoccer: "EPL", USNFL: "NFL"}[sport],
			CommenceTime: m.Start.UTC().Format(time.RFC3339), HomeTeam: m.Home, AwayTeam: m.Away}
		bm := usBookmaker{Key: p.cfg.Bookmaker, Title: "Buzz Sim", LastUpdate: ts}
		if !m.Danger { // the book takes its lines down during dangerous moments
			for _, mk := range m.Markets {
				if mk.Alt {
					continue // this book lists main lines only
				}
				um := usMarket{LastUpdate: ts}
				for _, o := range mk.Outcomes {
					uo := usOutcome{Price: American(decimal(o.Prob, p.cfg.Margin, div))}
					switch o.Key {
					case OHome:
						uo.Name = m.Home
					case OAway:
						uo.Name = m.Away
					case ODraw:
						uo.Name = "Draw"
					case OOver:
						uo.Name = "Over"
					case OUnder:
						uo.Name = "Under"
					}
					switch mk.Kind {
					case KHandicap:
						pt := float64(mk.Line) / 100
						if o.Key == OAway {
							pt = -pt
						}
						uo.Point = &pt
					case KTotals:
						pt := float64(mk.Line) / 100
						uo.Point = &pt
					}
					um.Outcomes = append(um.Outcomes, uo)
				}
				um.Key = map[string]string{KMatchResult: "h2h", KMoneyline: "h2h", KHandicap: "spreads", KTotals: "totals"}[mk.Kind]
				bm.Markets = append(bm.Markets, um)
			}
		}
		ev.Bookmakers = []usBookmaker{bm}
		out = append(out, ev)
	}
	p.write(w, out)
}

type usScore struct {
	Name  string `json:"name"`
	Score string `json:"score"`
}

type usScoreEvent struct {
	ID           string    `json:"id"`
	SportKey     string    `json:"sport_key"`
	CommenceTime string    `json:"commence_time"`
	Completed    bool      `json:"completed"`
	HomeTeam     string    `json:"home_team"`
	AwayTeam     string    `json:"away_team"`
	Scores       []usScore `json:"scores"`
	LastUpdate   string    `json:"last_update"`
}

func (p *USOdds) serveScores(w http.ResponseWriter, r *http.Request) {
	if !p.gate(w, r) {
		return
	}
	sport := r.PathValue("sport")
	p.mu.Lock()
	var ms []MatchState
	for _, src := range []map[int]MatchState{p.state, p.finished} {
		for _, m := range src {
			if sportKey(m.Sport) == sport {
				ms = append(ms, m)
			}
		}
	}
	p.mu.Unlock()
	sortMatches(ms)
	out := make([]usScoreEvent, 0, len(ms))
	for _, m := range ms {
		out = append(out, usScoreEvent{ID: USOddsEventID(m.Index), SportKey: sport, CommenceTime: m.Start.UTC().Format(time.RFC3339),
			Completed: m.Ended, HomeTeam: m.Home, AwayTeam: m.Away, LastUpdate: m.At.UTC().Format(time.RFC3339),
			Scores: []usScore{{m.Home, strconv.Itoa(m.HomeScore)}, {m.Away, strconv.Itoa(m.AwayScore)}}})
	}
	p.write(w, out)
}
