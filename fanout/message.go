// Package fanout delivers live odds to players over centrifuge (WebSocket,
// SSE, HTTP-streaming): a lobby channel with every event's state, and one
// channel per event. A subscriber gets a snapshot first, then every delta in
// sequence order; a reconnecting subscriber resumes from its last sequence,
// or is told continuity was lost and gets a fresh snapshot; a subscriber that
// cannot keep up is conflated (it gets the latest state per market, flagged
// con) instead of queueing without bound, so no subscriber slows another.
//
// It is a transport: it reads deltas from the odds backbone (odds.Bus) and
// snapshots from an odds.Engine-like Snapshotter. It must never change odds
// state, never block the bus consumer on a subscriber, and never send a delta
// out of sequence.
package fanout

import (
	"encoding/json"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// Channel names.
const (
	// LobbyChannel carries every event's event-level state.
	LobbyChannel = "odds:lobby"
	// EventChannelPrefix + event id is an event's channel.
	EventChannelPrefix = "odds:event:"
)

// EventChannel returns the channel of an event.
func EventChannel(eventID string) string { return EventChannelPrefix + eventID }

// Message types: the data of a subscribe reply or of a publication.
const (
	// TypeSnapshot: Snapshot is the event's full state at Seq. In a publication
	// it replaces the receiver's state and ContinuityLost is set.
	TypeSnapshot = "snapshot"
	// TypeResume: the subscription continues after Seq, the sequence the
	// subscriber asked to resume from; the deltas it missed follow.
	TypeResume = "resume"
	// TypeDelta: one delta, the next in sequence (Delta.Seq = receiver's + 1).
	TypeDelta = "delta"
	// TypeConflated: the receiver fell behind, or the event's coalescing
	// window (Config.Coalesce) held several deltas; Deltas holds the latest delta
	// per market (and event) after From, and applying them all brings it to
	// Seq. Con is set, as Betfair's stream API flags a conflated change.
	TypeConflated = "conflated"
	// TypeLobby: the lobby's snapshot, every event's info and sequence.
	TypeLobby = "lobby"
)

// Message is what a subscriber receives, JSON encoded.
type Message struct {
	Type    string `json:"type"`
	EventID string `json:"event_id,omitempty"`
	// Epoch names the engine incarnation the sequence numbers belong to; a
	// resume request must carry it.
	Epoch string `json:"epoch,omitempty"`
	Seq   uint64 `json:"seq,omitempty"`
	From  uint64 `json:"from,omitempty"`
	Con   bool   `json:"con,omitempty"`
	// ContinuityLost: the subscriber's position could not be continued (too
	// far behind, a new engine epoch, or a gap upstream); Snapshot replaces
	// its state.
	ContinuityLost bool           `json:"continuity_lost,omitempty"`
	Reason         string         `json:"reason,omitempty"`
	Snapshot       *odds.Snapshot `json:"snapshot,omitempty"`
	Delta          *odds.Delta    `json:"delta,omitempty"`
	Deltas         []odds.Delta   `json:"deltas,omitempty"`
	Events         []LobbyEvent   `json:"events,omitempty"`
}

// LobbyEvent is one event in the lobby snapshot.
type LobbyEvent struct {
	odds.EventInfo
	Seq uint64 `json:"seq"`
}

// SubscribeRequest is the optional data of a subscribe command on an event
// channel: resume after Seq of Epoch.
type SubscribeRequest struct {
	Epoch string `json:"epoch,omitempty"`
	Since uint64 `json:"since,omitempty"`
}

// Continuity-lost reasons.
const (
	ReasonTooFarBehind = "too_far_behind" // the missed deltas are no longer held
	ReasonNewEpoch     = "new_epoch"      // the engine restarted; sequences start over
	ReasonUpstreamGap  = "upstream_gap"   // the backbone skipped deltas; rebuilt from the engine
	ReasonFanoutBehind = "fanout_behind"  // the fan-out fell behind the bus and skipped to its end
)

// ParseSubscribeRequest decodes a subscribe command's data (outside input):
// empty means a fresh subscription.
func ParseSubscribeRequest(b []byte) (SubscribeRequest, error) {
	var r SubscribeRequest
	if len(b) == 0 {
		return r, nil
	}
	if len(b) > 1024 {
		return r, buzzer.Errorf(buzzer.EINVALID, "subscribe data over 1 KiB")
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return SubscribeRequest{}, buzzer.Wrap(err, buzzer.EINVALID, "subscribe data must be {\"epoch\":..., \"since\":...}")
	}
	if len(r.Epoch) > 64 {
		return SubscribeRequest{}, buzzer.Errorf(buzzer.EINVALID, "epoch too long")
	}
	return r, nil
}
