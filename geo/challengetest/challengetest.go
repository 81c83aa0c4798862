// Package challengetest is the conformance suite every geo.ChallengeStore
// passes: the in-process store and the Redis one behave the same.
package challengetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

// New returns an empty store holding at most maxPerSession unspent
// challenges per player session.
type New func(t *testing.T, maxPerSession int) geo.ChallengeStore

func challenge(player, session, value string, issued time.Time) geo.Challenge {
	return geo.Challenge{Value: value, PlayerID: player, SessionID: session, IssuedAt: issued, ExpiresAt: issued.Add(2 * time.Minute)}
}

// Run runs the suite against stores made by newStore.
func Run(t *testing.T, newStore New) {
	ctx := context.Background()
	// Now, not a fixed date: a store backed by a server (Redis) expires
	// keys by the wall clock.
	t0 := time.Now().Truncate(time.Millisecond)
	t.Run("spent once, by its own session only", func(t *testing.T) {
		s := newStore(t, 0)
		if err := s.Put(ctx, challenge("alice", "s1", "v1", t0)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			player, session, value string
			want                   error
		}{
			{"alice", "s2", "v1", geo.ErrChallengeUnknown},
			{"bob", "s1", "v1", geo.ErrChallengeUnknown},
			{"alice", "s1", "never-issued", geo.ErrChallengeUnknown},
			{"alice", "s1", "v1", nil},
			{"alice", "s1", "v1", geo.ErrChallengeUsed},
		} {
			if err := s.Consume(ctx, tc.player, tc.session, tc.value, t0.Add(time.Second)); !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("consume %s/%s/%s: %v, want %v", tc.player, tc.session, tc.value, err, tc.want)
			}
		}
	})
	t.Run("expired", func(t *testing.T) {
		s := newStore(t, 0)
		c := challenge("alice", "s1", "v-exp", t0)
		if err := s.Put(ctx, c); err != nil {
			t.Fatal(err)
		}
		if err := s.Consume(ctx, "alice", "s1", "v-exp", c.ExpiresAt); !errors.Is(err, geo.ErrChallengeExpired) {
			t.Fatalf("consume at expiry: %v, want expired", err)
		}
	})
	t.Run("per-session limit counts unspent, unexpired challenges", func(t *testing.T) {
		s := newStore(t, 2)
		for i := 0; i < 2; i++ {
			if err := s.Put(ctx, challenge("alice", "s1", fmt.Sprint("l", i), t0)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Put(ctx, challenge("alice", "s1", "l2", t0)); buzzer.ErrorCode(err) != buzzer.ETOOMANY {
			t.Fatalf("third outstanding challenge: %v, want too_many", err)
		}
		if err := s.Put(ctx, challenge("alice", "s2", "other-session", t0)); err != nil {
			t.Fatalf("another session is not limited by the first: %v", err)
		}
		if err := s.Consume(ctx, "alice", "s1", "l0", t0.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, challenge("alice", "s1", "l3", t0.Add(time.Second))); err != nil {
			t.Fatalf("a spent challenge still counted: %v", err)
		}
		// Once the outstanding ones have expired, the session may ask again.
		if err := s.Put(ctx, challenge("alice", "s1", "l4", t0.Add(3*time.Minute))); err != nil {
			t.Fatalf("expired challenges still counted: %v", err)
		}
	})
	t.Run("concurrent spenders: exactly one wins", func(t *testing.T) {
		s := newStore(t, 0)
		if err := s.Put(ctx, challenge("alice", "s1", "race", t0)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, used := 0, 0
		for i := 0; i < 32; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := s.Consume(ctx, "alice", "s1", "race", t0.Add(time.Second))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.Is(err, geo.ErrChallengeUsed):
					used++
				default:
					t.Errorf("consume: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 || used != 31 {
			t.Fatalf("%d spent it, %d were told it was used; want 1 and 31", wins, used)
		}
	})
}
