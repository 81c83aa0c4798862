// Package feedsim simulates the external odds providers Buzzer ingests, so the
// whole pipeline runs offline: a seeded stochastic model of many concurrent
// in-play matches (football and American football) and three providers that
// publish it, each in its own wire format and over its own transport, with
// their own ids, margins and latency — a Sportradar UOF-shaped XML stream, a
// Betfair Exchange Stream-shaped CRLF JSON socket and an HTTP-polled JSON feed
// with American odds — plus fault controls (silence, lag, malformed messages,
// diverging prices).
//
// It stands outside the system: providers speak only their wire formats, and
// nothing in Buzzer's runtime path may depend on this package except the dev
// wiring in cmd/. The model uses floating point for probabilities, as a
// bookmaker's trading model would; prices leave it only as the decimal or
// American odds strings each format carries.
package feedsim

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Sport keys used by the simulator.
const (
	SportFootball         = "football"
	SportAmericanFootball = "american_football"
)

// Outcome keys.
const (
	OHome, ODraw, OAway, OOver, OUnder = "home", "draw", "away", "over", "under"
)

// Market kinds.
const (
	KMatchResult = "match_result"
	KMoneyline   = "moneyline"
	KTotals      = "totals"
	KHandicap    = "handicap"
)

// Outcome is one outcome of a simulated market.
type Outcome struct {
	Key string
	// Prob is the model's fair probability.
	Prob float64
	// Result is "won", "lost" or "void" once settled.
	Result string
}

// Market is a simulated market. Line is in hundredths (250 = 2.5); for a
// handicap it is the home side's line.
type Market struct {
	Kind string
	Line int
	// Alt marks an alternate line (books that list only main lines skip it).
	Alt      bool
	Outcomes []Outcome
}

// MatchState is a snapshot of one match, as providers publish it.
type MatchState struct {
	Index     int
	Sport     string
	Home      string
	Away      string
	Start     time.Time
	Elapsed   time.Duration // match clock
	Duration  time.Duration
	HomeScore int
	AwayScore int
	// Danger is a dangerous moment (attack, penalty, red zone): providers stop betting.
	Danger bool
	// Ended: the match is over and every market is settled.
	Ended   bool
	Markets []Market
	// Rev counts changes to this match; At is the simulator's wall time of the last one.
	Rev uint64
	At  time.Time
}

func (m *MatchState) clone() MatchState {
	c := *m
	c.Markets = make([]Market, len(m.Markets))
	for i, mk := range m.Markets {
		mk.Outcomes = append([]Outcome(nil), mk.Outcomes...)
		c.Markets[i] = mk
	}
	return c
}

// Config configures the match simulation.
type Config struct {
	Seed             uint64
	Football         int           // concurrent football matches (default 30)
	AmericanFootball int           // concurrent American football matches (default 20)
	Speed            float64       // match seconds per wall second (default 30)
	Tick             time.Duration // wall time between steps in Run (default 100ms)
	// Rolling replaces an ended match with a new one, so the feed never runs dry.
	Rolling bool
	Clock   buzzer.Clock
	// OnMatch is called (from Step, before any provider publishes it) for every
	// new match, so the catalog and id mappings know it first.
	OnMatch func(MatchState)
}

func (c Config) withDefaults() Config {
	if c.Football == 0 && c.AmericanFootball == 0 {
		c.Football, c.AmericanFootball = 30, 20
	}
	if c.Speed <= 0 {
		c.Speed = 30
	}
	if c.Tick <= 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.Clock == nil {
		c.Clock = buzzer.SystemClock{}
	}
	return c
}

type match struct {
	MatchState
	rateHome, rateAway float64 // scoring intensity per match second
	dangerLeft         float64
	dangerFor          int // 0 home, 1 away
}

// Sim is the seeded match simulator. Step is deterministic for a seed and a
// sequence of step sizes.
type Sim struct {
	cfg Config

	mu      sync.Mutex
	rng     *rand.Rand
	matches []*match
	next    int
	subs    []func([]MatchState)
}

// New returns a simulator with its initial matches already in play, their
// clocks staggered so they end at different times.
func New(cfg Config) *Sim {
	s := &Sim{cfg: cfg.withDefaults()}
	s.rng = rand.New(rand.NewPCG(s.cfg.Seed, s.cfg.Seed^0x9e3779b97f4a7c15))
	for i := 0; i < s.cfg.Football+s.cfg.AmericanFootball; i++ {
		sport := SportFootball
		if i >= s.cfg.Football {
			sport = SportAmericanFootball
		}
		m := s.newMatch(sport)
		m.Elapsed = time.Duration(s.rng.Float64() * 0.6 * float64(m.Duration))
		m.Elapsed = m.Elapsed.Truncate(time.Second)
		m.Rev, m.At = 1, s.cfg.Clock.Now()
		s.price(m)
		s.matches = append(s.matches, m)
	}
	for _, m := range s.matches {
		s.announce(m)
	}
	return s
}

func (s *Sim) announce(m *match) {
	if s.cfg.OnMatch != nil {
		s.cfg.OnMatch(m.clone())
	}
}

var (
	footballTeams = []string{"Arsenal", "Chelsea", "Liverpool", "Everton", "Leeds", "Fulham", "Brentford", "Burnley", "Wolves", "Spurs", "Villa", "Newcastle", "Brighton", "Palace", "Forest", "Bournemouth"}
	nflTeams      = []string{"Chiefs", "Eagles", "Bills", "49ers", "Ravens", "Lions", "Cowboys", "Packers", "Bengals", "Jets", "Dolphins", "Rams", "Steelers", "Vikings", "Bears", "Saints"}
)

func (s *Sim) newMatch(sport string) *match {
	idx := s.next
	s.next++
	teams := footballTeams
	if sport == SportAmericanFootball {
		teams = nflTeams
	}
	h := s.rng.IntN(len(teams))
	a := (h + 1 + s.rng.IntN(len(teams)-1)) % len(teams)
	m := &match{MatchState: MatchState{
		Index: idx, Sport: sport,
		Home: fmt.Sprintf("%s %d", teams[h], idx), Away: fmt.Sprintf("%s %d", teams[a], idx),
		Start: s.cfg.Clock.Now().Truncate(time.Second),
	}}
	strength := 0.7 + 0.6*s.rng.Float64() // home/away strength ratio
	switch sport {
	case SportFootball:
		m.Duration = 90 * time.Minute
		total := 2.4 + 0.6*s.rng.Float64() // expected goals per match
		m.rateHome = total * strength / (1 + strength) / 5400
		m.rateAway = total / (1 + strength) / 5400
		m.Markets = []Market{
			{Kind: KMatchResult, Outcomes: []Outcome{{Key: OHome}, {Key: ODraw}, {Key: OAway}}},
			{Kind: KTotals, Line: 250, Outcomes: []Outcome{{Key: OOver}, {Key: OUnder}}},
			{Kind: KHandicap, Line: -150, Outcomes: []Outcome{{Key: OHome}, {Key: OAway}}},
			{Kind: KTotals, Line: 150, Alt: true, Outcomes: []Outcome{{Key: OOver}, {Key: OUnder}}},
			{Kind: KTotals, Line: 350, Alt: true, Outcomes: []Outcome{{Key: OOver}, {Key: OUnder}}},
		}
	default:
		m.Duration = 60 * time.Minute
		total := 40 + 10*s.rng.Float64() // expected points
		m.rateHome = total * strength / (1 + strength) / 3600
		m.rateAway = total / (1 + strength) / 3600
		spread := -int(math.Round((m.rateHome-m.rateAway)*3600)) * 100
		m.Markets = []Market{
			{Kind: KMoneyline, Outcomes: []Outcome{{Key: OHome}, {Key: OAway}}},
			{Kind: KHandicap, Line: spread - 50, Outcomes: []Outcome{{Key: OHome}, {Key: OAway}}},
			{Kind: KTotals, Line: int(math.Round(total))*100 + 50, Outcomes: []Outcome{{Key: OOver}, {Key: OUnder}}},
		}
	}
	s.price(m)
	return m
}

// Matches returns a snapshot of every current match, ordered by index.
func (s *Sim) Matches() []MatchState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MatchState, len(s.matches))
	for i, m := range s.matches {
		out[i] = m.clone()
	}
	return out
}

// Match returns the match with the given index if it is current.
func (s *Sim) Match(index int) (MatchState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.matches {
		if m.Index == index {
			return m.clone(), true
		}
	}
	return MatchState{}, false
}

// Subscribe registers fn to receive every step's changed matches, in order.
// fn runs on the stepping goroutine and must not block.
func (s *Sim) Subscribe(fn func([]MatchState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs = append(s.subs, fn)
}

// Run steps the simulation every Tick by Tick×Speed of match time until ctx is done.
func (s *Sim) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Tick)
	defer t.Stop()
	dt := time.Duration(float64(s.cfg.Tick) * s.cfg.Speed)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Step(dt)
		}
	}
}

// Step advances every match by dt of match time and publishes what changed.
func (s *Sim) Step(dt time.Duration) []MatchState {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Clock.Now()
	var changed []MatchState
	for i, m := range s.matches {
		if m.Ended {
			if !s.cfg.Rolling {
				continue
			}
			nm := s.newMatch(m.Sport)
			nm.Rev, nm.At = 1, now
			s.matches[i] = nm
			s.announce(nm)
			changed = append(changed, nm.clone())
			continue
		}
		if s.advance(m, dt.Seconds()) {
			m.Rev++
			m.At = now
			changed = append(changed, m.clone())
		}
	}
	for _, fn := range s.subs {
		fn(changed)
	}
	return changed
}

// advance moves m forward by dt seconds; it reports whether anything a
// provider publishes changed (prices drift with time, so nearly always).
func (s *Sim) advance(m *match, dt float64) bool {
	m.Elapsed += time.Duration(dt * float64(time.Second))
	if m.Elapsed >= m.Duration {
		m.Elapsed = m.Duration
		m.Danger = false
		m.Ended = true
		s.settle(m)
		return true
	}
	football := m.Sport == SportFootball
	// Scores come out of dangerous moments: a fraction of them convert.
	conv := 0.3
	if !football {
		conv = 0.6
	}
	if m.Danger {
		m.dangerLeft -= dt
		if m.dangerLeft <= 0 {
			m.Danger = false
			if s.rng.Float64() < conv {
				pts := 1
				if !football {
					switch r := s.rng.Float64(); {
					case r < 0.55:
						pts = 7
					case r < 0.93:
						pts = 3
					case r < 0.97:
						pts = 6
					default:
						pts = 2
					}
				}
				if m.dangerFor == 0 {
					m.HomeScore += pts
				} else {
					m.AwayScore += pts
				}
			}
		}
	} else {
		scale := 1.0
		if !football {
			scale = 1.0 / 5 // about five points per scoring chance
		}
		rh := m.rateHome * scale / conv
		ra := m.rateAway * scale / conv
		if s.rng.Float64() < (rh+ra)*dt {
			m.Danger = true
			m.dangerLeft = 4 + 8*s.rng.Float64()
			m.dangerFor = 1
			if s.rng.Float64() < rh/(rh+ra) {
				m.dangerFor = 0
			}
		}
	}
	s.price(m)
	return true
}

// price sets each outcome's fair probability from the state and the remaining time.
func (s *Sim) price(m *match) {
	rem := (m.Duration - m.Elapsed).Seconds()
	muH, muA := m.rateHome*rem, m.rateAway*rem
	var pmfH, pmfA [13]float64
	for k := range pmfH {
		pmfH[k], pmfA[k] = poisson(muH, k), poisson(muA, k)
	}
	for i := range m.Markets {
		mk := &m.Markets[i]
		var pHome, pDraw, pOver float64
		line := float64(mk.Line) / 100
		if m.Sport == SportFootball {
			lead := m.HomeScore - m.AwayScore
			total := m.HomeScore + m.AwayScore
			for x := 0; x <= 12; x++ {
				for y := 0; y <= 12; y++ {
					p := pmfH[x] * pmfA[y]
					d := lead + x - y
					switch mk.Kind {
					case KMatchResult:
						if d > 0 {
							pHome += p
						} else if d == 0 {
							pDraw += p
						}
					case KHandicap:
						if float64(d)+line > 0 {
							pHome += p
						}
					case KTotals:
						if float64(total+x+y) > line {
							pOver += p
						}
					}
				}
			}
		} else {
			// Normal approximation of the remaining points (about 5 points per score).
			sd := math.Sqrt(5*(muH+muA)) + 0.5
			lead := float64(m.HomeScore-m.AwayScore) + muH - muA
			total := float64(m.HomeScore+m.AwayScore) + muH + muA
			switch mk.Kind {
			case KMoneyline:
				pHome = normCDF(lead / sd)
			case KHandicap:
				pHome = normCDF((lead + line) / sd)
			case KTotals:
				pOver = normCDF((total - line) / sd)
			}
		}
		for j := range mk.Outcomes {
			o := &mk.Outcomes[j]
			switch o.Key {
			case OHome:
				o.Prob = pHome
			case ODraw:
				o.Prob = pDraw
			case OAway:
				o.Prob = 1 - pHome - pDraw
			case OOver:
				o.Prob = pOver
			case OUnder:
				o.Prob = 1 - pOver
			}
			o.Prob = math.Min(0.985, math.Max(0.01, o.Prob))
		}
	}
}

func (s *Sim) settle(m *match) {
	lead := m.HomeScore - m.AwayScore
	total := m.HomeScore + m.AwayScore
	for i := range m.Markets {
		mk := &m.Markets[i]
		win := ""
		switch mk.Kind {
		case KMatchResult:
			win = map[bool]string{true: OHome, false: OAway}[lead > 0]
			if lead == 0 {
				win = ODraw
			}
		case KMoneyline:
			win = map[bool]string{true: OHome, false: OAway}[lead > 0]
			if lead == 0 {
				win = "" // a tie voids the moneyline
			}
		case KHandicap:
			d := lead*100 + mk.Line
			win = map[bool]string{true: OHome, false: OAway}[d > 0]
			if d == 0 {
				win = ""
			}
		case KTotals:
			d := total*100 - mk.Line
			win = map[bool]string{true: OOver, false: OUnder}[d > 0]
			if d == 0 {
				win = ""
			}
		}
		for j := range mk.Outcomes {
			o := &mk.Outcomes[j]
			switch {
			case win == "":
				o.Result = "void"
			case o.Key == win:
				o.Result = "won"
			default:
				o.Result = "lost"
			}
		}
	}
}

func poisson(mu float64, k int) float64 {
	return math.Exp(float64(k)*math.Log(math.Max(mu, 1e-12)) - mu - lgamma(k+1))
}

func lgamma(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}

func normCDF(x float64) float64 { return 0.5 * (1 + math.Erf(x/math.Sqrt2)) }
