package wallet

import (
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Where a compliance decision was made.
const (
	DecisionGateway = "gateway"
	DecisionEdge    = "edge"
)

// Decision is the geocompliance decision that let a money request through:
// the jurisdiction the verified location resolved to, the hex SHA-256 of the
// geolocation token it was decided on, when, and by which tier. The
// transport sets it from its own verification, never from the client's body;
// the wallet stores it with the transaction (and the bet) it authorized, so
// every movement of money can be traced to the decision that allowed it.
type Decision struct {
	Jurisdiction string    `json:"jurisdiction"`
	TokenHash    string    `json:"token_hash"`
	DecidedAt    time.Time `json:"decided_at"`
	Source       string    `json:"source"`
}

// validate checks the decision's shape; a malformed decision is treated as
// no decision at all (fail closed).
func (d *Decision) validate() error {
	bad := func(what string) error {
		return buzzer.Errorf(buzzer.EFORBIDDEN, "The compliance decision is malformed (%s).", what).WithReason("compliance_required")
	}
	switch {
	case validID(d.Jurisdiction) != nil:
		return bad("jurisdiction")
	case len(d.TokenHash) != 64 || !isLowerHex(d.TokenHash):
		return bad("token hash")
	case d.DecidedAt.IsZero():
		return bad("time")
	case d.Source != DecisionGateway && d.Source != DecisionEdge:
		return bad("source")
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// admit applies the compliance rule to a money request's decision and
// returns the copy to store (UTC, at the stores' microsecond precision), or
// nil when there is none and none is required. Refusals are EFORBIDDEN and
// happen before the idempotency key is touched, so they change nothing.
func (s *Service) admit(d *Decision) (*Decision, error) {
	if d == nil {
		if s.cfg.RequireDecision {
			return nil, buzzer.Errorf(buzzer.EFORBIDDEN, "This request needs a geolocation compliance decision.").WithReason("compliance_required")
		}
		return nil, nil
	}
	if err := d.validate(); err != nil {
		return nil, err
	}
	if d.Jurisdiction != s.cfg.Jurisdiction {
		return nil, buzzer.Errorf(buzzer.EFORBIDDEN, "The verified location is not in this wallet's jurisdiction.").WithReason("jurisdiction_mismatch")
	}
	c := *d
	c.DecidedAt = c.DecidedAt.UTC().Truncate(time.Microsecond)
	return &c, nil
}
