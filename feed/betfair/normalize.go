package betfair

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// drawSelectionID is Betfair's selection id of "The Draw" in MATCH_ODDS.
const drawSelectionID = 58805

type runnerKey struct {
	id int64
	hc string
}

type marketInfo struct {
	eventID string // canonical
	typ     odds.MarketType
	line    odds.Line
	status  odds.MarketStatus
	inPlay  bool
	runners map[runnerKey]string // -> canonical selection
	results map[string]odds.Result
}

// Normalizer turns stream messages into canonical updates. Betfair sends a
// market's definition only in images and when it changes, so the normalizer
// keeps it per market; it is not safe for concurrent use.
type Normalizer struct {
	Provider string
	Mapper   odds.Mapper

	markets map[string]*marketInfo
	events  map[string]bool // canonical events seen
	seg     []MarketChange  // a segmented message being assembled
	inSeg   bool
}

// Result of normalizing one message.
type Result struct {
	Updates  []odds.Update
	Unmapped int // market changes skipped: event not in the mapping or market type unknown
	Image    bool
}

func hcString(n interface{ String() string }) string {
	if n == nil {
		return ""
	}
	l, err := odds.ParseLine(n.String())
	if err != nil {
		return n.String()
	}
	return l.String()
}

// define (re)builds a market's info from its definition.
func (n *Normalizer) define(id string, d *MarketDefinition) (*marketInfo, error) {
	link, ok := n.Mapper.Link(n.Provider, d.EventID)
	if !ok {
		return nil, nil
	}
	mi := &marketInfo{eventID: link.EventID, inPlay: d.InPlay, runners: map[runnerKey]string{}, results: map[string]odds.Result{}}
	side := func(r RunnerDef) string {
		switch strconv.FormatInt(r.ID, 10) {
		case link.Home:
			return odds.Home
		case link.Away:
			return odds.Away
		}
		if r.ID == drawSelectionID {
			return odds.Draw
		}
		return ""
	}
	ou := func(r RunnerDef) string { // Betfair lists Under first, then Over
		return map[int]string{1: odds.Under, 2: odds.Over}[r.SortPriority]
	}
	pick := side
	switch mt := d.MarketType; {
	case mt == "MATCH_ODDS":
		mi.typ = odds.MatchResult
	case mt == "MONEY_LINE":
		mi.typ = odds.Moneyline
	case mt == "ASIAN_HANDICAP" || mt == "HANDICAP":
		mi.typ = odds.Handicap
	case mt == "TOTAL_POINTS":
		mi.typ, pick = odds.Totals, ou
	case strings.HasPrefix(mt, "OVER_UNDER_"):
		v, err := strconv.Atoi(strings.TrimPrefix(mt, "OVER_UNDER_"))
		if err != nil || v < 0 || v > 999 {
			return nil, bad("market type %q", mt)
		}
		mi.typ, mi.line, pick = odds.Totals, odds.Line(v*10), ou
	default:
		return nil, nil // a market type Buzzer does not offer
	}
	for _, r := range d.Runners {
		sel := pick(r)
		if sel == "" {
			return nil, bad("market %s runner %d cannot be mapped", id, r.ID)
		}
		hc := ""
		if r.Hc != nil {
			hc = hcString(r.Hc)
		}
		mi.runners[runnerKey{r.ID, hc}] = sel
		if r.Hc != nil && (mi.typ == odds.Handicap && sel == odds.Home || mi.typ == odds.Totals && mi.line == 0) {
			l, err := odds.ParseLine(r.Hc.String())
			if err != nil {
				return nil, bad("market %s runner %d hc: %v", id, r.ID, err)
			}
			mi.line = l
		}
		switch r.Status {
		case "WINNER":
			mi.results[sel] = odds.Won
		case "LOSER":
			mi.results[sel] = odds.Lost
		case "REMOVED":
			mi.results[sel] = odds.Void
		}
	}
	switch d.Status {
	case "OPEN":
		mi.status = odds.Open
	case "SUSPENDED":
		mi.status = odds.Suspended
	case "INACTIVE":
		mi.status = odds.Closed
	case "CLOSED":
		mi.status = odds.Closed
		if len(mi.results) == len(d.Runners) && len(d.Runners) > 0 {
			mi.status = odds.Settled
		}
	default:
		return nil, bad("market %s status %q", id, d.Status)
	}
	return mi, nil
}

// Normalize converts one mcm. For images (ct SUB_IMAGE, RESUB_DELTA with img
// markets) every event in the image gets a Full update, and every event seen
// before but absent from a SUB_IMAGE gets an empty Full update, so markets
// the provider no longer offers are removed.
func (n *Normalizer) Normalize(m Message) (Result, error) {
	if n.markets == nil {
		n.markets, n.events = map[string]*marketInfo{}, map[string]bool{}
	}
	var res Result
	if m.Op != "mcm" {
		return res, nil
	}
	// Large messages arrive in segments (SEG_START, SEG..., SEG_END) that
	// together form one message.
	switch m.SegmentType {
	case "SEG_START":
		n.seg, n.inSeg = append([]MarketChange(nil), m.Mc...), true
		return res, nil
	case "SEG":
		if !n.inSeg {
			return res, bad("segment without SEG_START")
		}
		n.seg = append(n.seg, m.Mc...)
		return res, nil
	case "SEG_END":
		if !n.inSeg {
			return res, bad("SEG_END without SEG_START")
		}
		m.Mc = append(n.seg, m.Mc...)
		n.seg, n.inSeg = nil, false
	case "":
	default:
		return res, bad("unknown segmentType %q", m.SegmentType)
	}
	ts := time.UnixMilli(m.Pt).UTC()
	if m.Ct == "HEARTBEAT" {
		res.Updates = []odds.Update{{Provider: n.Provider, Kind: odds.KindAlive, SourceTime: ts, Position: m.Clk}}
		return res, nil
	}
	res.Image = m.Ct == "SUB_IMAGE" || m.Ct == "RESUB_DELTA"
	// Validate and build everything first, so a bad message changes nothing.
	staged := map[string]*marketInfo{}
	for _, mc := range m.Mc {
		if mc.MarketDefinition != nil {
			mi, err := n.define(mc.ID, mc.MarketDefinition)
			if err != nil {
				return Result{}, err
			}
			staged[mc.ID] = mi
		}
	}
	byEvent := map[string]*odds.Update{}
	var order []string
	full := map[string]bool{}
	for _, mc := range m.Mc {
		mi, ok := staged[mc.ID]
		if !ok {
			mi = n.markets[mc.ID]
		}
		if mi == nil {
			res.Unmapped++
			continue
		}
		u := byEvent[mi.eventID]
		if u == nil {
			inPlay := mi.inPlay
			u = &odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: mi.eventID, InPlay: &inPlay, SourceTime: ts, Position: m.Clk}
			byEvent[mi.eventID] = u
			order = append(order, mi.eventID)
		}
		if mc.Img && m.Ct == "SUB_IMAGE" {
			full[mi.eventID] = true // a subscription image lists every market
		}
		mu := odds.MarketUpdate{Type: mi.typ, Line: mi.line, Status: mi.status}
		for _, rc := range mc.Rc {
			hc := ""
			if rc.Hc != nil {
				hc = hcString(rc.Hc)
			}
			sel, ok := mi.runners[runnerKey{rc.ID, hc}]
			if !ok {
				return Result{}, bad("market %s: runner %d hc %q not in its definition", mc.ID, rc.ID, hc)
			}
			s := odds.Selection{ID: sel}
			for _, lv := range rc.Batb {
				if lvl, _ := lv[0].Int64(); lvl != 0 {
					continue
				}
				if size, _ := lv[2].Float64(); size > 0 {
					s.Price, _ = buzzer.ParsePrice(lv[1].String())
				}
			}
			mu.Selections = append(mu.Selections, s)
		}
		if mi.status == odds.Settled {
			for sel, r := range mi.results {
				mu.Selections = append(mu.Selections, odds.Selection{ID: sel, Result: r})
			}
			sort.Slice(mu.Selections, func(i, j int) bool { return mu.Selections[i].ID < mu.Selections[j].ID })
			u.Reason = "settlement"
		}
		u.Markets = append(u.Markets, mu)
	}
	for id, mi := range staged {
		if mi != nil {
			n.markets[id] = mi
		}
	}
	if m.Ct == "SUB_IMAGE" {
		for ev := range n.events {
			if byEvent[ev] == nil {
				order = append(order, ev)
				byEvent[ev] = &odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: ev, SourceTime: ts, Position: m.Clk}
				full[ev] = true
			}
		}
	}
	sort.Strings(order)
	for _, ev := range order {
		u := byEvent[ev]
		u.Full = full[ev]
		n.events[ev] = true
		res.Updates = append(res.Updates, *u)
	}
	return res, nil
}
