package usodds

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer/odds"
)

// Normalizer turns poll responses into canonical updates. It remembers the
// events and lines it has seen, so a vanished event's markets are removed
// and a completed game can be settled; it is not safe for concurrent use.
type Normalizer struct {
	Provider string
	Mapper   odds.Mapper
	// Bookmaker selects the book to read (default: the first listed).
	Bookmaker string

	known   map[string]map[string]bool // sport key -> canonical events seen
	lines   map[string][]odds.MarketUpdate
	settled map[string]bool
}

func (n *Normalizer) init() {
	if n.known == nil {
		n.known, n.lines, n.settled = map[string]map[string]bool{}, map[string][]odds.MarketUpdate{}, map[string]bool{}
	}
}

func (n *Normalizer) book(e Event) *Bookmaker {
	for i := range e.Bookmakers {
		if n.Bookmaker == "" || e.Bookmakers[i].Key == n.Bookmaker {
			return &e.Bookmakers[i]
		}
	}
	return nil
}

// Odds converts one odds response for sport: a Full update per event, and an
// empty Full update for each event of that sport that has vanished.
func (n *Normalizer) Odds(sport string, evs []Event, ts time.Time) ([]odds.Update, int, error) {
	n.init()
	var out []odds.Update
	unmapped := 0
	seen := map[string]bool{}
	lines := map[string][]odds.MarketUpdate{}
	for _, e := range evs {
		link, ok := n.Mapper.Link(n.Provider, e.ID)
		if !ok {
			unmapped++
			continue
		}
		start, err := time.Parse(time.RFC3339, e.CommenceTime)
		if err != nil {
			return nil, 0, bad("event %s: commence_time %q", e.ID, e.CommenceTime)
		}
		inPlay := !start.After(ts)
		u := odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: link.EventID, InPlay: &inPlay, Full: true, SourceTime: ts}
		if b := n.book(e); b != nil {
			if t, err := time.Parse(time.RFC3339, b.LastUpdate); err == nil {
				u.SourceTime = t
			}
			for _, m := range b.Markets {
				mu, ok, err := n.market(e, m)
				if err != nil {
					return nil, 0, err
				}
				if ok {
					u.Markets = append(u.Markets, mu)
				}
			}
		}
		seen[link.EventID] = true
		lines[link.EventID] = u.Markets
		out = append(out, u)
	}
	known := n.known[sport]
	if known == nil {
		known = map[string]bool{}
		n.known[sport] = known
	}
	var gone []string
	for ev := range known {
		if !seen[ev] {
			gone = append(gone, ev)
		}
	}
	sort.Strings(gone)
	for _, ev := range gone {
		out = append(out, odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: ev, Full: true, SourceTime: ts})
		delete(known, ev)
	}
	for ev, ms := range lines {
		known[ev] = true
		if len(ms) > 0 { // lines taken down for a moment still settle as last offered
			n.lines[ev] = ms
		}
	}
	return out, unmapped, nil
}

func (n *Normalizer) market(e Event, m Market) (odds.MarketUpdate, bool, error) {
	mu := odds.MarketUpdate{Status: odds.Open}
	side := func(name string) string {
		switch name {
		case e.HomeTeam:
			return odds.Home
		case e.AwayTeam:
			return odds.Away
		case "Draw":
			return odds.Draw
		case "Over":
			return odds.Over
		case "Under":
			return odds.Under
		}
		return ""
	}
	switch m.Key {
	case "h2h":
		mu.Type = odds.Moneyline
		if strings.HasPrefix(e.SportKey, "soccer") {
			mu.Type = odds.MatchResult
		}
	case "spreads":
		mu.Type = odds.Handicap
	case "totals":
		mu.Type = odds.Totals
	default:
		return mu, false, nil // a market Buzzer does not offer
	}
	lineSet := false
	for _, o := range m.Outcomes {
		sel := side(o.Name)
		if sel == "" {
			return mu, false, bad("event %s market %s: unknown outcome %q", e.ID, m.Key, o.Name)
		}
		p, err := AmericanToDecimal(o.Price.String())
		if err != nil {
			return mu, false, err
		}
		if mu.Type.HasLine() {
			if o.Point == nil {
				return mu, false, bad("event %s market %s: outcome %q needs a point", e.ID, m.Key, o.Name)
			}
			l, err := odds.ParseLine(o.Point.String())
			if err != nil {
				return mu, false, err
			}
			if mu.Type == odds.Handicap && sel == odds.Away {
				l = -l // the canonical handicap line is the home side's
			}
			if lineSet && l != mu.Line {
				return mu, false, bad("event %s market %s: outcomes disagree on the line", e.ID, m.Key)
			}
			mu.Line, lineSet = l, true
		}
		mu.Selections = append(mu.Selections, odds.Selection{ID: sel, Price: p})
	}
	return mu, true, nil
}

// Scores converts a scores response: each completed game seen in the odds
// before is settled once from its final score.
func (n *Normalizer) Scores(evs []ScoreEvent, ts time.Time) ([]odds.Update, int, error) {
	n.init()
	var out []odds.Update
	unmapped := 0
	for _, e := range evs {
		if !e.Completed {
			continue
		}
		link, ok := n.Mapper.Link(n.Provider, e.ID)
		if !ok {
			unmapped++
			continue
		}
		if n.settled[link.EventID] || n.lines[link.EventID] == nil {
			continue
		}
		home, away, found := 0, 0, 0
		for _, s := range e.Scores {
			v, _ := strconv.Atoi(s.Score)
			switch s.Name {
			case e.HomeTeam:
				home, found = v, found+1
			case e.AwayTeam:
				away, found = v, found+1
			}
		}
		if found != 2 {
			return nil, 0, bad("event %s: completed without both scores", e.ID)
		}
		u := odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: link.EventID, Ended: true,
			Score: &odds.Score{Home: home, Away: away}, Reason: "settlement", SourceTime: ts}
		for _, m := range n.lines[link.EventID] {
			u.Markets = append(u.Markets, settle(m, home, away))
		}
		n.settled[link.EventID] = true
		out = append(out, u)
	}
	return out, unmapped, nil
}

// settle derives results from a final score; a push (exact line) is void.
func settle(m odds.MarketUpdate, home, away int) odds.MarketUpdate {
	win := ""
	d := int64(home - away)
	switch m.Type {
	case odds.MatchResult:
		win = map[bool]string{true: odds.Home, false: odds.Away}[d > 0]
		if d == 0 {
			win = odds.Draw
		}
	case odds.Moneyline:
		win = map[bool]string{true: odds.Home, false: odds.Away}[d > 0]
		if d == 0 {
			win = ""
		}
	case odds.Handicap:
		x := d*100 + int64(m.Line)
		win = map[bool]string{true: odds.Home, false: odds.Away}[x > 0]
		if x == 0 {
			win = ""
		}
	case odds.Totals:
		x := int64(home+away)*100 - int64(m.Line)
		win = map[bool]string{true: odds.Over, false: odds.Under}[x > 0]
		if x == 0 {
			win = ""
		}
	}
	out := odds.MarketUpdate{Type: m.Type, Line: m.Line, Status: odds.Settled}
	for _, s := range m.Selections {
		r := odds.Lost
		switch {
		case win == "":
			r = odds.Void
		case s.ID == win:
			r = odds.Won
		}
		out.Selections = append(out.Selections, odds.Selection{ID: s.ID, Result: r})
	}
	return out
}
