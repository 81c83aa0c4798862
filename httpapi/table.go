package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/table"
)

// tableProblem is problem+json for a refused table request, carrying the
// table's current player-visible snapshot so the client can re-decide
// without another round trip.
type tableProblem struct {
	Problem
	Table *table.View `json:"table,omitempty"`
}

// tableSeatBody is POST /v1/tables/{id}/seats.
type tableSeatBody struct {
	Seat int `json:"seat"`
}

// tableActionBody is POST /v1/tables/{id}/actions. Round and Seq are the
// round and last sequence number of the view the decision was made on; Seat
// may be left out when the player holds one seat (or it is their turn).
type tableActionBody struct {
	Round  int64         `json:"round"`
	Seq    int64         `json:"seq"`
	Action table.Action  `json:"action"`
	Amount buzzer.Amount `json:"amount"`
	Seat   int           `json:"seat"`
}

// maxTableKey bounds an Idempotency-Key.
const maxTableKey = 255

// decodeTableAction strictly decodes and checks an action body.
func decodeTableAction(b []byte) (tableActionBody, error) {
	var a tableActionBody
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return a, decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return a, buzzer.Errorf(buzzer.EINVALID, "The request body must hold exactly one JSON object.")
	}
	switch {
	case a.Action == table.NoAction:
		return a, buzzer.Errorf(buzzer.EINVALID, "Field action is required.")
	case a.Round < 1 || a.Seq < 1:
		return a, buzzer.Errorf(buzzer.EINVALID, "Fields round and seq are required: the round and sequence number of the table view the decision was made on.")
	case a.Amount < 0:
		return a, buzzer.Errorf(buzzer.EINVALID, "Field amount must not be negative.")
	case a.Seat < 0:
		return a, buzzer.Errorf(buzzer.EINVALID, "Field seat must not be negative.")
	}
	return a, nil
}

// tableKey checks an Idempotency-Key: required, printable ASCII, bounded.
func tableKey(r *http.Request) (string, error) {
	k := r.Header.Get(IdempotencyHeader)
	if k == "" {
		return "", buzzer.Errorf(buzzer.EINVALID, "An Idempotency-Key header is required.").WithReason("missing_idempotency_key")
	}
	if len(k) > maxTableKey {
		return "", buzzer.Errorf(buzzer.EINVALID, "The Idempotency-Key must be at most %d characters.", maxTableKey)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return "", buzzer.Errorf(buzzer.EINVALID, "The Idempotency-Key must be printable ASCII without spaces.")
		}
	}
	return k, nil
}

// tableEventsQuery reads ?after=SEQ&limit=N: after a non-negative decimal
// (default 0), limit 1..1000 (default 100).
func tableEventsQuery(r *http.Request) (after int64, limit int, err error) {
	q := r.URL.Query()
	limit = 100
	if v := q.Get("after"); v != "" {
		n, convErr := strconv.ParseInt(v, 10, 64)
		if convErr != nil || n < 0 || strconv.FormatInt(n, 10) != v {
			return 0, 0, buzzer.Errorf(buzzer.EINVALID, "Query parameter after must be a sequence number (a non-negative decimal).")
		}
		after = n
	}
	if v := q.Get("limit"); v != "" {
		n, convErr := strconv.Atoi(v)
		if convErr != nil || n < 1 || n > 1000 || strconv.Itoa(n) != v {
			return 0, 0, buzzer.Errorf(buzzer.EINVALID, "Query parameter limit must be an integer from 1 to 1000.")
		}
		limit = n
	}
	return after, limit, nil
}

// tableWaitQuery reads a snapshot's optional wait: ?after=SEQ&wait=DUR
// answers once the table is past SEQ, or after DUR (at most
// table.MaxSnapshotWait) with the snapshot as it is then.
func tableWaitQuery(r *http.Request) (after int64, wait time.Duration, err error) {
	q := r.URL.Query()
	a, w := q.Get("after"), q.Get("wait")
	if a == "" && w == "" {
		return 0, 0, nil
	}
	if a == "" || w == "" {
		return 0, 0, buzzer.Errorf(buzzer.EINVALID, "Query parameters after and wait go together.")
	}
	n, convErr := strconv.ParseInt(a, 10, 64)
	if convErr != nil || n < 0 || strconv.FormatInt(n, 10) != a {
		return 0, 0, buzzer.Errorf(buzzer.EINVALID, "Query parameter after must be a sequence number (a non-negative decimal).")
	}
	d, convErr := time.ParseDuration(w)
	if convErr != nil || d <= 0 || d > table.MaxSnapshotWait {
		return 0, 0, buzzer.Errorf(buzzer.EINVALID, "Query parameter wait must be a duration above 0 and at most %s, such as 2s.", table.MaxSnapshotWait)
	}
	return n, d, nil
}

// MountTables adds the live-table API on the player listener. Every route
// needs a player token; the player is always the token's subject.
//
//	GET    /v1/tables                      tables this node serves, as snapshots
//	GET    /v1/tables/{id}                 the table's snapshot (any node can serve it)
//	GET    /v1/tables/{id}?after=SEQ&wait=DUR   the snapshot once the table is past SEQ (or after DUR, at most 5s)
//	GET    /v1/tables/{id}/events?after=SEQ&limit=N   events after SEQ, to resume a feed
//	POST   /v1/tables/{id}/seats           {seat}: sit down (201)
//	DELETE /v1/tables/{id}/seats/{seat}    leave (now, or when the round ends)
//	POST   /v1/tables/{id}/actions         {round, seq, action, amount[, seat]} with Idempotency-Key
//
// A decision made on a stale view (round or seq behind the table's), out of
// turn, or otherwise refused by the table's state is 409 with the current
// snapshot in the problem's "table" member. A table this node does not hold
// (not_owner) or whose wallet call is unresolved (in_flight) is 503 with
// Retry-After: the client retries, and its decision applies at most once.
//
// An action is applied at most once by construction: it names the sequence
// number it was decided on, and the table accepts it only at that number.
// A resend of an applied action (the reply was lost, or the node died after
// applying it) therefore finds the table moved on; it is recognised in the
// table's own log — the event right after that sequence number is this
// seat's same decision — and answered 200 with the current snapshot and
// Idempotent-Replayed: true, by whichever node the resend reaches. The
// Idempotency-Key is required and logged; the money a decision moves is
// keyed by (table, round, seat, action) in the wallet, never by it.
//
// Taking a seat and acting are regulated (an action may stake money), so
// they run only with an allowed location decision from gate (RequireGeo).
// Reads and leaving a seat need only the player token: they stake nothing,
// and a player must always be able to get up.
//
// It registers buzzer_table_action_duration_seconds{action,result}: the time
// to carry out a decision, stake debit and state write included.
func (s *Server) MountTables(svc *table.Service, gate GeoGate) {
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "buzzer_table_action_duration_seconds",
		Help:    "Time to carry out a player's table decision (stake debit and fenced state write included), by action and result.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
	}, []string{"action", "result"})
	s.registry.MustRegister(latency)
	s.Player("GET /v1/tables", Player, func(w http.ResponseWriter, r *http.Request) error {
		views := make([]table.View, 0)
		for _, id := range svc.Owned() {
			v, err := svc.Snapshot(r.Context(), id)
			if err != nil {
				continue // moved or not yet stored between the two reads
			}
			views = append(views, v)
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"tables": views})
	})
	s.Player("GET /v1/tables/{id}", Player, func(w http.ResponseWriter, r *http.Request) error {
		after, wait, err := tableWaitQuery(r)
		if err != nil {
			return err
		}
		v, err := svc.WaitSnapshot(r.Context(), r.PathValue("id"), after, wait)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, v)
	})
	s.Player("GET /v1/tables/{id}/events", Player, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		after, limit, err := tableEventsQuery(r)
		if err != nil {
			return err
		}
		evs, err := svc.Events(r.Context(), id, after, limit)
		if err != nil {
			return s.tableRefusal(w, r, svc, id, err)
		}
		if evs == nil {
			evs = []table.Event{}
		}
		return WriteJSON(w, http.StatusOK, map[string]any{"table": id, "after": after, "events": evs})
	})
	s.Player("POST /v1/tables/{id}/seats", Player, RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		p, _ := PlayerFrom(r.Context())
		var b tableSeatBody
		if err := DecodeJSON(r, &b); err != nil {
			return err
		}
		v, err := svc.Sit(r.Context(), id, p.Subject, b.Seat)
		if err != nil {
			// A resent sit that already took the seat is a success.
			if buzzer.ErrorCode(err) == buzzer.ECONFLICT {
				if cur, serr := svc.Snapshot(r.Context(), id); serr == nil && tableSeatOf(cur, b.Seat) == p.Subject {
					w.Header().Set("Idempotent-Replayed", "true")
					return WriteJSON(w, http.StatusOK, cur)
				}
			}
			return s.tableRefusal(w, r, svc, id, err)
		}
		w.Header().Set("Location", "/v1/tables/"+id+"/seats/"+strconv.Itoa(b.Seat))
		return WriteJSON(w, http.StatusCreated, v)
	}))
	s.Player("DELETE /v1/tables/{id}/seats/{seat}", Player, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		p, _ := PlayerFrom(r.Context())
		seat, err := strconv.Atoi(r.PathValue("seat"))
		if err != nil || seat < 1 {
			return buzzer.Errorf(buzzer.EINVALID, "The seat must be a seat number.")
		}
		v, err := svc.Leave(r.Context(), id, p.Subject, seat)
		if err != nil {
			return s.tableRefusal(w, r, svc, id, err)
		}
		return WriteJSON(w, http.StatusOK, v)
	})
	s.Player("POST /v1/tables/{id}/actions", Player, RequireGeo(gate, func(w http.ResponseWriter, r *http.Request) error {
		id := r.PathValue("id")
		p, _ := PlayerFrom(r.Context())
		key, err := tableKey(r)
		if err != nil {
			return err
		}
		body, err := ReadBody(r)
		if err != nil {
			return err
		}
		a, err := decodeTableAction(body)
		if err != nil {
			return err
		}
		if a.Seat == 0 {
			cur, err := svc.Snapshot(r.Context(), id)
			if err != nil {
				return err
			}
			if a.Seat, err = tableChooseSeat(cur, p.Subject, a.Action); err != nil {
				return err
			}
		}
		req := table.Request{Player: p.Subject, Seat: a.Seat, Round: a.Round, Seq: a.Seq, Action: a.Action, Amount: a.Amount}
		// The decision is carried out on a context detached from the
		// client's connection: it may move money, and a disconnect must not
		// leave its outcome half-known. The server's request timeout still
		// bounds it.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.RequestTimeout)
		defer cancel()
		start := time.Now()
		v, err := svc.Act(ctx, id, req)
		result := "ok"
		if err != nil {
			result = buzzer.ErrorCode(err)
		}
		latency.WithLabelValues(req.Action.String(), result).Observe(time.Since(start).Seconds())
		if err == nil {
			return WriteJSON(w, http.StatusOK, v)
		}
		if buzzer.ErrorReason(err) == table.ReasonStaleSeq {
			if applied, cur := tableApplied(ctx, svc, id, req); applied {
				s.log.Info("table action replayed", "request_id", RequestID(r.Context()), "table", id, "seq", req.Seq, "idempotency_key", key)
				w.Header().Set("Idempotent-Replayed", "true")
				return WriteJSON(w, http.StatusOK, cur)
			}
		}
		return s.tableRefusal(w, r, svc, id, err)
	}))
}

// tableSeatOf returns the player in seat n of v ("" if empty).
func tableSeatOf(v table.View, n int) string {
	for _, st := range v.Seats {
		if st.Seat == n {
			return st.Player
		}
	}
	return ""
}

// tableChooseSeat picks the player's seat for an action that named none:
// the seat whose turn it is if it is theirs, else their only seat.
func tableChooseSeat(v table.View, player string, a table.Action) (int, error) {
	var mine []int
	for _, st := range v.Seats {
		if st.Player == player {
			mine = append(mine, st.Seat)
		}
	}
	if a != table.PlaceBet && v.Turn != nil && tableSeatOf(v, v.Turn.Seat) == player {
		return v.Turn.Seat, nil
	}
	switch len(mine) {
	case 0:
		return 0, buzzer.Errorf(buzzer.ENOTFOUND, "You have no seat at table %s.", v.Table)
	case 1:
		return mine[0], nil
	}
	return 0, buzzer.Errorf(buzzer.EINVALID, "You hold several seats at table %s: name the seat.", v.Table)
}

// tableApplied reports whether req was already applied: the table's event
// right after req.Seq is this seat's same decision, made by the player (not
// a timeout's default). A table's seats bet at once, so for a bet the other
// seats' bets of the same round that came between are passed over. It
// returns the current snapshot when so.
func tableApplied(ctx context.Context, svc *table.Service, id string, req table.Request) (bool, table.View) {
	limit := 1
	if req.Action == table.PlaceBet {
		limit = 64
	}
	evs, err := svc.Events(ctx, id, req.Seq, limit)
	if err != nil || len(evs) == 0 {
		return false, table.View{}
	}
	i := 0
	if req.Action == table.PlaceBet {
		for i < len(evs) && evs[i].Kind == table.EventBet && evs[i].Round == req.Round && evs[i].Seat != req.Seat {
			i++
		}
	}
	if i == len(evs) {
		return false, table.View{}
	}
	e := evs[i]
	if e.Seq != req.Seq+int64(i)+1 || e.Round != req.Round || e.Seat != req.Seat || e.Timeout {
		return false, table.View{}
	}
	switch {
	case req.Action == table.PlaceBet && e.Kind == table.EventBet && e.Amount == req.Amount:
	case req.Action != table.PlaceBet && e.Kind == table.EventAction && e.Action == req.Action &&
		(req.Action != table.Insure || e.Amount == req.Amount):
	default:
		return false, table.View{}
	}
	v, err := svc.Snapshot(ctx, id)
	if err != nil {
		return false, table.View{}
	}
	return true, v
}

// tableRefusal writes a table error. A conflict carries the table's current
// snapshot; everything else is plain problem+json (503s get Retry-After).
func (s *Server) tableRefusal(w http.ResponseWriter, r *http.Request, svc *table.Service, id string, err error) error {
	if buzzer.ErrorCode(err) != buzzer.ECONFLICT {
		return err
	}
	v, serr := svc.Snapshot(r.Context(), id)
	if serr != nil {
		return err
	}
	status := StatusOf(err)
	p := tableProblem{Problem: Problem{
		Type:     "https://buzzer.bet/problems/" + buzzer.ECONFLICT,
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   buzzer.ErrorMessage(err),
		Code:     buzzer.ECONFLICT,
		Reason:   buzzer.ErrorReason(err),
		Instance: r.URL.Path,
	}, Table: &v}
	b, merr := json.Marshal(p)
	if merr != nil {
		return err
	}
	return WriteRaw(w, status, "application/problem+json", append(b, '\n'))
}
