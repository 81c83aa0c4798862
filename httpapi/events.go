package httpapi

import (
	"net/http"
	"sort"

	"github.com/buzzer-bet/buzzer/odds"
)

// Catalog is what the public event routes read: the odds engine's current
// state, the same state bets are accepted against.
type Catalog interface {
	Events() []odds.EventInfo
	Snapshot(eventID string) (odds.Snapshot, error)
}

// eventView is one event with its markets and the sequence its state is at,
// so a client can line it up with the delta stream.
type eventView struct {
	odds.EventInfo
	Markets []odds.Market `json:"markets"`
	Seq     uint64        `json:"seq"`
}

// MountCatalog adds GET /v1/events (every live event, ordered by start time
// then id) and GET /v1/events/{id}. Both are public.
func (s *Server) MountCatalog(c Catalog) {
	s.Player("GET /v1/events", Public, func(w http.ResponseWriter, r *http.Request) error {
		infos := c.Events()
		sort.Slice(infos, func(i, j int) bool {
			if !infos[i].StartTime.Equal(infos[j].StartTime) {
				return infos[i].StartTime.Before(infos[j].StartTime)
			}
			return infos[i].EventID < infos[j].EventID
		})
		out := make([]eventView, 0, len(infos))
		for _, info := range infos {
			if info.Ended {
				continue
			}
			snap, err := c.Snapshot(info.EventID)
			if err != nil {
				continue // ended and forgotten between the two reads
			}
			out = append(out, eventView{EventInfo: snap.Event, Markets: snap.Markets, Seq: snap.Seq})
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"events": out})
	})
	s.Player("GET /v1/events/{id}", Public, func(w http.ResponseWriter, r *http.Request) error {
		snap, err := c.Snapshot(r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, eventView{EventInfo: snap.Event, Markets: snap.Markets, Seq: snap.Seq})
	})
}
