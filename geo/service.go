package geo

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// ReasonUnavailable is the reason of every fail-closed denial.
const ReasonUnavailable = "compliance_unavailable"

// ReasonRecheck is the reason for a fix too close to a boundary: the client
// should geolocate again (a better fix, or after moving away).
const ReasonRecheck = "recheck"

// Config tunes the compliance checks. Zero fields take the defaults named
// on them; Validate reports values that would weaken a check.
type Config struct {
	// Jurisdictions the operator is licensed in; a fix elsewhere is denied.
	// Required, and each must exist in the boundaries.
	Jurisdictions []Jurisdiction
	// Issuer, when set, must equal the token's iss.
	Issuer string

	MaxTokenBytes    int           // default 8192
	MaxTokenAge      time.Duration // now - iat; default 2m
	MaxTokenLifetime time.Duration // exp - iat; default 10m
	ClockSkew        time.Duration // tolerated on iat/exp; default 5s, at most 1m
	ChallengeTTL     time.Duration // default and maximum MaxChallengeTTL (5m)

	// BoundaryBufferM denies (reason "recheck") fixes whose distance to the
	// nearest boundary is less than this plus the fix's own accuracy.
	// Default 500 m; see boundaries/PROVENANCE.md for why not less.
	BoundaryBufferM float64
	// MaxGPSAccuracyM denies fixes whose accuracy radius is larger.
	// Default 100 m.
	MaxGPSAccuracyM float64
	// MaxIPDistanceM denies tokens whose device IP locates farther than this
	// from the GPS fix. Default 150 km: IP geolocation is city-level at best
	// and mobile carriers egress far from the handset.
	MaxIPDistanceM float64
	// HomeMCCs are the mobile country codes of the licensed country; a token
	// whose reported cell towers are all foreign is denied. Default the US
	// codes 310-316.
	HomeMCCs []string

	// DecisionTTL bounds how long an allowed decision is served from cache
	// (it never outlives the token's exp either). Default 5m.
	DecisionTTL time.Duration
	// MaxCachedDecisions bounds the cache; past it the oldest-expiring
	// decisions are dropped (their sessions simply verify again). Default
	// 100,000.
	MaxCachedDecisions int

	// Timeouts on each dependency call. Default 1s each.
	KeyTimeout       time.Duration
	RegistryTimeout  time.Duration
	IPLocatorTimeout time.Duration
	ChallengeTimeout time.Duration
}

// DefaultBoundaryBufferM is the default boundary buffer in metres.
const DefaultBoundaryBufferM = 500

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.MaxTokenBytes == 0 {
		c.MaxTokenBytes = 8192
	}
	def(&c.MaxTokenAge, 2*time.Minute)
	def(&c.MaxTokenLifetime, 10*time.Minute)
	def(&c.ClockSkew, 5*time.Second)
	def(&c.ChallengeTTL, MaxChallengeTTL)
	def(&c.DecisionTTL, 5*time.Minute)
	def(&c.KeyTimeout, time.Second)
	def(&c.RegistryTimeout, time.Second)
	def(&c.IPLocatorTimeout, time.Second)
	def(&c.ChallengeTimeout, time.Second)
	if c.BoundaryBufferM == 0 {
		c.BoundaryBufferM = DefaultBoundaryBufferM
	}
	if c.MaxGPSAccuracyM == 0 {
		c.MaxGPSAccuracyM = 100
	}
	if c.MaxIPDistanceM == 0 {
		c.MaxIPDistanceM = 150_000
	}
	if c.HomeMCCs == nil {
		c.HomeMCCs = []string{"310", "311", "312", "313", "314", "315", "316"}
	}
	if c.MaxCachedDecisions == 0 {
		c.MaxCachedDecisions = 100_000
	}
	return c
}

// Validate reports the first setting that is missing or out of range,
// after defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return buzzer.Errorf(buzzer.EINVALID, "geo config: "+format, args...)
	}
	switch {
	case len(c.Jurisdictions) == 0:
		return bad("at least one licensed jurisdiction is required")
	case c.MaxTokenBytes < 256 || c.MaxTokenBytes > 64<<10:
		return bad("MaxTokenBytes %d outside [256, 65536]", c.MaxTokenBytes)
	case c.MaxTokenAge < 0 || c.MaxTokenLifetime < 0 || c.DecisionTTL < 0:
		return bad("durations must be positive")
	case c.ClockSkew < 0 || c.ClockSkew > time.Minute:
		return bad("ClockSkew %s outside [0, 1m]", c.ClockSkew)
	case c.ChallengeTTL < 0 || c.ChallengeTTL > MaxChallengeTTL:
		return bad("ChallengeTTL %s outside (0, %s]", c.ChallengeTTL, MaxChallengeTTL)
	case !(c.BoundaryBufferM > 0) || c.BoundaryBufferM > 10_000:
		return bad("BoundaryBufferM %v outside (0, 10000] metres", c.BoundaryBufferM)
	case !(c.MaxGPSAccuracyM > 0) || c.MaxGPSAccuracyM > 10_000:
		return bad("MaxGPSAccuracyM %v outside (0, 10000] metres", c.MaxGPSAccuracyM)
	case !(c.MaxIPDistanceM > 0) || math.IsInf(c.MaxIPDistanceM, 0):
		return bad("MaxIPDistanceM must be positive")
	case len(c.HomeMCCs) == 0:
		return bad("HomeMCCs must not be empty")
	case c.MaxCachedDecisions < 0:
		return bad("MaxCachedDecisions must be positive")
	case c.KeyTimeout < 0 || c.RegistryTimeout < 0 || c.IPLocatorTimeout < 0 || c.ChallengeTimeout < 0:
		return bad("timeouts must be positive")
	}
	for _, m := range c.HomeMCCs {
		if !digits(m, 3, 3) {
			return bad("HomeMCCs entry %q is not a 3-digit MCC", m)
		}
	}
	return nil
}

// Deps are the service's collaborators. All are required.
type Deps struct {
	Boundaries *Boundaries
	Keys       KeySource
	Registry   Registry
	IPs        IPLocator
	Challenges ChallengeStore
	Clock      buzzer.Clock
	// Rand supplies challenge bytes; crypto/rand.Reader in production.
	Rand io.Reader
}

// Decision is the outcome of a compliance check. An allowed decision is
// what the gateway stores (Record) with every bet and money movement it
// authorizes; a denied one carries the same fields for the audit log.
type Decision struct {
	Allowed      bool
	PlayerID     string
	SessionID    string
	Jurisdiction Jurisdiction // "" when the fix resolved to none
	TokenSHA256  string       // hex SHA-256 of the compact token
	DecidedAt    time.Time
	ValidUntil   time.Time // allowed decisions only
	Reason       string    // "verified" when allowed, else the deny reason
	// BoundaryDistanceM is the fix's distance in metres to the nearest
	// boundary, capped at 50 km; -1 when the check stopped before locating.
	BoundaryDistanceM float64
	// Cached is true when the decision was served from the cache.
	Cached bool
	// Source says who verified the token, as seen by the node that acts on
	// the decision: SourceEdge when this node's own geo service did,
	// SourceGateway when a gateway did and forwarded its signed decision.
	// The Service leaves it empty; the gate that admits the request sets it.
	Source string
}

// Decision sources (Decision.Source).
const (
	SourceEdge    = "edge"
	SourceGateway = "gateway"
)

// Record is the part of a decision stored with each bet and money movement.
type Record struct {
	Jurisdiction Jurisdiction `json:"jurisdiction"`
	TokenSHA256  string       `json:"token_sha256"`
	DecidedAt    time.Time    `json:"decided_at"`
	Reason       string       `json:"reason"`
	Source       string       `json:"source"`
}

// Record returns the storable record of d.
func (d Decision) Record() Record {
	return Record{Jurisdiction: d.Jurisdiction, TokenSHA256: d.TokenSHA256, DecidedAt: d.DecidedAt, Reason: d.Reason, Source: d.Source}
}

// CheckInput is one request's compliance question.
type CheckInput struct {
	PlayerID  string // the authenticated player (from the verified JWT)
	SessionID string // the authenticated session
	// Token is the Geolocation-Token header; empty means "use the cached
	// decision for this session if it is still valid".
	Token string
}

// Service verifies geolocation tokens and caches decisions per player
// session. It is safe for concurrent use.
//
// Lock order: mu only; no dependency is called while it is held.
type Service struct {
	cfg    Config
	deps   Deps
	served map[Jurisdiction]bool
	mccs   map[string]bool

	mu       sync.Mutex
	cache    map[sessKey]cached    // latest allowed decision per session
	inflight map[flightKey]*flight // running verification per session and token
}

type sessKey struct{ player, session string }

type flightKey struct {
	sessKey
	hash [sha256.Size]byte
}

type cached struct {
	hash [sha256.Size]byte
	d    Decision
}

type flight struct {
	done chan struct{}
	d    Decision
	err  error
}

const boundarySearchM = 50_000

// NewService validates cfg and deps and returns a Service.
func NewService(cfg Config, deps Deps) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if deps.Boundaries == nil || deps.Keys == nil || deps.Registry == nil || deps.IPs == nil || deps.Challenges == nil || deps.Clock == nil || deps.Rand == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "geo: every dependency (boundaries, keys, registry, IP locator, challenge store, clock, rand) is required")
	}
	s := &Service{cfg: cfg, deps: deps, served: map[Jurisdiction]bool{}, mccs: map[string]bool{}, cache: map[sessKey]cached{}, inflight: map[flightKey]*flight{}}
	for _, j := range cfg.Jurisdictions {
		if !deps.Boundaries.Has(j) {
			return nil, buzzer.Errorf(buzzer.EINVALID, "geo config: jurisdiction %q is not in the boundary data", j)
		}
		s.served[j] = true
	}
	for _, m := range cfg.HomeMCCs {
		s.mccs[m] = true
	}
	return s, nil
}

// Config returns the effective configuration (defaults applied).
func (s *Service) Config() Config { return s.cfg }

// IssueChallenge creates a one-time challenge for the player session,
// valid for Config.ChallengeTTL.
func (s *Service) IssueChallenge(ctx context.Context, playerID, sessionID string) (Challenge, error) {
	if playerID == "" || sessionID == "" || len(playerID) > maxIDLen || len(sessionID) > maxIDLen {
		return Challenge{}, buzzer.Errorf(buzzer.EINVALID, "A player and session are required for a location challenge.")
	}
	var b [32]byte
	if _, err := io.ReadFull(s.deps.Rand, b[:]); err != nil {
		return Challenge{}, buzzer.Wrap(err, buzzer.EINTERNAL, "Could not create a location challenge.")
	}
	now := s.deps.Clock.Now()
	c := Challenge{Value: base64.RawURLEncoding.EncodeToString(b[:]), PlayerID: playerID, SessionID: sessionID, IssuedAt: now, ExpiresAt: now.Add(s.cfg.ChallengeTTL)}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.ChallengeTimeout)
	defer cancel()
	if err := s.deps.Challenges.Put(cctx, c); err != nil {
		if buzzer.ErrorCode(err) == buzzer.ETOOMANY {
			return Challenge{}, err
		}
		return Challenge{}, unavailable(err)
	}
	return c, nil
}

// Check answers whether the player session may place regulated requests,
// and from which jurisdiction. On denial the error is a *buzzer.Error with
// code forbidden (or invalid for a malformed token) and a reason; when a
// dependency cannot answer and no valid cached decision exists it has code
// unavailable and reason "compliance_unavailable". The returned Decision is
// filled in either case.
func (s *Service) Check(ctx context.Context, in CheckInput) (Decision, error) {
	if in.PlayerID == "" || in.SessionID == "" {
		return Decision{}, buzzer.Errorf(buzzer.EUNAUTHORIZED, "An authenticated player session is required.")
	}
	key := sessKey{in.PlayerID, in.SessionID}
	now := s.deps.Clock.Now()
	if in.Token == "" {
		if d, ok := s.lookup(key, nil, now); ok {
			return d, nil
		}
		d := Decision{PlayerID: in.PlayerID, SessionID: in.SessionID, DecidedAt: now, Reason: "geolocation_required"}
		return d, deny("geolocation_required", "A current geolocation token is required.")
	}
	hash := sha256.Sum256([]byte(in.Token))
	if d, ok := s.lookup(key, &hash, now); ok {
		return d, nil
	}

	// Concurrent requests carrying the same new token share one
	// verification, since its challenge can be consumed only once.
	fkey := flightKey{key, hash}
	s.mu.Lock()
	f, running := s.inflight[fkey]
	if !running {
		f = &flight{done: make(chan struct{})}
		s.inflight[fkey] = f
	}
	s.mu.Unlock()
	if running {
		select {
		case <-f.done:
			return f.d, f.err
		case <-ctx.Done():
			return Decision{PlayerID: in.PlayerID, SessionID: in.SessionID, DecidedAt: now, Reason: ReasonUnavailable}, unavailable(ctx.Err())
		}
	}
	d, err := s.verify(ctx, in, hex.EncodeToString(hash[:]), now)
	s.settle(key, hash, d, err, now)
	if err != nil && buzzer.ErrorCode(err) == buzzer.EUNAVAILABLE {
		// An outage while verifying a newer token leaves the previous
		// decision standing until its own bound: the client could have
		// sent no token and been served it.
		if prev, ok := s.lookup(key, nil, now); ok {
			d, err = prev, nil
		}
	}
	s.mu.Lock()
	delete(s.inflight, fkey)
	s.mu.Unlock()
	f.d, f.err = d, err
	close(f.done)
	return d, err
}

// settle applies a verification outcome to the cache: success replaces the
// session's decision, a denial drops it, an outage leaves it.
func (s *Service) settle(key sessKey, hash [sha256.Size]byte, d Decision, err error, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err == nil:
		if len(s.cache) >= s.cfg.MaxCachedDecisions {
			s.evict(now)
		}
		s.cache[key] = cached{hash: hash, d: d}
	case buzzer.ErrorCode(err) == buzzer.EUNAVAILABLE:
	default:
		delete(s.cache, key)
	}
}

// evict drops expired decisions, then, if still full, those expiring
// soonest. Caller holds mu.
func (s *Service) evict(now time.Time) {
	for k, e := range s.cache {
		if !now.Before(e.d.ValidUntil) {
			delete(s.cache, k)
		}
	}
	if len(s.cache) < s.cfg.MaxCachedDecisions {
		return
	}
	// Still full of live decisions: drop the soonest-expiring tenth in one
	// pass, so a full cache costs one scan per many inserts.
	var times []time.Time
	for _, e := range s.cache {
		times = append(times, e.d.ValidUntil)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	cut := times[len(times)/10]
	for k, e := range s.cache {
		if !e.d.ValidUntil.After(cut) {
			delete(s.cache, k)
		}
	}
}

// lookup returns the session's decision if still valid at now and, when
// hash is set, made from that token.
func (s *Service) lookup(key sessKey, hash *[sha256.Size]byte, now time.Time) (Decision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[key]
	if !ok {
		return Decision{}, false
	}
	if !now.Before(e.d.ValidUntil) {
		delete(s.cache, key)
		return Decision{}, false
	}
	if hash != nil && e.hash != *hash {
		return Decision{}, false
	}
	d := e.d
	d.Cached = true
	return d, true
}

// Invalidate drops the cached decision of a player session (logout,
// account change).
func (s *Service) Invalidate(playerID, sessionID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, sessKey{playerID, sessionID})
}

func (s *Service) verify(ctx context.Context, in CheckInput, hash string, now time.Time) (d Decision, err error) {
	d = Decision{PlayerID: in.PlayerID, SessionID: in.SessionID, TokenSHA256: hash, DecidedAt: now, BoundaryDistanceM: -1}
	defer func() {
		if err != nil {
			d.Reason = buzzer.ErrorReason(err)
		}
	}()
	if len(in.Token) > s.cfg.MaxTokenBytes {
		return d, malformed(fmt.Errorf("token is %d bytes", len(in.Token)))
	}
	tok, perr := parseCompact(in.Token)
	if perr != nil {
		return d, malformed(perr)
	}

	kctx, cancel := context.WithTimeout(ctx, s.cfg.KeyTimeout)
	keys, kerr := s.deps.Keys.ProviderKeys(kctx)
	cancel()
	if kerr != nil {
		return d, unavailable(kerr)
	}
	payload, verr := tok.verify(keys)
	if verr != nil {
		return d, deny("geotoken_signature", "The geolocation token's signature is not valid.")
	}
	c, cerr := ParseClaims(payload)
	if cerr != nil {
		return d, malformed(cerr)
	}

	switch skew := s.cfg.ClockSkew; {
	case s.cfg.Issuer != "" && c.Issuer != s.cfg.Issuer:
		return d, deny("geotoken_issuer", "The geolocation token was not issued by the configured provider.")
	case !now.Before(unixTime(c.Expiry).Add(skew)):
		return d, deny("geotoken_expired", "The geolocation token has expired; geolocate again.")
	case unixTime(c.IssuedAt).After(now.Add(skew)):
		return d, deny("geotoken_not_yet_valid", "The geolocation token is issued in the future.")
	case c.Expiry <= c.IssuedAt || unixTime(c.Expiry).Sub(unixTime(c.IssuedAt)) > s.cfg.MaxTokenLifetime:
		return d, deny("geotoken_lifetime", "The geolocation token's lifetime is not acceptable.")
	case now.Sub(unixTime(c.IssuedAt)) > s.cfg.MaxTokenAge+skew:
		return d, deny("geotoken_stale", "The geolocation token is too old; geolocate again.")
	case c.PlayerID != in.PlayerID:
		return d, deny("geotoken_player_mismatch", "The geolocation token belongs to another player.")
	case c.SessionID != in.SessionID:
		return d, deny("geotoken_session_mismatch", "The geolocation token belongs to another session.")
	}

	chctx, cancel := context.WithTimeout(ctx, s.cfg.ChallengeTimeout)
	cherr := s.deps.Challenges.Consume(chctx, in.PlayerID, in.SessionID, c.Challenge, now)
	cancel()
	switch {
	case cherr == nil:
	case errors.Is(cherr, ErrChallengeUnknown):
		return d, deny("challenge_unknown", "The geolocation token's challenge was not issued for this session.")
	case errors.Is(cherr, ErrChallengeUsed):
		return d, deny("challenge_replayed", "The geolocation token's challenge was already used.")
	case errors.Is(cherr, ErrChallengeExpired):
		return d, deny("challenge_expired", "The geolocation token's challenge has expired; request a new one.")
	default:
		return d, unavailable(cherr)
	}

	if r := c.Risk.raised(); r != "" {
		return d, deny(r, "The device reports a condition that prevents location verification ("+r[len("risk_"):]+").")
	}
	if c.GPS.AccuracyM > s.cfg.MaxGPSAccuracyM {
		return d, deny("gps_inaccurate", "The location fix is not accurate enough; geolocate again with a better signal.")
	}
	if len(c.CellTowers) > 0 {
		home := false
		for _, t := range c.CellTowers {
			home = home || s.mccs[t.MCC]
		}
		if !home {
			return d, deny("cell_mismatch", "The device's cell towers do not match its location.")
		}
	}

	fix := Point{Lat: c.GPS.Lat, Lon: c.GPS.Lon}
	j, inside := s.deps.Boundaries.Jurisdiction(fix)
	d.Jurisdiction = j
	d.BoundaryDistanceM = s.deps.Boundaries.DistanceToBoundaryM(fix, boundarySearchM)
	if d.BoundaryDistanceM < s.cfg.BoundaryBufferM+c.GPS.AccuracyM {
		return d, deny(ReasonRecheck, "The location is too close to a jurisdiction boundary; geolocate again.")
	}
	if !inside {
		return d, deny("outside_jurisdiction", "The location is outside every supported jurisdiction.")
	}
	if !s.served[j] {
		return d, deny("jurisdiction_not_served", "Wagering is not offered in "+string(j)+".")
	}

	ip, _ := c.DeviceIP() // validated by ParseClaims
	ictx, cancel := context.WithTimeout(ctx, s.cfg.IPLocatorTimeout)
	ipLoc, ierr := s.deps.IPs.LocateIP(ictx, ip)
	cancel()
	switch {
	case errors.Is(ierr, ErrIPNotFound):
		return d, deny("ip_unlocated", "The device's network address cannot be located.")
	case ierr != nil:
		return d, unavailable(ierr)
	}
	if DistanceM(fix, ipLoc.Point) > s.cfg.MaxIPDistanceM {
		return d, deny("ip_gps_mismatch", "The device's network location does not match its GPS location.")
	}

	rctx, cancel := context.WithTimeout(ctx, s.cfg.RegistryTimeout)
	st, rerr := s.deps.Registry.PlayerStatus(rctx, in.PlayerID, j)
	cancel()
	switch {
	case rerr != nil:
		return d, unavailable(rerr)
	case st.SelfExcluded:
		return d, deny("self_excluded", "The player is self-excluded in "+string(j)+".")
	case !st.Consented:
		return d, deny("consent_missing", "The player has not given the consent "+string(j)+" requires.")
	}

	d.Allowed = true
	d.Reason = "verified"
	d.ValidUntil = now.Add(s.cfg.DecisionTTL)
	if exp := unixTime(c.Expiry); exp.Before(d.ValidUntil) {
		d.ValidUntil = exp
	}
	return d, nil
}

func deny(reason, msg string) error {
	return &buzzer.Error{Code: buzzer.EFORBIDDEN, Message: msg, Reason: reason}
}

func malformed(cause error) error {
	return &buzzer.Error{Code: buzzer.EINVALID, Message: "The geolocation token is malformed.", Reason: "geotoken_malformed", Err: cause}
}

func unavailable(cause error) error {
	return &buzzer.Error{Code: buzzer.EUNAVAILABLE, Message: "Location compliance cannot be checked right now; try again shortly.", Reason: ReasonUnavailable, Err: cause}
}
