package wallettest

import (
	"context"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// Clock is a concurrency-safe settable clock.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Sleep is a wallet Deps.Sleep that advances the clock instead of waiting.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.Advance(d)
	return nil
}

// Prices is a settable wallet.PriceSource.
type Prices struct {
	mu sync.Mutex
	q  map[[3]string]wallet.Quote
}

var _ wallet.PriceSource = (*Prices)(nil)

// NewPrices returns an empty source.
func NewPrices() *Prices { return &Prices{q: map[[3]string]wallet.Quote{}} }

// Set stores q (keyed by its event, market and selection).
func (p *Prices) Set(q wallet.Quote) {
	p.mu.Lock()
	p.q[[3]string{q.EventID, q.MarketID, q.SelectionID}] = q
	p.mu.Unlock()
}

// Open sets an open pre-match selection at price with odds version 1.
func (p *Prices) Open(event, market, selection string, price buzzer.Price) {
	p.Set(wallet.Quote{EventID: event, MarketID: market, SelectionID: selection, Price: price, Status: wallet.MarketOpen, OddsVersion: 1, FeedPosition: "1"})
}

// Update changes a selection's price (bumping its odds version) or status.
func (p *Prices) Update(event, market, selection string, fn func(*wallet.Quote)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := [3]string{event, market, selection}
	q := p.q[k]
	fn(&q)
	q.OddsVersion++
	p.q[k] = q
}

// Quote implements wallet.PriceSource.
func (p *Prices) Quote(_ context.Context, event, market, selection string) (wallet.Quote, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q, ok := p.q[[3]string{event, market, selection}]
	if !ok {
		return wallet.Quote{}, buzzer.Errorf(buzzer.ENOTFOUND, "no such selection")
	}
	return q, nil
}

// IDs returns deterministic, unique IDs ("id-000001", ...), safe for
// concurrent use.
func IDs(prefix string) func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return prefix + itoa6(n)
	}
}

func itoa6(n int) string {
	b := []byte("000000000")
	for i := len(b) - 1; i >= 0 && n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}
