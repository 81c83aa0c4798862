package odds

import (
	"sync"

	"github.com/buzzer-bet/buzzer"
)

// EventLink maps one provider's event to the canonical event. The same match
// has one link per provider, each with that provider's own ids.
type EventLink struct {
	Provider        string `json:"provider" yaml:"provider"`
	ProviderEventID string `json:"provider_event_id" yaml:"provider_event_id"`
	EventID         string `json:"event_id" yaml:"event_id"`
	// Home and Away identify the participants as the provider names them (a
	// runner id, a competitor id or a team name), for providers whose
	// selections are participants rather than fixed outcome codes.
	Home string `json:"home,omitempty" yaml:"home,omitempty"`
	Away string `json:"away,omitempty" yaml:"away,omitempty"`
}

// Mapper resolves a provider's event id to its link.
type Mapper interface {
	Link(provider, providerEventID string) (EventLink, bool)
}

// MappingTable is the configured mapping of provider event ids to canonical
// events. It is safe for concurrent use; links can be added while adapters run.
type MappingTable struct {
	mu    sync.RWMutex
	links map[[2]string]EventLink
}

var _ Mapper = (*MappingTable)(nil)

// NewMappingTable returns a table holding links.
func NewMappingTable(links ...EventLink) (*MappingTable, error) {
	t := &MappingTable{links: map[[2]string]EventLink{}}
	for _, l := range links {
		if err := t.Add(l); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// Add adds or replaces a link.
func (t *MappingTable) Add(l EventLink) error {
	if l.Provider == "" || l.ProviderEventID == "" || l.EventID == "" {
		return buzzer.Errorf(buzzer.EINVALID, "event link needs provider, provider_event_id and event_id")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.links[[2]string{l.Provider, l.ProviderEventID}] = l
	return nil
}

// Link returns the link of the provider's event, if configured.
func (t *MappingTable) Link(provider, providerEventID string) (EventLink, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l, ok := t.links[[2]string{provider, providerEventID}]
	return l, ok
}
