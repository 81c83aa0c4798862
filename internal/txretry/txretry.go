// Package txretry is the one retry mechanism for SERIALIZABLE transactions in
// every engine package: it reruns a transaction function when the engine says
// the attempt lost a serialization race, with bounded, jittered exponential
// backoff. It must never retry an error that may have committed (such as a
// connection lost during COMMIT): engines classify errors, this package only
// loops.
package txretry

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Policy bounds the retries. The zero value is not valid; use DefaultPolicy.
type Policy struct {
	MaxAttempts int           // total attempts including the first; >= 1
	BaseDelay   time.Duration // backoff before the second attempt
	MaxDelay    time.Duration // backoff cap
}

// DefaultPolicy suits short OLTP transactions under contention: up to 20
// attempts, 1 ms growing to 100 ms, full jitter.
func DefaultPolicy() Policy {
	return Policy{MaxAttempts: 20, BaseDelay: time.Millisecond, MaxDelay: 100 * time.Millisecond}
}

// Validate reports a clear error naming the bad field.
func (p Policy) Validate() error {
	switch {
	case p.MaxAttempts < 1 || p.MaxAttempts > 1000:
		return buzzer.Errorf(buzzer.EINVALID, "tx retry max_attempts must be 1..1000, got %d", p.MaxAttempts)
	case p.BaseDelay <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "tx retry base_delay must be > 0")
	case p.MaxDelay < p.BaseDelay:
		return buzzer.Errorf(buzzer.EINVALID, "tx retry max_delay must be >= base_delay")
	}
	return nil
}

// Observer is told about every retried attempt (for metrics); may be nil.
type Observer func(attempt int, err error)

// Do runs fn until it succeeds, returns an error that retryable rejects, the
// attempts run out, or ctx ends. The error of the last attempt is returned,
// wrapped as EUNAVAILABLE when attempts ran out, so a caller never mistakes
// exhausted contention for a bad request.
func Do(ctx context.Context, p Policy, retryable func(error) bool, obs Observer, fn func(attempt int) error) error {
	delay := p.BaseDelay
	for attempt := 1; ; attempt++ {
		err := fn(attempt)
		if err == nil || !retryable(err) {
			return err
		}
		if attempt >= p.MaxAttempts {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "The store is too contended right now; retry later.")
		}
		if obs != nil {
			obs(attempt, err)
		}
		// Full jitter: sleep uniformly in [0, delay) so retrying transactions
		// spread out instead of colliding again in lockstep.
		sleep := time.Duration(rand.Int64N(int64(delay)) + 1)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "The operation did not finish in time.")
		case <-t.C:
		}
		delay *= 2
		if delay > p.MaxDelay {
			delay = p.MaxDelay
		}
	}
}
