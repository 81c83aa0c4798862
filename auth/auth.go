// Package auth owns bearer-token authentication: it verifies JWTs (RFC 7519)
// against a configured JWKS — a file or a URL, with key rotation — under the
// RFC 8725 rules, caches verified tokens until they expire, and creates the
// dev-mode signing keys that `buzzer serve` and the bench tools use.
//
// It must never trust anything a token says about where its key lives (jku,
// x5u, embedded jwk, x5c), never accept a symmetric or unsigned token, never
// let a key verify a token of another algorithm than the one the key is
// pinned to, and never answer "valid" when it cannot tell: with the JWKS
// unreachable past its staleness bound it fails closed.
package auth

import (
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Rejection reasons (buzzer.Error.Reason). Stable once published: clients and
// dashboards may switch on them.
const (
	ReasonMalformed       = "malformed_token"
	ReasonTooLarge        = "token_too_large"
	ReasonAlgNotAllowed   = "alg_not_allowed"
	ReasonAlgMismatch     = "alg_mismatch"
	ReasonBadType         = "bad_type"
	ReasonMissingKeyID    = "missing_kid"
	ReasonForbiddenHeader = "forbidden_header"
	ReasonUnknownKey      = "unknown_key"
	ReasonBadSignature    = "bad_signature"
	ReasonMalformedClaims = "malformed_claims"
	ReasonMissingExp      = "missing_exp"
	ReasonExpired         = "token_expired"
	ReasonNotYetValid     = "token_not_yet_valid"
	ReasonBadIssuer       = "bad_issuer"
	ReasonBadAudience     = "bad_audience"
	ReasonMissingSubject  = "missing_subject"
	ReasonMissingRole     = "missing_role"
	ReasonJWKSUnavailable = "jwks_unavailable"
)

// Config configures one Verifier (the player and the admin listener each
// have their own, with separate keys and audiences).
type Config struct {
	// Issuer and Audience are compared exactly with the token's iss and aud.
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// Exactly one of JWKSFile and JWKSURL names the trusted keys. A URL must be
	// https unless its host is a loopback address.
	JWKSFile string `yaml:"jwks_file"`
	JWKSURL  string `yaml:"jwks_url"`
	// Leeway is the clock skew tolerated on exp, nbf and iat.
	Leeway time.Duration `yaml:"leeway"`
	// RefreshInterval is the age after which keys in use are re-fetched in the
	// background, so removed (revoked) keys stop verifying.
	RefreshInterval time.Duration `yaml:"refresh_interval"`
	// RefreshMinInterval is the minimum gap between two JWKS fetches, however
	// many unknown kids arrive: a storm of forged kids cannot hammer the
	// identity provider.
	RefreshMinInterval time.Duration `yaml:"refresh_min_interval"`
	// FetchTimeout bounds one JWKS fetch.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// KeysMaxStale is how long keys last fetched successfully keep serving
	// while the JWKS is unreachable; after that verification fails closed.
	KeysMaxStale time.Duration `yaml:"keys_max_stale"`
	// MaxTokenBytes is checked before any parsing.
	MaxTokenBytes int `yaml:"max_token_bytes"`
	// CacheSize bounds the verified-token cache (0 disables it).
	CacheSize int `yaml:"cache_size"`
	// AllowedTypes lists the accepted typ header values (compared without
	// case and without an "application/" prefix, RFC 7515 §4.1.9).
	AllowedTypes []string `yaml:"allowed_types"`
	// RequiredRole, when set, must appear in the token's roles claim (the
	// admin verifier requires "operator").
	RequiredRole string `yaml:"required_role"`
}

// DefaultConfig returns the safe defaults; Issuer, Audience and one JWKS
// source must still be set.
func DefaultConfig() Config {
	return Config{
		Leeway:             30 * time.Second,
		RefreshInterval:    5 * time.Minute,
		RefreshMinInterval: 30 * time.Second,
		FetchTimeout:       2 * time.Second,
		KeysMaxStale:       time.Hour,
		MaxTokenBytes:      8192,
		CacheSize:          100000,
		AllowedTypes:       []string{"JWT", "at+jwt"},
	}
}

// Validate reports the first bad field by its configuration name.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error { return buzzer.Errorf(buzzer.EINVALID, format, args...) }
	switch {
	case c.Issuer == "":
		return bad("issuer must be set")
	case c.Audience == "":
		return bad("audience must be set")
	case (c.JWKSFile == "") == (c.JWKSURL == ""):
		return bad("exactly one of jwks_file and jwks_url must be set")
	case c.Leeway < 0 || c.Leeway > 5*time.Minute:
		return bad("leeway must be between 0 and 5m, got %s", c.Leeway)
	case c.RefreshMinInterval <= 0:
		return bad("refresh_min_interval must be positive, got %s", c.RefreshMinInterval)
	case c.RefreshInterval < c.RefreshMinInterval:
		return bad("refresh_interval must be at least refresh_min_interval (%s), got %s", c.RefreshMinInterval, c.RefreshInterval)
	case c.FetchTimeout <= 0 || c.FetchTimeout > time.Minute:
		return bad("fetch_timeout must be between 0 and 1m, got %s", c.FetchTimeout)
	case c.KeysMaxStale <= c.RefreshInterval:
		return bad("keys_max_stale must be longer than refresh_interval (%s), got %s", c.RefreshInterval, c.KeysMaxStale)
	case c.MaxTokenBytes < 256 || c.MaxTokenBytes > 65536:
		return bad("max_token_bytes must be between 256 and 65536, got %d", c.MaxTokenBytes)
	case c.CacheSize < 0:
		return bad("cache_size must not be negative, got %d", c.CacheSize)
	case len(c.AllowedTypes) == 0 || slices.Contains(c.AllowedTypes, ""):
		return bad("allowed_types must list at least one non-empty type")
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
			return bad("jwks_url must be an absolute http(s) URL without credentials")
		}
		switch u.Scheme {
		case "https":
		case "http":
			if !isLoopback(u.Hostname()) {
				return bad("jwks_url must use https (plain http only for a loopback host)")
			}
		default:
			return bad("jwks_url must be an absolute http(s) URL without credentials")
		}
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Principal is who a verified token speaks for.
type Principal struct {
	// Subject is the player id for player tokens, the operator id for admin
	// tokens (claim sub).
	Subject string
	// Jurisdiction is the claim "jurisdiction" ("" when absent).
	Jurisdiction string
	// Roles is the claim "roles".
	Roles []string
	// TokenID is the claim jti ("" when absent).
	TokenID   string
	ExpiresAt time.Time
}

// HasRole reports whether p carries role.
func (p Principal) HasRole(role string) bool { return slices.Contains(p.Roles, role) }

// reject builds the EUNAUTHORIZED error every rejection returns. Messages are
// fixed strings: nothing from the token is echoed back.
func reject(reason, message string) *buzzer.Error {
	return buzzer.Errorf(buzzer.EUNAUTHORIZED, "%s", message).WithReason(reason)
}
