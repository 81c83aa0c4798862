// Package uof is the adapter for providers speaking Sportradar's Unified Odds
// Feed XML (odds_change, bet_stop, bet_settlement, alive, snapshot_complete
// from a producer), delivered as length-prefixed frames on a long-lived HTTP
// stream, with recovery through the UOF REST call initiate_request. It parses
// and normalizes messages into odds.Update values, tracks producer health and
// recovers after every disconnect or violation before its data is trusted.
//
// It must never crash or corrupt engine state on malformed input: such
// messages are counted, logged and dropped.
package uof

import (
	"bytes"
	"encoding/xml"
	"io"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Message is one parsed UOF message; exactly one field is set.
type Message struct {
	OddsChange       *OddsChange
	BetStop          *BetStop
	BetSettlement    *BetSettlement
	Alive            *Alive
	SnapshotComplete *SnapshotComplete
}

// Timestamp returns the message's producer timestamp.
func (m Message) Timestamp() time.Time {
	var ms int64
	switch {
	case m.OddsChange != nil:
		ms = m.OddsChange.Timestamp
	case m.BetStop != nil:
		ms = m.BetStop.Timestamp
	case m.BetSettlement != nil:
		ms = m.BetSettlement.Timestamp
	case m.Alive != nil:
		ms = m.Alive.Timestamp
	case m.SnapshotComplete != nil:
		ms = m.SnapshotComplete.Timestamp
	}
	return time.UnixMilli(ms).UTC()
}

// OddsChange is <odds_change>.
type OddsChange struct {
	Product   int    `xml:"product,attr"`
	EventID   string `xml:"event_id,attr"`
	Timestamp int64  `xml:"timestamp,attr"`
	RequestID int    `xml:"request_id,attr"`
	Status    *struct {
		Status    int  `xml:"status,attr"`
		HomeScore *int `xml:"home_score,attr"`
		AwayScore *int `xml:"away_score,attr"`
	} `xml:"sport_event_status"`
	Odds *struct {
		Markets []OddsMarket `xml:"market"`
	} `xml:"odds"`
}

// OddsMarket is <market> inside <odds>.
type OddsMarket struct {
	ID         int    `xml:"id,attr"`
	Specifiers string `xml:"specifiers,attr"`
	Status     *int   `xml:"status,attr"`
	Outcomes   []struct {
		ID     string `xml:"id,attr"`
		Odds   string `xml:"odds,attr"`
		Active *int   `xml:"active,attr"`
	} `xml:"outcome"`
}

// BetStop is <bet_stop>.
type BetStop struct {
	Product      int    `xml:"product,attr"`
	EventID      string `xml:"event_id,attr"`
	Timestamp    int64  `xml:"timestamp,attr"`
	Groups       string `xml:"groups,attr"`
	MarketStatus *int   `xml:"market_status,attr"`
}

// BetSettlement is <bet_settlement>.
type BetSettlement struct {
	Product   int    `xml:"product,attr"`
	EventID   string `xml:"event_id,attr"`
	Timestamp int64  `xml:"timestamp,attr"`
	Certainty int    `xml:"certainty,attr"`
	Markets   []struct {
		ID         int    `xml:"id,attr"`
		Specifiers string `xml:"specifiers,attr"`
		Outcomes   []struct {
			ID             string `xml:"id,attr"`
			Result         *int   `xml:"result,attr"`
			VoidFactor     string `xml:"void_factor,attr"`
			DeadHeatFactor string `xml:"dead_heat_factor,attr"`
		} `xml:"outcome"`
	} `xml:"outcomes>market"`
}

// Alive is <alive>.
type Alive struct {
	Product    int   `xml:"product,attr"`
	Timestamp  int64 `xml:"timestamp,attr"`
	Subscribed int   `xml:"subscribed,attr"`
}

// SnapshotComplete is <snapshot_complete>.
type SnapshotComplete struct {
	Product   int   `xml:"product,attr"`
	RequestID int   `xml:"request_id,attr"`
	Timestamp int64 `xml:"timestamp,attr"`
}

// MaxMessageSize bounds one message; larger frames are refused unread.
const MaxMessageSize = 4 << 20

func bad(format string, args ...any) error {
	return buzzer.Errorf(buzzer.EINVALID, "uof: "+format, args...)
}

// Parse parses one UOF XML message. Unknown root elements, missing required
// attributes, or anything after the root element is an error.
func Parse(data []byte) (Message, error) {
	if len(data) > MaxMessageSize {
		return Message{}, bad("message of %d bytes over the limit", len(data))
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	var start xml.StartElement
	for {
		tok, err := dec.Token()
		if err != nil {
			return Message{}, bad("no root element: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			start = se
			break
		}
		switch tok.(type) {
		case xml.ProcInst, xml.Comment, xml.CharData:
			if cd, ok := tok.(xml.CharData); ok && len(bytes.TrimSpace(cd)) > 0 {
				return Message{}, bad("text before root element")
			}
		default:
			return Message{}, bad("unexpected token before root element")
		}
	}
	var m Message
	var err error
	switch start.Name.Local {
	case "odds_change":
		m.OddsChange = &OddsChange{}
		err = dec.DecodeElement(m.OddsChange, &start)
		if err == nil && (m.OddsChange.EventID == "" || m.OddsChange.Timestamp <= 0) {
			err = bad("odds_change needs event_id and timestamp")
		}
	case "bet_stop":
		m.BetStop = &BetStop{}
		err = dec.DecodeElement(m.BetStop, &start)
		if err == nil && (m.BetStop.EventID == "" || m.BetStop.Timestamp <= 0) {
			err = bad("bet_stop needs event_id and timestamp")
		}
	case "bet_settlement":
		m.BetSettlement = &BetSettlement{}
		err = dec.DecodeElement(m.BetSettlement, &start)
		if err == nil && (m.BetSettlement.EventID == "" || m.BetSettlement.Timestamp <= 0) {
			err = bad("bet_settlement needs event_id and timestamp")
		}
	case "alive":
		m.Alive = &Alive{}
		err = dec.DecodeElement(m.Alive, &start)
		if err == nil && m.Alive.Timestamp <= 0 {
			err = bad("alive needs timestamp")
		}
	case "snapshot_complete":
		m.SnapshotComplete = &SnapshotComplete{}
		err = dec.DecodeElement(m.SnapshotComplete, &start)
		if err == nil && (m.SnapshotComplete.RequestID <= 0 || m.SnapshotComplete.Timestamp <= 0) {
			err = bad("snapshot_complete needs request_id and timestamp")
		}
	default:
		return Message{}, bad("unknown message <%s>", start.Name.Local)
	}
	if err != nil {
		if _, ok := err.(*buzzer.Error); ok {
			return Message{}, err
		}
		return Message{}, bad("malformed <%s>: %v", start.Name.Local, err)
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Message{}, bad("after root element: %v", err)
		}
		if cd, ok := tok.(xml.CharData); !ok || len(bytes.TrimSpace(cd)) > 0 {
			return Message{}, bad("content after root element")
		}
	}
	return m, nil
}
