package fanout_test

import (
	"encoding/json"
	"testing"

	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/odds"
)

func msg(t *testing.T, m fanout.Message) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mdelta(seq uint64, line odds.Line) odds.Delta {
	id := odds.MarketID("ev", odds.Totals, line)
	return odds.Delta{EventID: "ev", Seq: seq, Kind: odds.DeltaMarket,
		Market: &odds.Market{ID: id, Type: odds.Totals, Line: line, Status: odds.Open, Selections: []odds.Selection{{ID: odds.Over, Price: 19000}}}}
}

// TestFollowerRefusesGapsAndDisorder shows the checks the ordering tests
// rely on do fail: a skipped delta, a repeated one, a conflated update that
// does not start where the client is, an unflagged snapshot going back.
func TestFollowerRefusesGapsAndDisorder(t *testing.T) {
	snap := &odds.Snapshot{Event: odds.EventInfo{Fixture: odds.Fixture{EventID: "ev"}}, Seq: 3}
	start := func(t *testing.T) *fanout.Follower {
		f := &fanout.Follower{}
		if err := f.Subscribed(msg(t, fanout.Message{Type: fanout.TypeSnapshot, EventID: "ev", Epoch: "e", Seq: 3, Snapshot: snap})); err != nil {
			t.Fatal(err)
		}
		return f
	}
	d4, d5, d6 := mdelta(4, 150), mdelta(5, 250), mdelta(6, 150)
	for name, c := range map[string]struct {
		subscribe []byte
		pubs      [][]byte
		ok        bool
	}{
		"in order":       {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeDelta, Delta: &d4}), msg(t, fanout.Message{Type: fanout.TypeDelta, Delta: &d5})}, ok: true},
		"gap":            {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeDelta, Delta: &d5})}},
		"repeat":         {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeDelta, Delta: &d4}), msg(t, fanout.Message{Type: fanout.TypeDelta, Delta: &d4})}},
		"conflated":      {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeConflated, Con: true, From: 3, Seq: 6, Deltas: []odds.Delta{d5, d6}})}, ok: true},
		"conflated from": {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeConflated, Con: true, From: 2, Seq: 6, Deltas: []odds.Delta{d5, d6}})}},
		"unflagged con":  {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeConflated, From: 3, Seq: 6, Deltas: []odds.Delta{d5, d6}})}},
		"con short":      {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeConflated, Con: true, From: 3, Seq: 7, Deltas: []odds.Delta{d5, d6}})}},
		"snapshot back":  {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeSnapshot, Epoch: "e", Seq: 2, Snapshot: snap})}},
		"lost ok":        {pubs: [][]byte{msg(t, fanout.Message{Type: fanout.TypeSnapshot, Epoch: "e", Seq: 3, ContinuityLost: true, Snapshot: snap})}, ok: true},
		"resume wrong":   {subscribe: msg(t, fanout.Message{Type: fanout.TypeResume, Epoch: "e", Seq: 2})},
		"resume right":   {subscribe: msg(t, fanout.Message{Type: fanout.TypeResume, Epoch: "e", Seq: 3}), ok: true},
		"resume epoch":   {subscribe: msg(t, fanout.Message{Type: fanout.TypeResume, Epoch: "x", Seq: 3})},
		"garbage":        {pubs: [][]byte{[]byte(`{"type":`)}},
	} {
		t.Run(name, func(t *testing.T) {
			f := start(t)
			var err error
			if c.subscribe != nil {
				err = f.Subscribed(c.subscribe)
			}
			for _, p := range c.pubs {
				if err == nil {
					err = f.Publication(p)
				}
			}
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// FuzzParseSubscribeRequest: subscribe data comes from any client; it is
// either refused with an error or yields a request, never a panic.
func FuzzParseSubscribeRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"epoch":"e","since":12}`, `{"since":-1}`, `{"since":1e30}`, `[]`, `null`, `{"epoch":` + `"` + string(make([]byte, 80)) + `"}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fanout.ParseSubscribeRequest(b)
		if err != nil {
			if r != (fanout.SubscribeRequest{}) {
				t.Fatalf("error with a non-zero request %+v", r)
			}
			return
		}
		if len(r.Epoch) > 64 {
			t.Fatalf("accepted a %d-byte epoch", len(r.Epoch))
		}
	})
}
