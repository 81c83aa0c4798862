package fanout

import (
	"encoding/json"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// Follower is one subscriber's view of an event channel, as a client keeps
// it: it applies the subscribe reply and every publication, and refuses any
// message that does not continue its sequence exactly (a gap or anything out
// of order is an error; a flagged conflation or continuity loss is not).
// Clients in Go (tests, `buzzer bench odds`) use it; centrifuge-js clients
// follow the same rules. It is not safe for concurrent use.
type Follower struct {
	State  odds.Snapshot
	Epoch  string
	Seeded bool
	// Counts of what arrived.
	Deltas, Conflated, Snapshots, ContinuityLost, Resumed int
}

// ResumeRequest is the subscribe data to send when (re)subscribing: resume
// after the current state, or nothing for a first subscription.
func (f *Follower) ResumeRequest() []byte {
	if !f.Seeded {
		return nil
	}
	b, _ := json.Marshal(SubscribeRequest{Epoch: f.Epoch, Since: f.State.Seq})
	return b
}

func outOfOrder(format string, args ...any) error {
	return buzzer.Errorf(buzzer.ECONFLICT, format, args...).WithReason("out_of_sequence")
}

// Subscribed applies a subscribe reply's data.
func (f *Follower) Subscribed(data []byte) error {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "undecodable subscribe reply")
	}
	switch m.Type {
	case TypeSnapshot:
		return f.snapshot(m)
	case TypeResume:
		if !f.Seeded || m.Epoch != f.Epoch || m.Seq != f.State.Seq {
			return outOfOrder("resume at %s/%d, but the state is at %s/%d", m.Epoch, m.Seq, f.Epoch, f.State.Seq)
		}
		f.Resumed++
		return nil
	default:
		return buzzer.Errorf(buzzer.EINVALID, "unexpected subscribe reply type %q", m.Type)
	}
}

func (f *Follower) snapshot(m Message) error {
	if m.Snapshot == nil {
		return buzzer.Errorf(buzzer.EINVALID, "snapshot message without a snapshot")
	}
	if f.Seeded && !m.ContinuityLost && (m.Epoch != f.Epoch || m.Seq < f.State.Seq) {
		return outOfOrder("unflagged snapshot at %s/%d after %s/%d", m.Epoch, m.Seq, f.Epoch, f.State.Seq)
	}
	f.State, f.Epoch, f.Seeded = m.Snapshot.Clone(), m.Epoch, true
	f.Snapshots++
	if m.ContinuityLost {
		f.ContinuityLost++
	}
	return nil
}

// Publication applies a publication's data.
func (f *Follower) Publication(data []byte) error {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "undecodable publication")
	}
	if m.Type == TypeSnapshot {
		if !m.ContinuityLost {
			return outOfOrder("snapshot publication without continuity_lost")
		}
		return f.snapshot(m)
	}
	if !f.Seeded {
		return outOfOrder("%s before any snapshot", m.Type)
	}
	switch m.Type {
	case TypeDelta:
		if m.Delta == nil || m.Delta.Seq != f.State.Seq+1 {
			return outOfOrder("delta %d after %d", m.Seq, f.State.Seq)
		}
		if _, err := f.State.Apply(*m.Delta); err != nil {
			return err
		}
		f.Deltas++
	case TypeConflated:
		if !m.Con || m.From != f.State.Seq || m.Seq <= m.From || len(m.Deltas) == 0 {
			return outOfOrder("conflated %d..%d (con=%v) after %d", m.From, m.Seq, m.Con, f.State.Seq)
		}
		for _, d := range m.Deltas {
			if d.Seq <= f.State.Seq || d.Seq > m.Seq {
				return outOfOrder("conflated delta %d outside %d..%d", d.Seq, f.State.Seq, m.Seq)
			}
			if err := f.State.Fold(d); err != nil {
				return err
			}
		}
		if f.State.Seq != m.Seq {
			return outOfOrder("conflated update ends at %d, says %d", f.State.Seq, m.Seq)
		}
		f.Conflated++
	default:
		return buzzer.Errorf(buzzer.EINVALID, "unexpected publication type %q", m.Type)
	}
	return nil
}

// Lobby is a subscriber's view of the lobby channel: every event's info at
// its latest event-level sequence, which only ever grows.
type Lobby struct {
	Events    map[string]LobbyEvent
	Conflated int
}

// Subscribed applies the lobby's subscribe reply.
func (l *Lobby) Subscribed(data []byte) error {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil || m.Type != TypeLobby {
		return buzzer.Errorf(buzzer.EINVALID, "undecodable lobby reply")
	}
	l.Events = map[string]LobbyEvent{}
	for _, e := range m.Events {
		l.Events[e.EventID] = e
	}
	return nil
}

// Publication applies a lobby publication.
func (l *Lobby) Publication(data []byte) error {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "undecodable lobby publication")
	}
	var ds []odds.Delta
	switch {
	case m.Type == TypeDelta && m.Delta != nil:
		ds = []odds.Delta{*m.Delta}
	case m.Type == TypeConflated && m.Con:
		ds = m.Deltas
		l.Conflated++
	default:
		return buzzer.Errorf(buzzer.EINVALID, "unexpected lobby publication %q", m.Type)
	}
	for _, d := range ds {
		if d.Kind != odds.DeltaEvent || d.Event == nil {
			return buzzer.Errorf(buzzer.EINVALID, "lobby delta of kind %q", d.Kind)
		}
		if cur, ok := l.Events[d.EventID]; ok && d.Seq <= cur.Seq {
			return outOfOrder("lobby: event %s at %d after %d", d.EventID, d.Seq, cur.Seq)
		}
		l.Events[d.EventID] = LobbyEvent{EventInfo: *d.Event, Seq: d.Seq}
	}
	return nil
}
