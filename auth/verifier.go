package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"

	"github.com/buzzer-bet/buzzer"
)

// Verifier checks bearer tokens against one issuer's JWKS. It is safe for
// concurrent use. Its background JWKS refreshes are owned by it and stopped
// by Close.
type Verifier struct {
	cfg    Config
	clock  buzzer.Clock
	client *http.Client
	cache  *tokenCache

	// keys is the current snapshot; it is replaced whole, never mutated.
	keys atomic.Pointer[keySet]
	// fetches dedupes concurrent JWKS fetches (every caller joins one).
	fetches singleflight.Group
	// lastAttemptNs mirrors lastAttempt for the lock-free background check.
	lastAttemptNs atomic.Int64
	bgRunning     atomic.Bool
	// Counters for Stats.
	cacheHits, fetchCount, fetchFailures atomic.Uint64

	// mu guards lastAttempt, lastErr and closed, and orders wg.Add before
	// Close's wg.Wait.
	mu          sync.Mutex
	lastAttempt time.Time
	lastErr     error
	closed      bool
	wg          sync.WaitGroup
	ctx         context.Context
	cancel      context.CancelFunc
}

var errClosed = errors.New("auth: verifier closed")

// NewVerifier builds a verifier; keys are loaded lazily or by Warm. A nil
// clock is the system clock; a nil client gets one bounded by FetchTimeout
// that follows redirects only to https.
func NewVerifier(cfg Config, clock buzzer.Clock, client *http.Client) (*Verifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.AllowedTypes = slices.Clone(cfg.AllowedTypes)
	if clock == nil {
		clock = buzzer.SystemClock{}
	}
	if client == nil {
		client = &http.Client{
			Timeout: cfg.FetchTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 3 || req.URL.Scheme != "https" {
					return errors.New("jwks: redirect refused")
				}
				return nil
			},
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Verifier{
		cfg:    cfg,
		clock:  clock,
		client: client,
		cache:  newTokenCache(cfg.CacheSize),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// Close stops background refreshes and waits for them. Verify keeps working
// on the keys already loaded (requests still draining need it).
func (v *Verifier) Close() {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.cancel()
	v.wg.Wait()
}

// Warm loads the keys if they are not fresh, and reports whether the
// verifier can verify: readiness waits on it.
func (v *Verifier) Warm(ctx context.Context) error {
	now := v.clock.Now()
	if ks := v.keys.Load(); ks != nil && now.Sub(ks.fetchedAt) < v.cfg.RefreshInterval {
		return nil
	}
	ks, err := v.refresh(ctx)
	if ks != nil && now.Sub(ks.fetchedAt) <= v.cfg.KeysMaxStale {
		return nil
	}
	return unavailable(err)
}

func unavailable(cause error) error {
	return buzzer.Wrap(cause, buzzer.EUNAVAILABLE, "Token signing keys are unavailable; try again later.").WithReason(ReasonJWKSUnavailable)
}

// Verify checks token and returns the principal it speaks for. Every
// rejection is EUNAUTHORIZED with a reason; EUNAVAILABLE means the keys
// cannot be trusted any more (fail closed).
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	// The size check comes before anything looks inside the token.
	if len(token) > v.cfg.MaxTokenBytes {
		return Principal{}, reject(ReasonTooLarge, "The token is too large.")
	}
	now := v.clock.Now()
	ks, err := v.usableKeys(ctx, now)
	if err != nil {
		return Principal{}, err
	}
	var sum [32]byte
	if v.cache != nil {
		sum = sha256.Sum256([]byte(token))
		if p, ok := v.cache.get(sum, now, ks); ok {
			v.cacheHits.Add(1)
			p.Roles = slices.Clone(p.Roles)
			return p, nil
		}
	}
	p, key, until, err := v.verify(ctx, token, now, ks)
	if err != nil {
		return Principal{}, err
	}
	v.cache.put(sum, cacheEntry{p: p, key: key, until: until})
	p.Roles = slices.Clone(p.Roles)
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, token string, now time.Time, ks *keySet) (Principal, *verifyKey, time.Time, error) {
	var zero Principal
	malformed := reject(ReasonMalformed, "The token is malformed.")
	hs, ps, ss, ok := splitToken(token)
	if !ok {
		return zero, nil, time.Time{}, malformed
	}
	// The header is judged first, so an unsigned ("none") token is named
	// for what it is.
	h, err := parseHeader(hs, v.cfg.AllowedTypes)
	if err != nil {
		return zero, nil, time.Time{}, err
	}
	// One spelling per token: padding, stray characters or non-zero trailing
	// bits are refused rather than normalised.
	if ps == "" || ss == "" {
		return zero, nil, time.Time{}, malformed
	}
	if _, err := b64.DecodeString(ps); err != nil {
		return zero, nil, time.Time{}, malformed
	}
	if _, err := b64.DecodeString(ss); err != nil {
		return zero, nil, time.Time{}, malformed
	}
	key := ks.keys[h.kid]
	if key == nil && len(h.kid) <= maxKidBytes {
		// A kid we do not know may be a freshly rotated key: look once,
		// within the refresh rate limit, shared by every caller.
		if fresh, _ := v.refresh(ctx); fresh != nil && now.Sub(fresh.fetchedAt) <= v.cfg.KeysMaxStale {
			key = fresh.keys[h.kid]
		}
	}
	if key == nil {
		return zero, nil, time.Time{}, reject(ReasonUnknownKey, "The token's signing key is not known.")
	}
	if string(key.alg) != h.alg {
		return zero, nil, time.Time{}, reject(ReasonAlgMismatch, "The token's signing algorithm does not match its key.")
	}
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{key.alg})
	if err != nil {
		return zero, nil, time.Time{}, buzzer.Wrap(err, buzzer.EUNAUTHORIZED, "The token is malformed.").WithReason(ReasonMalformed)
	}
	payload, err := jws.Verify(key.pub)
	if err != nil {
		return zero, nil, time.Time{}, reject(ReasonBadSignature, "The token signature is not valid.")
	}
	c, err := parseClaims(payload)
	if err != nil {
		return zero, nil, time.Time{}, reject(ReasonMalformedClaims, "The token claims are malformed.")
	}
	leeway := v.cfg.Leeway
	switch {
	case !c.hasExp:
		return zero, nil, time.Time{}, reject(ReasonMissingExp, "The token has no expiry.")
	case !now.Before(c.exp.Add(leeway)):
		return zero, nil, time.Time{}, reject(ReasonExpired, "The token has expired.")
	case c.hasNbf && now.Add(leeway).Before(c.nbf):
		return zero, nil, time.Time{}, reject(ReasonNotYetValid, "The token is not valid yet.")
	case c.hasIat && c.iat.After(now.Add(leeway)):
		return zero, nil, time.Time{}, reject(ReasonNotYetValid, "The token is not valid yet.")
	case c.iss != v.cfg.Issuer:
		return zero, nil, time.Time{}, reject(ReasonBadIssuer, "The token was issued by an untrusted issuer.")
	case !slices.Contains(c.aud, v.cfg.Audience):
		return zero, nil, time.Time{}, reject(ReasonBadAudience, "The token is not meant for this service.")
	case c.sub == "":
		return zero, nil, time.Time{}, reject(ReasonMissingSubject, "The token names no subject.")
	case v.cfg.RequiredRole != "" && !slices.Contains(c.roles, v.cfg.RequiredRole):
		return zero, nil, time.Time{}, reject(ReasonMissingRole, "The token does not carry the required role.")
	}
	p := Principal{
		Subject:      c.sub,
		Jurisdiction: c.jurisdiction,
		Roles:        c.roles,
		TokenID:      c.jti,
		ExpiresAt:    c.exp,
	}
	return p, key, c.exp.Add(leeway), nil
}

// usableKeys returns keys that may still verify at now, fetching them when
// there are none or they are past KeysMaxStale, and starting a background
// refresh when they are merely old.
func (v *Verifier) usableKeys(ctx context.Context, now time.Time) (*keySet, error) {
	if ks := v.keys.Load(); ks != nil {
		age := now.Sub(ks.fetchedAt)
		if age <= v.cfg.KeysMaxStale {
			if age >= v.cfg.RefreshInterval {
				v.refreshInBackground(now)
			}
			return ks, nil
		}
	}
	ks, err := v.refresh(ctx)
	if ks != nil && now.Sub(ks.fetchedAt) <= v.cfg.KeysMaxStale {
		return ks, nil
	}
	if err == nil {
		err = errors.New("jwks: keys are stale")
	}
	return nil, unavailable(err)
}

// refreshInBackground starts one refresh unless one is running or the last
// attempt is too recent; requests meanwhile verify with the keys they have.
func (v *Verifier) refreshInBackground(now time.Time) {
	if last := v.lastAttemptNs.Load(); last != 0 && now.Sub(time.Unix(0, last)) < v.cfg.RefreshMinInterval {
		return
	}
	if !v.bgRunning.CompareAndSwap(false, true) {
		return
	}
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		v.bgRunning.Store(false)
		return
	}
	v.wg.Add(1)
	v.mu.Unlock()
	go func() {
		defer v.wg.Done()
		defer v.bgRunning.Store(false)
		_, _, _ = v.fetches.Do("jwks", func() (any, error) { return nil, v.fetch() })
	}()
}

// refresh fetches the JWKS, shared by concurrent callers, and returns the
// keys current afterwards with the fetch's error. The caller stops waiting
// when ctx ends; the fetch itself is bounded by FetchTimeout.
func (v *Verifier) refresh(ctx context.Context) (*keySet, error) {
	ch := v.fetches.DoChan("jwks", func() (any, error) { return nil, v.fetch() })
	select {
	case r := <-ch:
		return v.keys.Load(), r.Err
	case <-ctx.Done():
		return v.keys.Load(), ctx.Err()
	}
}

// fetch loads the JWKS at most once per RefreshMinInterval; a call inside
// that window returns the previous attempt's outcome without any I/O.
func (v *Verifier) fetch() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return errClosed
	}
	now := v.clock.Now()
	if !v.lastAttempt.IsZero() && now.Sub(v.lastAttempt) < v.cfg.RefreshMinInterval {
		err := v.lastErr
		v.mu.Unlock()
		return err
	}
	v.lastAttempt = now
	v.lastAttemptNs.Store(now.UnixNano())
	v.wg.Add(1)
	v.mu.Unlock()
	defer v.wg.Done()

	ctx, cancel := context.WithTimeout(v.ctx, v.cfg.FetchTimeout)
	defer cancel()
	keys, err := v.loadJWKS(ctx)
	v.fetchCount.Add(1)

	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastErr = err
	if err != nil {
		v.fetchFailures.Add(1)
		return err
	}
	// Keys that did not change keep their identity, so tokens cached under
	// them stay cached; a removed or replaced key drops its tokens at once.
	if old := v.keys.Load(); old != nil {
		for kid, k := range keys {
			if o := old.keys[kid]; o != nil && o.same(k) {
				keys[kid] = o
			}
		}
	}
	v.keys.Store(&keySet{keys: keys, fetchedAt: now})
	return nil
}

// Stats are the verifier's counters since it was built, for metrics.
type Stats struct {
	CacheHits     uint64 // tokens answered from the verified-token cache
	Fetches       uint64 // JWKS loads attempted
	FetchFailures uint64 // JWKS loads that failed (unreachable, bad status, no usable key)
	// KeysAge is how long ago the current keys were loaded (0 if never).
	KeysAge time.Duration
}

// Stats returns the current counters.
func (v *Verifier) Stats() Stats {
	s := Stats{
		CacheHits:     v.cacheHits.Load(),
		Fetches:       v.fetchCount.Load(),
		FetchFailures: v.fetchFailures.Load(),
	}
	if ks := v.keys.Load(); ks != nil {
		s.KeysAge = v.clock.Now().Sub(ks.fetchedAt)
	}
	return s
}
