package geo

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// MaxChallengeTTL is the longest a challenge may stay valid: a captured
// token is worthless once its challenge is spent or five minutes old.
const MaxChallengeTTL = 5 * time.Minute

// Challenge is a one-time value the service issues for one player session;
// the provider embeds it in the geolocation token, binding the token to
// that session.
type Challenge struct {
	Value     string    `json:"challenge"`
	PlayerID  string    `json:"-"`
	SessionID string    `json:"-"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Consume outcomes a ChallengeStore reports; any other error means the
// store could not answer.
var (
	ErrChallengeUnknown = errors.New("geo: challenge unknown")
	ErrChallengeUsed    = errors.New("geo: challenge already used")
	ErrChallengeExpired = errors.New("geo: challenge expired")
)

// ChallengeStore keeps issued challenges until they expire.
type ChallengeStore interface {
	// Put records a newly issued challenge.
	Put(ctx context.Context, c Challenge) error
	// Consume marks the challenge used if it was issued for this player
	// session, is unexpired at now and unused; exactly one concurrent
	// caller can succeed. A challenge issued to another session is
	// reported as ErrChallengeUnknown.
	Consume(ctx context.Context, playerID, sessionID, value string, now time.Time) error
}

// MemoryChallenges is an in-process ChallengeStore. It keeps spent
// challenges until they expire so a replay is reported as such.
type MemoryChallenges struct {
	mu         sync.Mutex
	byValue    map[string]*memChallenge
	perSession map[string]int
	maxPerSess int
	maxTotal   int
	lastSweep  time.Time
}

type memChallenge struct {
	c    Challenge
	used bool
}

// NewMemoryChallenges returns a store that holds at most maxPerSession
// unspent challenges per player session and maxTotal overall (defaults 16 and
// 1,000,000 when zero); past either bound Put refuses with too_many.
func NewMemoryChallenges(maxPerSession, maxTotal int) *MemoryChallenges {
	if maxPerSession <= 0 {
		maxPerSession = 16
	}
	if maxTotal <= 0 {
		maxTotal = 1_000_000
	}
	return &MemoryChallenges{byValue: map[string]*memChallenge{}, perSession: map[string]int{}, maxPerSess: maxPerSession, maxTotal: maxTotal}
}

// Put implements ChallengeStore.
func (m *MemoryChallenges) Put(_ context.Context, c Challenge) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.IssuedAt.Sub(m.lastSweep) > time.Second || len(m.byValue) >= m.maxTotal {
		m.sweep(c.IssuedAt)
	}
	sk := sessionKey(c.PlayerID, c.SessionID)
	if m.perSession[sk] >= m.maxPerSess {
		return buzzer.Errorf(buzzer.ETOOMANY, "Too many outstanding location challenges for this session; use one or wait for them to expire.").WithReason("challenge_limit")
	}
	if len(m.byValue) >= m.maxTotal {
		return buzzer.Errorf(buzzer.ETOOMANY, "Too many outstanding location challenges; retry shortly.").WithReason("challenge_limit")
	}
	if _, dup := m.byValue[c.Value]; dup {
		return buzzer.Errorf(buzzer.EINTERNAL, "Challenge value collision.")
	}
	m.byValue[c.Value] = &memChallenge{c: c}
	m.perSession[sk]++
	return nil
}

// Consume implements ChallengeStore.
func (m *MemoryChallenges) Consume(_ context.Context, playerID, sessionID, value string, now time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.byValue[value]
	if !ok || e.c.PlayerID != playerID || e.c.SessionID != sessionID {
		return ErrChallengeUnknown
	}
	if !now.Before(e.c.ExpiresAt) {
		return ErrChallengeExpired
	}
	if e.used {
		return ErrChallengeUsed
	}
	e.used = true
	// A spent challenge no longer counts against the session's limit; it
	// stays only so a replay is reported as one.
	m.release(sessionKey(playerID, sessionID))
	return nil
}

// sweep drops expired challenges. Caller holds mu.
func (m *MemoryChallenges) sweep(now time.Time) {
	m.lastSweep = now
	for v, e := range m.byValue {
		if !now.Before(e.c.ExpiresAt) {
			delete(m.byValue, v)
			if !e.used {
				m.release(sessionKey(e.c.PlayerID, e.c.SessionID))
			}
		}
	}
}

// release drops one outstanding challenge from a session's count. Caller
// holds mu.
func (m *MemoryChallenges) release(sk string) {
	if m.perSession[sk]--; m.perSession[sk] <= 0 {
		delete(m.perSession, sk)
	}
}

func sessionKey(playerID, sessionID string) string { return playerID + "\x00" + sessionID }
