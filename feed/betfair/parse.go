// Package betfair is the adapter for providers speaking the Betfair Exchange
// Stream API: CRLF-delimited JSON over a TCP socket (connection,
// authentication, marketSubscription, status, mcm with SUB_IMAGE /
// RESUB_DELTA images, deltas, clk/initialClk clock tokens and HEARTBEAT
// messages). It keeps the market definitions the stream sends once, maps
// runners to canonical selections, converts best-available-to-back prices to
// exact decimals and resubscribes with its clock tokens after a disconnect.
//
// It must never crash or corrupt engine state on malformed input: such lines
// are counted, logged and dropped.
package betfair

import (
	"bytes"
	"encoding/json"

	"github.com/buzzer-bet/buzzer"
)

// Message is one stream message (the fields this adapter reads).
type Message struct {
	Op               string         `json:"op"`
	ID               *int           `json:"id"`
	ConnectionID     string         `json:"connectionId"`
	StatusCode       string         `json:"statusCode"`
	ErrorCode        string         `json:"errorCode"`
	ErrorMessage     string         `json:"errorMessage"`
	ConnectionClosed bool           `json:"connectionClosed"`
	Ct               string         `json:"ct"`
	Clk              string         `json:"clk"`
	InitialClk       string         `json:"initialClk"`
	Pt               int64          `json:"pt"`
	HeartbeatMs      int            `json:"heartbeatMs"`
	ConflateMs       int            `json:"conflateMs"`
	SegmentType      string         `json:"segmentType"`
	Con              bool           `json:"con"`
	Mc               []MarketChange `json:"mc"`
}

// MarketChange is one entry of mc.
type MarketChange struct {
	ID               string            `json:"id"`
	Img              bool              `json:"img"`
	Con              bool              `json:"con"`
	MarketDefinition *MarketDefinition `json:"marketDefinition"`
	Rc               []RunnerChange    `json:"rc"`
}

// MarketDefinition is the market's static and status data.
type MarketDefinition struct {
	EventID     string      `json:"eventId"`
	EventTypeID string      `json:"eventTypeId"`
	MarketType  string      `json:"marketType"`
	Status      string      `json:"status"`
	InPlay      bool        `json:"inPlay"`
	BetDelay    int         `json:"betDelay"`
	Version     int64       `json:"version"`
	Runners     []RunnerDef `json:"runners"`
}

// RunnerDef is a runner in a market definition.
type RunnerDef struct {
	ID           int64        `json:"id"`
	SortPriority int          `json:"sortPriority"`
	Status       string       `json:"status"`
	Hc           *json.Number `json:"hc"`
}

// RunnerChange is one entry of rc: best available to back as [level, price, size].
type RunnerChange struct {
	ID   int64           `json:"id"`
	Hc   *json.Number    `json:"hc"`
	Batb [][]json.Number `json:"batb"`
}

// MaxLineSize bounds one line; longer lines are refused.
const MaxLineSize = 8 << 20

func bad(format string, args ...any) error {
	return buzzer.Errorf(buzzer.EINVALID, "betfair: "+format, args...)
}

// Parse parses one line (without its CRLF). It checks the structure the
// adapter relies on: a known op, market ids, runner ids, three-element
// ladder entries with an exact price.
func Parse(line []byte) (Message, error) {
	if len(line) > MaxLineSize {
		return Message{}, bad("line of %d bytes over the limit", len(line))
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return Message{}, bad("malformed JSON: %v", err)
	}
	if dec.More() {
		return Message{}, bad("trailing data after the message")
	}
	switch m.Op {
	case "connection", "status":
		return m, nil
	case "mcm":
	default:
		return Message{}, bad("unknown op %q", m.Op)
	}
	for _, mc := range m.Mc {
		if mc.ID == "" {
			return Message{}, bad("market change without id")
		}
		if d := mc.MarketDefinition; d != nil {
			if d.EventID == "" || d.MarketType == "" || d.Status == "" {
				return Message{}, bad("market %s definition needs eventId, marketType and status", mc.ID)
			}
			for _, r := range d.Runners {
				if r.ID <= 0 {
					return Message{}, bad("market %s has a runner without id", mc.ID)
				}
			}
		}
		for _, rc := range mc.Rc {
			if rc.ID <= 0 {
				return Message{}, bad("market %s runner change without id", mc.ID)
			}
			for _, lv := range rc.Batb {
				if len(lv) != 3 {
					return Message{}, bad("market %s runner %d: batb entry needs [level, price, size]", mc.ID, rc.ID)
				}
				if _, err := lv[0].Int64(); err != nil {
					return Message{}, bad("market %s runner %d: bad level", mc.ID, rc.ID)
				}
				if _, err := lv[2].Float64(); err != nil {
					return Message{}, bad("market %s runner %d: bad size", mc.ID, rc.ID)
				}
				if _, err := buzzer.ParsePrice(lv[1].String()); err != nil {
					return Message{}, bad("market %s runner %d: price: %s", mc.ID, rc.ID, buzzer.ErrorMessage(err))
				}
			}
		}
	}
	return m, nil
}
