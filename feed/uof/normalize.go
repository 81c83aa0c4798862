package uof

import (
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// marketSpec maps a UOF market id to a canonical type, the specifier that
// carries its line, and its outcome ids to canonical selections, following
// Sportradar's market descriptions.
type marketSpec struct {
	typ      odds.MarketType
	lineKey  string
	outcomes map[string]string
}

var markets = map[int]marketSpec{
	1:   {odds.MatchResult, "", map[string]string{"1": odds.Home, "2": odds.Draw, "3": odds.Away}},
	16:  {odds.Handicap, "hcp", map[string]string{"1714": odds.Home, "1715": odds.Away}},
	18:  {odds.Totals, "total", map[string]string{"12": odds.Over, "13": odds.Under}},
	219: {odds.Moneyline, "", map[string]string{"4": odds.Home, "5": odds.Away}},
	223: {odds.Handicap, "hcp", map[string]string{"1714": odds.Home, "1715": odds.Away}},
	225: {odds.Totals, "total", map[string]string{"12": odds.Over, "13": odds.Under}},
}

// marketStatus maps UOF market status codes: 1 active, -1 suspended,
// 0 inactive, -2 handed over (suspend until the new producer's odds arrive),
// -3 settled, -4 cancelled.
func marketStatus(code *int) (odds.MarketStatus, bool) {
	if code == nil {
		return odds.Open, true // absent means active
	}
	switch *code {
	case 1:
		return odds.Open, true
	case -1, -2:
		return odds.Suspended, true
	case 0, -4:
		return odds.Closed, true
	case -3:
		return odds.Settled, true
	}
	return "", false
}

func specLine(spec marketSpec, specifiers string) (odds.Line, error) {
	if spec.lineKey == "" {
		if specifiers != "" {
			return 0, bad("unexpected specifiers %q", specifiers)
		}
		return 0, nil
	}
	for _, kv := range strings.Split(specifiers, "|") {
		k, v, _ := strings.Cut(kv, "=")
		if k == spec.lineKey {
			return odds.ParseLine(v)
		}
	}
	return 0, bad("market needs specifier %s", spec.lineKey)
}

// Normalizer turns parsed messages into canonical updates.
type Normalizer struct {
	Provider string
	Mapper   odds.Mapper
}

// ErrUnmapped is returned (wrapped) for an event the mapping does not know.
var ErrUnmapped = buzzer.Errorf(buzzer.ENOTFOUND, "uof: event not in the mapping")

func (n Normalizer) event(id string) (string, error) {
	l, ok := n.Mapper.Link(n.Provider, id)
	if !ok {
		return "", buzzer.Wrap(ErrUnmapped, buzzer.ENOTFOUND, "uof: event %q not in the mapping", id)
	}
	return l.EventID, nil
}

// Normalize converts one message. Alive becomes KindAlive; snapshot_complete
// produces nothing (the adapter acts on it). Markets the adapter does not
// know are skipped; malformed markets fail the whole message, so a message
// is applied entirely or not at all.
func (n Normalizer) Normalize(m Message) ([]odds.Update, error) {
	ts := m.Timestamp()
	switch {
	case m.Alive != nil:
		return []odds.Update{{Provider: n.Provider, Kind: odds.KindAlive, SourceTime: ts}}, nil
	case m.SnapshotComplete != nil:
		return nil, nil
	case m.BetStop != nil:
		ev, err := n.event(m.BetStop.EventID)
		if err != nil {
			return nil, err
		}
		return []odds.Update{{Provider: n.Provider, Kind: odds.KindOdds, EventID: ev, SuspendAll: true, Reason: "bet_stop", SourceTime: ts}}, nil
	case m.OddsChange != nil:
		return n.oddsChange(m.OddsChange, ts)
	case m.BetSettlement != nil:
		return n.settlement(m.BetSettlement, ts)
	}
	return nil, bad("empty message")
}

func (n Normalizer) oddsChange(oc *OddsChange, ts time.Time) ([]odds.Update, error) {
	ev, err := n.event(oc.EventID)
	if err != nil {
		return nil, err
	}
	u := odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: ev, SourceTime: ts, Full: oc.RequestID > 0}
	if s := oc.Status; s != nil {
		// sport_event_status: 0 not started, 1 live, 2 suspended, 3 ended, 4 closed.
		inPlay := s.Status == 1 || s.Status == 2
		u.InPlay = &inPlay
		u.Ended = s.Status == 3 || s.Status == 4
		if s.HomeScore != nil && s.AwayScore != nil {
			if *s.HomeScore < 0 || *s.AwayScore < 0 {
				return nil, bad("negative score")
			}
			u.Score = &odds.Score{Home: *s.HomeScore, Away: *s.AwayScore}
		}
	}
	if oc.Odds != nil {
		for _, om := range oc.Odds.Markets {
			spec, ok := markets[om.ID]
			if !ok {
				continue
			}
			line, err := specLine(spec, om.Specifiers)
			if err != nil {
				return nil, err
			}
			st, ok := marketStatus(om.Status)
			if !ok {
				return nil, bad("market %d has unknown status", om.ID)
			}
			mu := odds.MarketUpdate{Type: spec.typ, Line: line, Status: st}
			for _, o := range om.Outcomes {
				sel, ok := spec.outcomes[o.ID]
				if !ok {
					return nil, bad("market %d has unknown outcome %q", om.ID, o.ID)
				}
				s := odds.Selection{ID: sel}
				if o.Active == nil || *o.Active == 1 {
					if o.Odds != "" {
						p, err := buzzer.ParsePrice(o.Odds)
						if err != nil {
							return nil, bad("outcome %q odds: %s", o.ID, buzzer.ErrorMessage(err))
						}
						s.Price = p
					}
				}
				mu.Selections = append(mu.Selections, s)
			}
			u.Markets = append(u.Markets, mu)
		}
	}
	return []odds.Update{u}, nil
}

func (n Normalizer) settlement(bs *BetSettlement, ts time.Time) ([]odds.Update, error) {
	ev, err := n.event(bs.EventID)
	if err != nil {
		return nil, err
	}
	u := odds.Update{Provider: n.Provider, Kind: odds.KindOdds, EventID: ev, SourceTime: ts, Reason: "bet_settlement"}
	for _, bm := range bs.Markets {
		spec, ok := markets[bm.ID]
		if !ok {
			continue
		}
		line, err := specLine(spec, bm.Specifiers)
		if err != nil {
			return nil, err
		}
		mu := odds.MarketUpdate{Type: spec.typ, Line: line, Status: odds.Settled}
		for _, o := range bm.Outcomes {
			sel, ok := spec.outcomes[o.ID]
			if !ok || o.Result == nil || (*o.Result != 0 && *o.Result != 1) {
				return nil, bad("market %d outcome %q has no valid result", bm.ID, o.ID)
			}
			s := odds.Selection{ID: sel, Result: odds.Lost}
			if *o.Result == 1 {
				s.Result = odds.Won
			}
			switch o.VoidFactor {
			case "", "0":
			case "1":
				s.Result = odds.Void
			case "0.5":
				s.VoidFactor = "0.5" // half won / half lost with half refunded
			default:
				return nil, bad("outcome %q void_factor %q", o.ID, o.VoidFactor)
			}
			mu.Selections = append(mu.Selections, s)
		}
		u.Markets = append(u.Markets, mu)
	}
	return []odds.Update{u}, nil
}
