package httpapi

import (
	"net/http"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/toggle"
)

// toggleFlip is the body of PUT /admin/v1/toggles/{name}.
type toggleFlip struct {
	Enabled *bool  `json:"enabled"`
	Reason  string `json:"reason"`
}

// MountToggles serves the runtime toggles on the admin listener: the list
// with each toggle's last flip, and a flip that records the operator (from
// the admin credential) and the reason.
func (s *Server) MountToggles(set *toggle.Set) {
	s.Admin("GET /admin/v1/toggles", func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, map[string]any{"toggles": set.List(), "known": toggle.Known()})
	})
	s.Admin("PUT /admin/v1/toggles/{name}", func(w http.ResponseWriter, r *http.Request) error {
		op, _ := PlayerFrom(r.Context())
		var req toggleFlip
		if err := DecodeJSON(r, &req); err != nil {
			return err
		}
		if req.Enabled == nil {
			return buzzer.Errorf(buzzer.EINVALID, "enabled (true or false) is required")
		}
		st, err := set.Flip(r.Context(), toggle.Name(r.PathValue("name")), *req.Enabled, "operator:"+op.Subject, req.Reason)
		if err != nil {
			return err
		}
		s.log.Warn("toggle flipped", "toggle", st.Name, "enabled", st.Enabled, "by", st.ChangedBy, "reason", st.Reason, "revision", st.Revision)
		return WriteJSON(w, http.StatusOK, st)
	})
}
