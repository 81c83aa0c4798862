package georegistry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

var _ geo.KeySource = (*JWKS)(nil)

// JWKSConfig configures a JWKS key source.
type JWKSConfig struct {
	// URL of the provider's JWKS document. Required; https, or http on
	// loopback.
	URL string
	// HTTPClient defaults to a client with Timeout.
	HTTPClient *http.Client
	Timeout    time.Duration // default 2s
	// RefreshInterval is how long a fetched set is used before it is
	// fetched again. Default 5m.
	RefreshInterval time.Duration
	// MaxStale is how long past its fetch a set may still be used while the
	// endpoint cannot be reached; after that the source fails (and geo
	// fails closed). Default 1h; it must not be less than RefreshInterval.
	MaxStale time.Duration
	// RetryBackoff is the least time between fetch attempts after a
	// failure, so an unreachable endpoint is not called on every request.
	// Default 5s.
	RetryBackoff time.Duration
	Clock        buzzer.Clock // default buzzer.SystemClock
}

// JWKS fetches and caches the provider's key set. It is safe for
// concurrent use; one fetch runs at a time.
//
// Lock order: fetchMu before mu.
type JWKS struct {
	cfg JWKSConfig
	url *url.URL
	hc  *http.Client

	fetchMu sync.Mutex

	mu        sync.Mutex
	keys      *geo.ProviderKeys
	fetchedAt time.Time
	lastErr   error
	lastTry   time.Time
}

// NewJWKS validates cfg and returns a JWKS source; it fetches lazily.
func NewJWKS(cfg JWKSConfig) (*JWKS, error) {
	u, err := parseServiceURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("georegistry jwks: %w", err)
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = 5 * time.Minute
	}
	if cfg.MaxStale == 0 {
		cfg.MaxStale = time.Hour
	}
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = 5 * time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = buzzer.SystemClock{}
	}
	if cfg.RefreshInterval < 0 || cfg.MaxStale < cfg.RefreshInterval || cfg.RetryBackoff < 0 {
		return nil, errors.New("georegistry jwks: need 0 < RefreshInterval <= MaxStale and RetryBackoff >= 0")
	}
	return &JWKS{cfg: cfg, url: u, hc: httpClient(cfg.HTTPClient, cfg.Timeout)}, nil
}

// ProviderKeys implements geo.KeySource.
func (j *JWKS) ProviderKeys(ctx context.Context) (*geo.ProviderKeys, error) {
	if k, ok := j.fresh(); ok {
		return k, nil
	}
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	if k, ok := j.fresh(); ok { // another caller fetched while we waited
		return k, nil
	}
	now := j.cfg.Clock.Now()
	j.mu.Lock()
	backoff := j.lastErr != nil && now.Sub(j.lastTry) < j.cfg.RetryBackoff
	j.mu.Unlock()
	var err error
	if !backoff {
		var keys *geo.ProviderKeys
		keys, err = j.fetch(ctx)
		j.mu.Lock()
		j.lastTry = now
		j.lastErr = err
		if err == nil {
			j.keys, j.fetchedAt = keys, now
		}
		j.mu.Unlock()
		if err == nil {
			return keys, nil
		}
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.keys != nil && now.Sub(j.fetchedAt) < j.cfg.MaxStale {
		return j.keys, nil
	}
	if err == nil {
		err = j.lastErr
	}
	return nil, fmt.Errorf("georegistry jwks: no usable key set: %w", err)
}

func (j *JWKS) fresh() (*geo.ProviderKeys, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.keys != nil && j.cfg.Clock.Now().Sub(j.fetchedAt) < j.cfg.RefreshInterval {
		return j.keys, true
	}
	return nil, false
}

func (j *JWKS) fetch(ctx context.Context) (*geo.ProviderKeys, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	body, err := do(j.hc, req)
	if err != nil {
		return nil, err
	}
	return geo.ParseJWKS(body)
}
