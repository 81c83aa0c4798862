// Package buzzer holds the vocabulary shared by every part of Buzzer: the error
// model, money and identifiers, and the injected clock. It imports no engine and
// no transport; the domain packages (wallet, odds, table, rng, geo, audit) build
// on it, engine packages implement the interfaces those domains declare, and
// cmd/buzzer wires everything by hand.
package buzzer

import "time"

// Clock is the injected source of time, so settlement, leases, timeouts and
// expiry are deterministic in tests.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// FixedClock is a settable clock for tests. It is not safe for concurrent
// Set calls racing with Now; tests set it from one goroutine.
type FixedClock struct{ T time.Time }

// Now returns the clock's time.
func (c *FixedClock) Now() time.Time { return c.T }

// Advance moves the clock forward by d.
func (c *FixedClock) Advance(d time.Duration) { c.T = c.T.Add(d) }
