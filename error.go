package buzzer

import (
	"context"
	"errors"
	"fmt"
)

// Error codes: a stable, machine-readable vocabulary. Transports map them to
// status codes; clients may switch on them. Never rename one.
const (
	ECONFLICT      = "conflict"        // state conflict: stale version, key in flight
	EINTERNAL      = "internal"        // a bug or an unexpected fault; details only in logs
	EINVALID       = "invalid"         // bad input
	ENOTFOUND      = "not_found"       // no such resource (or not yours)
	EUNAUTHORIZED  = "unauthorized"    // missing or bad credentials
	EFORBIDDEN     = "forbidden"       // authenticated but not allowed
	EUNAVAILABLE   = "unavailable"     // a dependency is down; retry later
	ETOOMANY       = "too_many"        // rate or concurrency limit; retry later
	EUNPROCESSABLE = "unprocessable"   // well-formed but refused (e.g. idempotency key reused with another payload)
	ETOOLARGE      = "too_large"       // request body or header over its limit
	ETIMEOUT       = "timeout"         // the operation did not finish in its deadline
	ENOTIMPL       = "not_implemented" // the capability is not configured on this node
)

// Error is Buzzer's application error: a machine code, a message safe to show
// to the caller, and optionally the detailed cause, which is logged but never
// shown.
type Error struct {
	Code    string
	Message string
	// Reason refines Code for clients that need it (e.g. "idempotency_key_reused",
	// "compliance_unavailable"). Optional, stable once published.
	Reason string
	// Err is the internal cause; Unwrap exposes it for errors.Is/As.
	Err error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("buzzer error: code=%s", e.Code)
	if e.Reason != "" {
		msg += " reason=" + e.Reason
	}
	msg += " message=" + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithReason returns a copy of e carrying a refining reason.
func (e *Error) WithReason(reason string) *Error {
	c := *e
	c.Reason = reason
	return &c
}

// Wrap returns an *Error with code and message whose cause is err.
func Wrap(err error, code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	// A deadline that ran out before anything said why is still a timeout:
	// the caller may retry (504), it is not a fault of ours (500).
	if errors.Is(err, context.DeadlineExceeded) {
		return ETIMEOUT
	}
	return EINTERNAL
}

// ErrorReason returns the reason of the first *Error in err's chain, or "".
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// ErrorMessage returns the human message of the first *Error in err's chain.
// Any other error yields a generic message, so internals never leak.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "The operation did not finish in time."
	}
	return "Internal error."
}
