package odds

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Publisher receives every delta in sequence order per event. The engine calls
// it with its lock held, so it must not block (hand the delta to a bounded
// queue or the stream client's async publish) and must not call back into the
// engine.
type Publisher interface {
	PublishDelta(Delta)
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(Delta)

// PublishDelta calls f(d).
func (f PublisherFunc) PublishDelta(d Delta) { f(d) }

// EngineConfig configures the state engine.
type EngineConfig struct {
	// Providers is the default priority order: the first trusted provider
	// that has an event drives it; the next takes over when it goes silent or
	// down and hands back when it recovers. Required.
	Providers []string
	// SilenceTimeout: a provider with no message or heartbeat for this long is
	// untrusted and every market it drives is suspended or failed over.
	// Default 2s.
	SilenceTimeout time.Duration
	// DivergenceBP: a selection whose price differs from another trusted
	// provider's by more than this many basis points of the lower price
	// suspends its market. Default 1500 (15%). Negative disables the check.
	DivergenceBP int64
	// CheckInterval is how often Run checks for silence. Default SilenceTimeout/10.
	CheckInterval time.Duration
	// RetainEnded is how long an ended event stays after its last change
	// before Run forgets it. Default 10m.
	RetainEnded time.Duration
	Clock       buzzer.Clock
	Publisher   Publisher
	Logger      *slog.Logger
}

func (c *EngineConfig) withDefaults() (EngineConfig, error) {
	o := *c
	if len(o.Providers) == 0 {
		return o, buzzer.Errorf(buzzer.EINVALID, "odds engine: Providers must name at least one provider")
	}
	if o.SilenceTimeout == 0 {
		o.SilenceTimeout = 2 * time.Second
	}
	if o.SilenceTimeout < 0 {
		return o, buzzer.Errorf(buzzer.EINVALID, "odds engine: SilenceTimeout must be positive")
	}
	if o.DivergenceBP == 0 {
		o.DivergenceBP = 1500
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = o.SilenceTimeout / 10
	}
	if o.RetainEnded <= 0 {
		o.RetainEnded = 10 * time.Minute
	}
	if o.Clock == nil {
		o.Clock = buzzer.SystemClock{}
	}
	if o.Publisher == nil {
		o.Publisher = PublisherFunc(func(Delta) {})
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// Engine keeps the current state of every event, folds provider updates into
// it and emits one delta per change. It is safe for concurrent use; one mutex
// guards all state, which is what makes the per-event sequence strict.
type Engine struct {
	cfg EngineConfig

	mu        sync.Mutex
	providers map[string]*providerState
	events    map[string]*eventState
}

type providerState struct {
	lastSeen time.Time
	status   ProviderStatus
	silent   bool
	events   map[string]bool // events this provider has a view of
}

type eventState struct {
	info      EventInfo
	changed   time.Time // time of the last delta
	seq       uint64
	views     map[string]*view
	published map[string]*Market
}

type view struct {
	inPlay  *bool
	ended   bool
	score   *Score
	markets map[string]*Market
}

// NewEngine returns an engine; it suspends silent providers' markets only
// while Run is running (or when CheckHealth is called).
func NewEngine(cfg EngineConfig) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Engine{cfg: c, providers: map[string]*providerState{}, events: map[string]*eventState{}}, nil
}

// AddFixture registers (or updates the fixture data of) an event. Updates for
// events without a fixture are refused.
func (e *Engine) AddFixture(f Fixture) error {
	if f.EventID == "" {
		return buzzer.Errorf(buzzer.EINVALID, "fixture needs an event id")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	ev, ok := e.events[f.EventID]
	if !ok {
		e.events[f.EventID] = &eventState{info: EventInfo{Fixture: f}, views: map[string]*view{}, published: map[string]*Market{}}
		return nil
	}
	ev.info.Fixture = f
	return nil
}

// Run checks provider silence every CheckInterval until ctx is done.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			e.CheckHealth()
			e.Prune(e.cfg.Clock.Now().Add(-e.cfg.RetainEnded))
		}
	}
}

// CheckHealth marks providers silent whose last message is older than the
// silence timeout and suspends or fails over what they drive.
func (e *Engine) CheckHealth() {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Clock.Now()
	names := make([]string, 0, len(e.providers))
	for name := range e.providers {
		names = append(names, name)
	}
	sort.Strings(names) // a deterministic order of deltas across events
	for _, name := range names {
		p := e.providers[name]
		if p.silent || now.Sub(p.lastSeen) <= e.cfg.SilenceTimeout {
			continue
		}
		p.silent = true
		e.cfg.Logger.Warn("odds provider silent", "provider", name, "last_seen", p.lastSeen)
		e.recomputeProvider(p, now, "provider_unavailable")
	}
}

// Apply folds one normalized update into the state and publishes the deltas
// it causes. It fails with EINVALID for a malformed update and ENOTFOUND for
// an event without a fixture; neither changes anything.
func (e *Engine) Apply(u Update) error {
	if u.Provider == "" {
		return buzzer.Errorf(buzzer.EINVALID, "update without provider")
	}
	switch u.Kind {
	case KindOdds:
		if err := validateMarkets(u.Markets); err != nil {
			return err
		}
	case KindStatus:
		if u.Status != ProviderUp && u.Status != ProviderDown {
			return buzzer.Errorf(buzzer.EINVALID, "unknown provider status %q", u.Status)
		}
	case KindAlive:
	default:
		return buzzer.Errorf(buzzer.EINVALID, "unknown update kind %q", u.Kind)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Clock.Now()
	p := e.providers[u.Provider]
	if p == nil {
		p = &providerState{status: ProviderDown, events: map[string]bool{}}
		e.providers[u.Provider] = p
	}
	var ev *eventState
	if u.Kind == KindOdds {
		ev = e.events[u.EventID]
		if ev == nil {
			return buzzer.Errorf(buzzer.ENOTFOUND, "no fixture for event %q", u.EventID)
		}
	}
	wasTrusted := e.trusted(p, now)
	if u.Kind != KindStatus {
		// Only the provider's own messages prove it is alive; an adapter's
		// status report does not.
		p.lastSeen = now
		p.silent = false
	}
	switch u.Kind {
	case KindAlive:
	case KindStatus:
		p.status = u.Status
	case KindOdds:
		p.events[u.EventID] = true
		v := ev.views[u.Provider]
		if v == nil {
			v = &view{markets: map[string]*Market{}}
			ev.views[u.Provider] = v
		}
		v.apply(u)
	}
	if isTrusted := e.trusted(p, now); isTrusted != wasTrusted {
		reason := "provider_unavailable"
		if isTrusted {
			reason = "provider_recovered"
		}
		e.recomputeProvider(p, now, reason)
	}
	if ev != nil {
		e.recompute(ev, now, u.SourceTime, u.Reason)
	}
	return nil
}

func validateMarkets(ms []MarketUpdate) error {
	for _, m := range ms {
		if !m.Type.Valid() {
			return buzzer.Errorf(buzzer.EINVALID, "unknown market type %q", m.Type)
		}
		switch m.Status {
		case Open, Suspended, Closed, Settled:
		default:
			return buzzer.Errorf(buzzer.EINVALID, "unknown market status %q", m.Status)
		}
		for _, s := range m.Selections {
			if s.ID == "" || (s.Price != 0 && (s.Price < buzzer.MinPrice || s.Price > buzzer.MaxPrice)) {
				return buzzer.Errorf(buzzer.EINVALID, "bad selection %q in market %s", s.ID, m.Type)
			}
		}
	}
	return nil
}

func (v *view) apply(u Update) {
	if u.InPlay != nil {
		b := *u.InPlay
		v.inPlay = &b
	}
	if u.Score != nil {
		s := *u.Score
		v.score = &s
	}
	if u.Ended {
		v.ended = true
	}
	if u.Full {
		keep := map[string]bool{}
		for _, mu := range u.Markets {
			keep[MarketID(u.EventID, mu.Type, mu.Line)] = true
		}
		for id := range v.markets {
			if !keep[id] {
				delete(v.markets, id)
			}
		}
	}
	if u.SuspendAll {
		for _, m := range v.markets {
			if m.Status == Open {
				m.Status = Suspended
			}
		}
	}
	for _, mu := range u.Markets {
		id := MarketID(u.EventID, mu.Type, mu.Line)
		m := v.markets[id]
		if m == nil {
			m = &Market{ID: id, Type: mu.Type, Line: mu.Line}
			v.markets[id] = m
		}
		m.Status = mu.Status
		for _, s := range mu.Selections {
			i := slices.IndexFunc(m.Selections, func(x Selection) bool { return x.ID == s.ID })
			if i < 0 {
				m.Selections = append(m.Selections, s)
				continue
			}
			if s.Price == 0 && s.Result != "" {
				s.Price = m.Selections[i].Price // settlements carry results, not prices
			}
			m.Selections[i] = s
		}
		sort.Slice(m.Selections, func(i, j int) bool { return selOrder(m.Selections[i].ID) < selOrder(m.Selections[j].ID) })
	}
}

func selOrder(id string) int {
	switch id {
	case Home:
		return 0
	case Draw:
		return 1
	case Away:
		return 2
	case Over:
		return 3
	case Under:
		return 4
	}
	return 5
}

func (e *Engine) trusted(p *providerState, now time.Time) bool {
	return p != nil && !p.silent && p.status == ProviderUp && now.Sub(p.lastSeen) <= e.cfg.SilenceTimeout
}

func (e *Engine) recomputeProvider(p *providerState, now time.Time, reason string) {
	ids := make([]string, 0, len(p.events))
	for id := range p.events {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		e.recompute(e.events[id], now, time.Time{}, reason)
	}
}

func (e *Engine) priority(ev *eventState) []string {
	if len(ev.info.Providers) > 0 {
		return ev.info.Providers
	}
	return e.cfg.Providers
}

// recompute derives the published state of ev from the trusted providers'
// views and publishes a delta for each difference, in a deterministic order.
func (e *Engine) recompute(ev *eventState, now, src time.Time, hint string) {
	driver := ""
	for _, name := range e.priority(ev) {
		if _, ok := ev.views[name]; ok && e.trusted(e.providers[name], now) {
			driver = name
			break
		}
	}
	info := ev.info
	info.Provider = driver
	if driver != "" {
		v := ev.views[driver]
		if v.inPlay != nil {
			info.InPlay = *v.inPlay
		}
		if v.score != nil {
			s := *v.score
			info.Score = &s
		}
		info.Ended = info.Ended || v.ended
	}
	if !sameInfo(info, ev.info) {
		ev.info = info
		e.emit(ev, Delta{Kind: DeltaEvent, Event: cloneInfo(info), SourceTime: src, At: now})
	}

	ids := make([]string, 0, len(ev.published))
	for id := range ev.published {
		ids = append(ids, id)
	}
	if driver != "" {
		for id := range ev.views[driver].markets {
			if _, ok := ev.published[id]; !ok {
				ids = append(ids, id)
			}
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		pub := ev.published[id]
		if pub != nil && pub.Status == Settled {
			continue // settlement is final here; resettlement is the wallet's business
		}
		if driver == "" {
			if pub.Status == Open {
				next := pub.clone()
				next.Status = Suspended
				e.publishMarket(ev, next, "provider_unavailable", src, now)
			}
			continue
		}
		dm := ev.views[driver].markets[id]
		if dm == nil {
			delete(ev.published, id)
			e.emit(ev, Delta{Kind: DeltaMarketRemoved, MarketID: id, Reason: "not_offered", SourceTime: src, At: now})
			continue
		}
		next := dm.clone()
		next.Provider = driver
		reason := hint
		if next.Status == Open {
			if missingPrice(next) {
				next.Status, reason = Suspended, "no_price"
			} else if e.diverges(ev, driver, next, now) {
				next.Status, reason = Suspended, "price_divergence"
			}
		}
		if pub != nil {
			next.Version = pub.Version
			if sameContent(pub, next) {
				continue
			}
		}
		e.publishMarket(ev, next, reason, src, now)
	}
}

func missingPrice(m *Market) bool {
	if len(m.Selections) == 0 {
		return true
	}
	for _, s := range m.Selections {
		if s.Price == 0 {
			return true
		}
	}
	return false
}

// diverges reports whether any other trusted provider quotes an open market
// with the same id at a price differing from m's beyond the threshold.
func (e *Engine) diverges(ev *eventState, driver string, m *Market, now time.Time) bool {
	if e.cfg.DivergenceBP < 0 {
		return false
	}
	for name, v := range ev.views {
		if name == driver || !e.trusted(e.providers[name], now) {
			continue
		}
		o := v.markets[m.ID]
		if o == nil || o.Status != Open {
			continue
		}
		for _, s := range m.Selections {
			os, ok := o.Selection(s.ID)
			if !ok || os.Price == 0 {
				continue
			}
			a, b := int64(s.Price), int64(os.Price)
			lo, diff := min(a, b), a-b
			if diff < 0 {
				diff = -diff
			}
			if diff*10000 > e.cfg.DivergenceBP*lo {
				return true
			}
		}
	}
	return false
}

func (e *Engine) publishMarket(ev *eventState, m *Market, reason string, src, now time.Time) {
	if m.Status == Open {
		reason = ""
	}
	m.Version = ev.seq + 1 // the number emit assigns
	ev.published[m.ID] = m
	e.emit(ev, Delta{Kind: DeltaMarket, Market: m.clone(), Reason: reason, SourceTime: src, At: now})
}

// Prune forgets ended events whose last change is before cutoff and
// returns how many it removed. Their final state was published already.
func (e *Engine) Prune(cutoff time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for id, ev := range e.events {
		if ev.info.Ended && ev.changed.Before(cutoff) {
			delete(e.events, id)
			for _, p := range e.providers {
				delete(p.events, id)
			}
			n++
		}
	}
	return n
}

func (e *Engine) emit(ev *eventState, d Delta) {
	ev.changed = d.At
	ev.seq++
	d.EventID = ev.info.EventID
	d.Seq = ev.seq
	e.cfg.Publisher.PublishDelta(d)
}

func sameInfo(a, b EventInfo) bool {
	if a.InPlay != b.InPlay || a.Ended != b.Ended || a.Provider != b.Provider {
		return false
	}
	if (a.Score == nil) != (b.Score == nil) {
		return false
	}
	return a.Score == nil || *a.Score == *b.Score
}

func cloneInfo(i EventInfo) *EventInfo {
	c := i
	if i.Score != nil {
		s := *i.Score
		c.Score = &s
	}
	c.Providers = append([]string(nil), i.Providers...)
	return &c
}

// Snapshot returns the event's published state and the sequence number of its
// last delta; a subscriber applies deltas with Seq > Snapshot.Seq after it.
func (e *Engine) Snapshot(eventID string) (Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events[eventID]
	if ev == nil {
		return Snapshot{}, buzzer.Errorf(buzzer.ENOTFOUND, "no event %q", eventID)
	}
	s := Snapshot{Event: *cloneInfo(ev.info), Seq: ev.seq, Markets: make([]Market, 0, len(ev.published))}
	for _, m := range ev.published {
		s.Markets = append(s.Markets, *m.clone())
	}
	sort.Slice(s.Markets, func(i, j int) bool { return s.Markets[i].ID < s.Markets[j].ID })
	return s, nil
}

// Events lists every event's info, ordered by start time then id.
func (e *Engine) Events() []EventInfo {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]EventInfo, 0, len(e.events))
	for _, ev := range e.events {
		out = append(out, *cloneInfo(ev.info))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].StartTime.Equal(out[j].StartTime) {
			return out[i].StartTime.Before(out[j].StartTime)
		}
		return out[i].EventID < out[j].EventID
	})
	return out
}

// Quote returns the live price of a selection, its market's status, the odds
// version (the event sequence of the market's last change) and the in-play
// flag. Unknown event, market or selection is ENOTFOUND. A quote on a market
// that is not open is returned as is: the caller refuses the bet.
func (e *Engine) Quote(eventID, marketID, selectionID string) (Quote, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events[eventID]
	if ev == nil {
		return Quote{}, buzzer.Errorf(buzzer.ENOTFOUND, "no event %q", eventID)
	}
	m := ev.published[marketID]
	if m == nil {
		return Quote{}, buzzer.Errorf(buzzer.ENOTFOUND, "no market %q in event %q", marketID, eventID)
	}
	s, ok := m.Selection(selectionID)
	if !ok {
		return Quote{}, buzzer.Errorf(buzzer.ENOTFOUND, "no selection %q in market %q", selectionID, marketID)
	}
	return Quote{Price: s.Price, Status: m.Status, Version: m.Version, InPlay: ev.info.InPlay}, nil
}

// ProviderHealth is the engine's view of one provider.
type ProviderHealth struct {
	Provider string
	Status   ProviderStatus // as last reported by its adapter
	Silent   bool
	LastSeen time.Time
	Trusted  bool
}

// Providers reports the health of every provider the engine has heard from.
func (e *Engine) Providers() []ProviderHealth {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Clock.Now()
	out := make([]ProviderHealth, 0, len(e.providers))
	for name, p := range e.providers {
		out = append(out, ProviderHealth{Provider: name, Status: p.status, Silent: p.silent, LastSeen: p.lastSeen, Trusted: e.trusted(p, now)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Provider < out[j].Provider })
	return out
}
