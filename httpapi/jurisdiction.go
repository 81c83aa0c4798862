package httpapi

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/buzzer-bet/buzzer"
)

// QueryJurisdiction names the jurisdiction of a public or admin request to
// a server that holds several (`?jurisdiction=PA`). Player routes never read
// it: their jurisdiction is the account's, from the verified token.
const QueryJurisdiction = "jurisdiction"

// Jurisdiction returns the view of s through which one jurisdiction's
// regulated parts (wallet, bets, tables, draws) mount their routes when one
// process serves several jurisdictions, each with its own stores
// (`buzzer serve --jurisdictions NJ,PA`). The view's Player and Admin
// register the jurisdiction's handler under a route of s that every
// jurisdiction shares; a request reaches exactly one jurisdiction's handler:
//
//   - an authenticated player route: the jurisdiction of the player's
//     account (the token's claim), never anything the client names. A
//     player of a jurisdiction no part serves gets 403 jurisdiction_not_served
//     and no handler runs.
//   - a public or admin route: ?jurisdiction=XX; it may be left out while
//     only one jurisdiction has that route. A jurisdiction no part serves is
//     400 jurisdiction_not_served; a missing one, 400 jurisdiction_required.
//
// reg receives the jurisdiction's metrics; /metrics on s shows them with a
// jurisdiction label. Ready checks added on the view run in s's /readyz.
func (s *Server) Jurisdiction(j string, reg *prometheus.Registry) *Server {
	root := s
	for root.parent != nil {
		root = root.parent
	}
	root.AddGatherer(labelGatherer{g: reg, name: "jurisdiction", value: j})
	return &Server{
		cfg: root.cfg, log: root.log.With("jurisdiction", j), players: root.players, admins: root.admins,
		registry: reg, parent: root, jur: j,
	}
}

// dispatched is one shared route and the handler of each jurisdiction.
type dispatched struct {
	access Access
	mu     sync.RWMutex
	byJ    map[string]HandlerFunc
}

func (d *dispatched) handler(j string) HandlerFunc {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.byJ[j]
}

func (d *dispatched) served() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	js := make([]string, 0, len(d.byJ))
	for j := range d.byJ {
		js = append(js, j)
	}
	sort.Strings(js)
	return js
}

// dispatch registers h as jurisdiction j's handler of the route; the first
// registration of a route adds it to s. Registering the same route twice
// for one jurisdiction, or with different access, is a programming error.
func (s *Server) dispatch(listener, pattern string, access Access, j string, h HandlerFunc) {
	key := listener + " " + pattern
	s.mu.Lock()
	if s.dispatched == nil {
		s.dispatched = map[string]*dispatched{}
	}
	d, exists := s.dispatched[key]
	if !exists {
		d = &dispatched{access: access, byJ: map[string]HandlerFunc{}}
		s.dispatched[key] = d
	}
	s.mu.Unlock()
	if d.access != access {
		panic("httpapi: route " + key + " registered with different access by jurisdiction " + j)
	}
	d.mu.Lock()
	if _, dup := d.byJ[j]; dup {
		d.mu.Unlock()
		panic("httpapi: route " + key + " registered twice for jurisdiction " + j)
	}
	d.byJ[j] = h
	d.mu.Unlock()
	if exists {
		return
	}
	route := func(w http.ResponseWriter, r *http.Request) error {
		h, err := d.pick(listener, r)
		if err != nil {
			return err
		}
		return h(w, r)
	}
	if listener == "admin" {
		s.Admin(pattern, route)
	} else {
		s.Player(pattern, access, route)
	}
}

// pick returns the handler of the jurisdiction that serves r.
func (d *dispatched) pick(listener string, r *http.Request) (HandlerFunc, error) {
	if listener == "player" && d.access == Player {
		p, ok := PlayerFrom(r.Context())
		switch {
		case !ok || p.Subject == "":
			return nil, buzzer.Errorf(buzzer.EUNAUTHORIZED, "An authenticated player is required.")
		case p.Jurisdiction == "":
			return nil, buzzer.Errorf(buzzer.EFORBIDDEN, "The account has no jurisdiction; regulated requests are refused.").WithReason("account_jurisdiction_missing")
		}
		if h := d.handler(p.Jurisdiction); h != nil {
			return h, nil
		}
		return nil, buzzer.Errorf(buzzer.EFORBIDDEN, "Accounts of %s are not served here (this service holds %s).",
			p.Jurisdiction, strings.Join(d.served(), ", ")).WithReason("jurisdiction_not_served")
	}
	q := r.URL.Query().Get(QueryJurisdiction)
	if q != "" {
		if h := d.handler(q); h != nil {
			return h, nil
		}
		return nil, buzzer.Errorf(buzzer.EINVALID, "Jurisdiction %q is not served here (this service holds %s).",
			q, strings.Join(d.served(), ", ")).WithReason("jurisdiction_not_served")
	}
	served := d.served()
	if len(served) == 1 {
		return d.handler(served[0]), nil
	}
	return nil, buzzer.Errorf(buzzer.EINVALID, "Name the jurisdiction with ?%s= (one of %s).",
		QueryJurisdiction, strings.Join(served, ", ")).WithReason("jurisdiction_required")
}

// AddGatherer adds metrics that s's /metrics shows beside its registry's.
func (s *Server) AddGatherer(g prometheus.Gatherer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gatherers = append(s.gatherers, g)
}

// Gather implements prometheus.Gatherer over s's registry and every added
// gatherer.
func (s *Server) Gather() ([]*dto.MetricFamily, error) {
	s.mu.Lock()
	gs := append(prometheus.Gatherers{s.registry}, s.gatherers...)
	s.mu.Unlock()
	return gs.Gather()
}

// labelGatherer adds one label to every metric of g.
type labelGatherer struct {
	g           prometheus.Gatherer
	name, value string
}

func (l labelGatherer) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := l.g.Gather()
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			name, value := l.name, l.value
			m.Label = append(m.Label, &dto.LabelPair{Name: &name, Value: &value})
			sort.Slice(m.Label, func(a, b int) bool { return m.Label[a].GetName() < m.Label[b].GetName() })
		}
	}
	return mfs, err
}

// readyCheck adds a dependency check to the root server's /readyz; a
// jurisdiction's checks are named after it.
func (s *Server) readyCheck(name string, check func(ctx context.Context) error) {
	if s.parent != nil {
		s.parent.readyCheck(s.jur+" "+name, check)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, ReadyCheck{Name: name, Check: check})
}
