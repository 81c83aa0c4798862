package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/geo"
)

// GeoTokenHeader carries the provider-signed geolocation token on regulated
// requests. A request without it is served from the session's cached
// decision while that decision is valid.
const GeoTokenHeader = "Geolocation-Token"

// RouteGeoChallenge issues a one-time location challenge for the caller's
// session.
const RouteGeoChallenge = "POST /v1/geo/challenges"

// SessionID names the player session a request belongs to, for location
// challenges and cached decisions: "jti:<token id>" when the bearer token
// has a jti, else "tok:<hex SHA-256 of the bearer token>" (truncated to 128
// bits). It is never read from a client-chosen header such as Session-Id: a
// session the client could name freely would let a captured geolocation
// token be replayed, with the same player's credentials, from another
// session. Both forms are derived from the verified credential, so a token
// issued for one session verifies only with that same credential.
func SessionID(r *http.Request, p auth.Principal) string {
	if p.TokenID != "" {
		return "jti:" + p.TokenID
	}
	tok, _ := bearer(r)
	sum := sha256.Sum256([]byte(tok))
	return "tok:" + hex.EncodeToString(sum[:16])
}

// challengeView is the body of a challenge response: the provider SDK puts
// challenge, player_id and session_id into the token it signs.
type challengeView struct {
	Challenge string    `json:"challenge"`
	PlayerID  string    `json:"player_id"`
	SessionID string    `json:"session_id"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// MountGeo adds POST /v1/geo/challenges: an authenticated player gets a
// one-time challenge bound to its session (see SessionID), valid for at most
// five minutes. The request body is ignored; the answer is 201 with the
// challenge, or 429 (reason challenge_limit) when the session already holds
// too many unspent ones, or 503 compliance_unavailable when the challenge
// store cannot answer.
func (s *Server) MountGeo(svc *geo.Service) {
	s.Player(RouteGeoChallenge, Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		sid := SessionID(r, p)
		c, err := svc.IssueChallenge(r.Context(), p.Subject, sid)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, challengeView{
			Challenge: c.Value, PlayerID: p.Subject, SessionID: sid,
			IssuedAt: c.IssuedAt.UTC(), ExpiresAt: c.ExpiresAt.UTC(),
		})
	})
}

// GeoGate decides whether a request may touch regulated state (money, bets,
// tables, draws) and returns the allowed decision. Any error denies; an
// implementation that cannot decide returns code unavailable with reason
// compliance_unavailable. LocalGeo verifies tokens itself; the gateway's
// forwarded-decision verifier (package gateway) is the other implementation.
type GeoGate interface {
	Decide(r *http.Request, p auth.Principal) (geo.Decision, error)
}

// LocalGeo is the GeoGate of a node that verifies geolocation tokens itself
// (`buzzer serve`, or the gateway). Jurisdiction, when set, is the only
// jurisdiction this node's stores hold: a decision for any other is refused
// even when it matches the account.
type LocalGeo struct {
	Service      *geo.Service
	Jurisdiction geo.Jurisdiction
}

// Decide implements GeoGate.
func (g LocalGeo) Decide(r *http.Request, p auth.Principal) (geo.Decision, error) {
	if g.Service == nil {
		return geo.Decision{}, ComplianceUnavailable(nil)
	}
	d, err := g.Service.Check(r.Context(), geo.CheckInput{
		PlayerID: p.Subject, SessionID: SessionID(r, p), Token: r.Header.Get(GeoTokenHeader),
	})
	if err != nil {
		return d, err
	}
	d.Source = geo.SourceEdge
	return d, CheckResidency(d, p, g.Jurisdiction)
}

// CheckResidency enforces that a player's account and the verified location
// agree: an account belongs to exactly one jurisdiction (the JWT's
// jurisdiction claim), and a request whose location resolves elsewhere is
// refused with 403 reason jurisdiction_mismatch. node, when set, is the
// jurisdiction of the stores that would serve the request; a decision for
// another is refused with reason edge_jurisdiction_mismatch, so a misrouted
// request is never processed in the wrong place.
func CheckResidency(d geo.Decision, p auth.Principal, node geo.Jurisdiction) error {
	switch {
	case !d.Allowed || d.Jurisdiction == "":
		return ComplianceUnavailable(nil)
	case p.Jurisdiction == "":
		return buzzer.Errorf(buzzer.EFORBIDDEN, "The account has no jurisdiction; regulated requests are refused.").WithReason("account_jurisdiction_missing")
	case string(d.Jurisdiction) != p.Jurisdiction:
		return buzzer.Errorf(buzzer.EFORBIDDEN, "Your account is registered in %s but your location is in %s; wagering is only available from %s.",
			p.Jurisdiction, d.Jurisdiction, p.Jurisdiction).WithReason("jurisdiction_mismatch")
	case node != "" && d.Jurisdiction != node:
		return buzzer.Errorf(buzzer.EFORBIDDEN, "This service holds %s accounts only; the request belongs to %s.", node, d.Jurisdiction).WithReason("edge_jurisdiction_mismatch")
	}
	return nil
}

// ComplianceUnavailable is the fail-closed denial: 503, code unavailable,
// reason compliance_unavailable. cause is logged, never shown.
func ComplianceUnavailable(cause error) error {
	return &buzzer.Error{Code: buzzer.EUNAVAILABLE, Reason: geo.ReasonUnavailable, Err: cause,
		Message: "Location compliance cannot be checked right now; nothing was done. Try again shortly."}
}

const geoDecisionKey ctxKey = 100

// RequireGeo wraps a money, bet, table or draw handler: it runs only with
// an allowed decision from gate, which it reads with GeoFrom and stores
// (Decision.Record) with every movement it makes. With no gate configured
// the request is refused as compliance_unavailable: there is no fail-open.
// Use it on Player routes only (it needs the authenticated principal).
func RequireGeo(gate GeoGate, h HandlerFunc) HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, ok := PlayerFrom(r.Context())
		if !ok || p.Subject == "" {
			return buzzer.Errorf(buzzer.EUNAUTHORIZED, "An authenticated player is required.")
		}
		if gate == nil {
			return ComplianceUnavailable(nil)
		}
		d, err := gate.Decide(r, p)
		if err != nil {
			return err
		}
		if !d.Allowed || d.Jurisdiction == "" {
			return ComplianceUnavailable(nil)
		}
		return h(w, r.WithContext(WithGeo(r.Context(), d)))
	}
}

// WithGeo returns ctx carrying an allowed decision (for handler tests).
func WithGeo(ctx context.Context, d geo.Decision) context.Context {
	return context.WithValue(ctx, geoDecisionKey, d)
}

// GeoFrom returns the decision RequireGeo admitted the request with.
func GeoFrom(ctx context.Context) (geo.Decision, bool) {
	d, ok := ctx.Value(geoDecisionKey).(geo.Decision)
	return d, ok
}
