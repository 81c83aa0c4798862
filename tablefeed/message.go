// Package tablefeed delivers live blackjack tables to players over
// centrifuge (WebSocket): one channel per table, "table:<id>". A subscriber
// gets the table's snapshot, then every event in sequence order; a
// subscriber that reconnects resumes after its last sequence and gets the
// events it missed (from memory, or from the table store's log), never a
// gap and never a repeat. Every connection carries a player token checked
// by the same verifier as the HTTP API.
//
// It is a transport: it is fed by table.Service (as its table.Publisher)
// and reads snapshots and logs through a Source (table.Reader). It must
// never change table state, never block the publishing table on a
// subscriber, and never send anything but table.View snapshots and
// table.Event values, which carry only face-up cards: the dealer's hole
// card and the shoe stay on the server until revealed.
package tablefeed

import (
	"encoding/json"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// ChannelPrefix + table id is a table's channel.
const ChannelPrefix = "table:"

// Channel returns the channel of a table.
func Channel(tableID string) string { return ChannelPrefix + tableID }

// TableOf returns the table id of a channel.
func TableOf(channel string) (string, bool) {
	id, ok := strings.CutPrefix(channel, ChannelPrefix)
	return id, ok && id != ""
}

// Message types: the data of a subscribe reply or of a publication.
const (
	// TypeSnapshot (subscribe reply): View is the table at Seq; events after
	// Seq follow.
	TypeSnapshot = "snapshot"
	// TypeResume (subscribe reply): the subscription continues after Seq,
	// the sequence the subscriber asked to resume from; the events it
	// missed follow.
	TypeResume = "resume"
	// TypeEvent (publication): Event, numbered Seq = the receiver's + 1.
	TypeEvent = "event"
)

// Message is what a subscriber receives, JSON encoded.
type Message struct {
	Type  string       `json:"type"`
	Table string       `json:"table"`
	Seq   int64        `json:"seq"`
	View  *table.View  `json:"view,omitempty"`
	Event *table.Event `json:"event,omitempty"`
}

// SubscribeRequest is the data of a subscribe command. Since > 0 resumes
// after that sequence; 0 (or no data) asks for a snapshot.
type SubscribeRequest struct {
	Since int64 `json:"since"`
}

// ParseSubscribeRequest decodes a subscribe command's data (empty is a
// snapshot request).
func ParseSubscribeRequest(data []byte) (SubscribeRequest, error) {
	var r SubscribeRequest
	if len(data) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, buzzer.Wrap(err, buzzer.EINVALID, "subscribe data must be {\"since\": SEQ}")
	}
	if r.Since < 0 {
		return r, buzzer.Errorf(buzzer.EINVALID, "since must not be negative")
	}
	return r, nil
}
