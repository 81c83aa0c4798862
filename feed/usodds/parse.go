// Package usodds is the adapter for a US odds feed polled over HTTP (The Odds
// API v4 shape: /v4/sports/{sport}/odds with American odds, and
// /v4/sports/{sport}/scores). Every poll is a full image: markets a book no
// longer lists are removed. American odds are converted to exact decimal
// odds rounded down to four decimals; completed games are settled from their
// final scores.
//
// It must never crash or corrupt engine state on malformed input: such
// responses are counted, logged and dropped.
package usodds

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/buzzer-bet/buzzer"
)

// Event is one event of an odds response.
type Event struct {
	ID           string      `json:"id"`
	SportKey     string      `json:"sport_key"`
	CommenceTime string      `json:"commence_time"`
	HomeTeam     string      `json:"home_team"`
	AwayTeam     string      `json:"away_team"`
	Bookmakers   []Bookmaker `json:"bookmakers"`
}

// Bookmaker is one book's markets for an event.
type Bookmaker struct {
	Key        string   `json:"key"`
	LastUpdate string   `json:"last_update"`
	Markets    []Market `json:"markets"`
}

// Market is h2h, spreads or totals.
type Market struct {
	Key      string    `json:"key"`
	Outcomes []Outcome `json:"outcomes"`
}

// Outcome is a named outcome with American odds and, for spreads and totals, a point.
type Outcome struct {
	Name  string       `json:"name"`
	Price json.Number  `json:"price"`
	Point *json.Number `json:"point"`
}

// ScoreEvent is one event of a scores response.
type ScoreEvent struct {
	ID        string `json:"id"`
	Completed bool   `json:"completed"`
	HomeTeam  string `json:"home_team"`
	AwayTeam  string `json:"away_team"`
	Scores    []struct {
		Name  string `json:"name"`
		Score string `json:"score"`
	} `json:"scores"`
	LastUpdate string `json:"last_update"`
}

// MaxResponseSize bounds one response body.
const MaxResponseSize = 16 << 20

func bad(format string, args ...any) error {
	return buzzer.Errorf(buzzer.EINVALID, "usodds: "+format, args...)
}

func decodeStrict(data []byte, v any) error {
	if len(data) > MaxResponseSize {
		return bad("response of %d bytes over the limit", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return bad("malformed JSON: %v", err)
	}
	if dec.More() {
		return bad("trailing data after the response")
	}
	return nil
}

// ParseOdds parses an odds response and checks every price and point.
func ParseOdds(data []byte) ([]Event, error) {
	var evs []Event
	if err := decodeStrict(data, &evs); err != nil {
		return nil, err
	}
	for _, e := range evs {
		if e.ID == "" || e.HomeTeam == "" || e.AwayTeam == "" {
			return nil, bad("event needs id, home_team and away_team")
		}
		for _, b := range e.Bookmakers {
			for _, m := range b.Markets {
				for _, o := range m.Outcomes {
					if o.Name == "" {
						return nil, bad("event %s market %s: outcome without name", e.ID, m.Key)
					}
					if _, err := AmericanToDecimal(o.Price.String()); err != nil {
						return nil, err
					}
					if o.Point != nil {
						if _, err := strconv.ParseFloat(o.Point.String(), 64); err != nil {
							return nil, bad("event %s: bad point %q", e.ID, o.Point.String())
						}
					}
				}
			}
		}
	}
	return evs, nil
}

// ParseScores parses a scores response.
func ParseScores(data []byte) ([]ScoreEvent, error) {
	var evs []ScoreEvent
	if err := decodeStrict(data, &evs); err != nil {
		return nil, err
	}
	for _, e := range evs {
		if e.ID == "" {
			return nil, bad("score event without id")
		}
		for _, s := range e.Scores {
			if n, err := strconv.Atoi(s.Score); err != nil || n < 0 {
				return nil, bad("event %s: bad score %q", e.ID, s.Score)
			}
		}
	}
	return evs, nil
}

// AmericanToDecimal converts American odds (an integer, +150 or -110; |odds|
// >= 100) to exact decimal odds: +A is 1 + A/100 (exact), -A is 1 + 100/A
// rounded DOWN to four decimals (-110 -> 1.9090), in the house's favour like
// every other rounding of a payout. Odds outside Buzzer's price range fail.
func AmericanToDecimal(s string) (buzzer.Price, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || (v > -100 && v < 100) || v > 1_000_000_000 || v < -1_000_000_000 {
		return 0, bad("American odds %q must be an integer with |odds| >= 100", s)
	}
	var p int64
	if v > 0 {
		p = buzzer.PriceScale + v*buzzer.PriceScale/100
	} else {
		p = buzzer.PriceScale + 100*buzzer.PriceScale/(-v)
	}
	if buzzer.Price(p) < buzzer.MinPrice || buzzer.Price(p) > buzzer.MaxPrice {
		return 0, bad("American odds %q outside the accepted price range", s)
	}
	return buzzer.Price(p), nil
}
