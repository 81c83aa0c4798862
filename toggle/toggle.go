// Package toggle holds the runtime feature toggles operators flip during a
// live game without a deploy, such as pausing bet acceptance or in-play
// betting. Every node follows one shared store, so a flip reaches every node
// within the store's watch latency, and every flip records who made it, when
// and why. It owns the toggle names, their defaults and the local view;
// it never reaches an engine itself (Store does).
package toggle

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Name names a toggle. Only the names in Known exist: a flip of any other is
// refused, so a typo never silently does nothing.
type Name string

const (
	// BetsAccept off pauses every bet placement (503 betting_paused); bets
	// already accepted settle as usual.
	BetsAccept Name = "bets.accept"
	// BetsInPlay off refuses bets on in-play markets only.
	BetsInPlay Name = "bets.in_play"
)

// Definition is a known toggle with its default and meaning.
type Definition struct {
	Name    Name   `json:"name"`
	Default bool   `json:"default"`
	Help    string `json:"help"`
}

// Known lists every toggle.
func Known() []Definition {
	return []Definition{
		{BetsAccept, true, "accept bet placements"},
		{BetsInPlay, true, "accept bets on in-play markets"},
	}
}

func definition(n Name) (Definition, bool) {
	for _, d := range Known() {
		if d.Name == n {
			return d, true
		}
	}
	return Definition{}, false
}

// State is a toggle's value with the record of its last flip (zero
// ChangedAt and Revision while it has its default).
type State struct {
	Name      Name      `json:"name"`
	Enabled   bool      `json:"enabled"`
	ChangedBy string    `json:"changed_by,omitempty"`
	ChangedAt time.Time `json:"changed_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// Revision is the store's revision of the flip (ordering across nodes).
	Revision uint64 `json:"revision,omitempty"`
}

// Store keeps the shared toggle states. Put stores a flip and returns it
// with its revision. Watch calls f for every stored state (those present at
// the start first, then each later flip in order), calls ready once the
// present ones were delivered, and returns when ctx ends or the store fails.
type Store interface {
	Put(ctx context.Context, s State) (State, error)
	Watch(ctx context.Context, f func(State), ready func()) error
}

// Set is a node's view of the toggles, following a Store.
type Set struct {
	store Store
	clock buzzer.Clock
	mu    sync.RWMutex
	state map[Name]State
	ready chan struct{}
	once  sync.Once
}

// NewSet returns a Set holding the defaults until Run has loaded the store.
func NewSet(store Store, clock buzzer.Clock) *Set {
	s := &Set{store: store, clock: clock, state: map[Name]State{}, ready: make(chan struct{})}
	for _, d := range Known() {
		s.state[d.Name] = State{Name: d.Name, Enabled: d.Default}
	}
	return s
}

// Run follows the store until ctx ends, applying every flip in revision
// order. A state for an unknown name (written by a newer release) is kept
// out of the view.
func (s *Set) Run(ctx context.Context) error {
	return s.store.Watch(ctx, s.apply, func() { s.once.Do(func() { close(s.ready) }) })
}

func (s *Set) apply(st State) {
	if _, ok := definition(st.Name); !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.state[st.Name]; cur.Revision > st.Revision {
		return
	}
	s.state[st.Name] = st
}

// Loaded is closed once the stored states were read.
func (s *Set) Loaded() <-chan struct{} { return s.ready }

// Enabled reports a toggle's current value (false for an unknown name). A
// nil Set, as in a part built without toggles, answers every default.
func (s *Set) Enabled(n Name) bool {
	if s == nil {
		d, _ := definition(n)
		return d.Default
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state[n].Enabled
}

// List returns every toggle's state in name order.
func (s *Set) List() []State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]State, 0, len(s.state))
	for _, st := range s.state {
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b State) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Flip stores a new value for n. by names the operator; reason is required
// (1..200 characters) so the record says why. The local view takes the
// stored state at once; other nodes take it from the store's watch.
func (s *Set) Flip(ctx context.Context, n Name, enabled bool, by, reason string) (State, error) {
	if _, ok := definition(n); !ok {
		return State{}, buzzer.Errorf(buzzer.ENOTFOUND, "There is no toggle %q.", n).WithReason("unknown_toggle")
	}
	if reason == "" || len(reason) > 200 {
		return State{}, buzzer.Errorf(buzzer.EINVALID, "A toggle flip needs a reason of 1 to 200 characters.")
	}
	if by == "" {
		return State{}, buzzer.Errorf(buzzer.EINVALID, "A toggle flip needs the operator who made it.")
	}
	st, err := s.store.Put(ctx, State{Name: n, Enabled: enabled, ChangedBy: by, ChangedAt: s.clock.Now().UTC(), Reason: reason})
	if err != nil {
		return State{}, err
	}
	s.apply(st)
	return st, nil
}
