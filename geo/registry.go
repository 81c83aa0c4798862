package geo

import (
	"context"
	"sync"
)

// PlayerStatus is what the operator's responsible-gaming registry says
// about a player in a jurisdiction.
type PlayerStatus struct {
	SelfExcluded bool `json:"self_excluded"`
	// Consented is true once the player has given the jurisdiction's
	// required consent to location checks and wagering terms.
	Consented bool `json:"consented"`
}

// Registry answers self-exclusion and consent questions. An error means
// the registry could not answer; the service then fails closed.
type Registry interface {
	PlayerStatus(ctx context.Context, playerID string, j Jurisdiction) (PlayerStatus, error)
}

// DevRegistry is the simulated in-process registry used in dev mode: every
// player has consented unless withdrawn, and the listed players are
// self-excluded in every jurisdiction.
type DevRegistry struct {
	mu        sync.Mutex
	excluded  map[string]bool
	noConsent map[string]bool
}

// NewDevRegistry returns a DevRegistry with the given players
// self-excluded.
func NewDevRegistry(selfExcluded ...string) *DevRegistry {
	r := &DevRegistry{excluded: map[string]bool{}, noConsent: map[string]bool{}}
	for _, p := range selfExcluded {
		r.excluded[p] = true
	}
	return r
}

// SetSelfExcluded adds or removes a player's self-exclusion.
func (r *DevRegistry) SetSelfExcluded(playerID string, excluded bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if excluded {
		r.excluded[playerID] = true
	} else {
		delete(r.excluded, playerID)
	}
}

// SetConsent records whether the player has consented.
func (r *DevRegistry) SetConsent(playerID string, consented bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if consented {
		delete(r.noConsent, playerID)
	} else {
		r.noConsent[playerID] = true
	}
}

// PlayerStatus implements Registry.
func (r *DevRegistry) PlayerStatus(ctx context.Context, playerID string, _ Jurisdiction) (PlayerStatus, error) {
	if err := ctx.Err(); err != nil {
		return PlayerStatus{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return PlayerStatus{SelfExcluded: r.excluded[playerID], Consented: !r.noConsent[playerID]}, nil
}
