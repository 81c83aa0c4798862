package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/buzzer-bet/buzzer"
)

// Problem is an RFC 9457 problem details body. Code is Buzzer's stable machine
// code; Reason refines it where a client needs to tell cases apart. The body
// is a function of the error and the path only (the request ID travels in the
// X-Request-Id header), so a refusal stored with an idempotency key replays
// byte for byte.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Code     string `json:"code"`
	Reason   string `json:"reason,omitempty"`
	Instance string `json:"instance,omitempty"`
}

// statusOf maps error codes to HTTP statuses. Unknown codes are 500, so a new
// code can never leak as a success.
var statusOf = map[string]int{
	buzzer.EINVALID:       http.StatusBadRequest,
	buzzer.EUNAUTHORIZED:  http.StatusUnauthorized,
	buzzer.EFORBIDDEN:     http.StatusForbidden,
	buzzer.ENOTFOUND:      http.StatusNotFound,
	buzzer.ECONFLICT:      http.StatusConflict,
	buzzer.ETOOLARGE:      http.StatusRequestEntityTooLarge,
	buzzer.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	buzzer.ETOOMANY:       http.StatusTooManyRequests,
	buzzer.EINTERNAL:      http.StatusInternalServerError,
	buzzer.ENOTIMPL:       http.StatusNotImplemented,
	buzzer.EUNAVAILABLE:   http.StatusServiceUnavailable,
	buzzer.ETIMEOUT:       http.StatusGatewayTimeout,
	EMETHOD:               http.StatusMethodNotAllowed,
}

// StatusOf returns the HTTP status for err's code.
func StatusOf(err error) int {
	if s, ok := statusOf[buzzer.ErrorCode(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// WriteError writes err as problem+json. Internal errors are logged with
// their cause and shown to the client as a generic message only.
func WriteError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code := buzzer.ErrorCode(err)
	status := StatusOf(err)
	if status >= 500 && log != nil {
		log.Error("request failed", "request_id", RequestID(r.Context()), "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	msg := buzzer.ErrorMessage(err)
	if code == buzzer.EINTERNAL {
		msg = "Internal error."
	}
	p := Problem{
		Type:     "https://buzzer.bet/problems/" + code,
		Title:    http.StatusText(status),
		Status:   status,
		Detail:   msg,
		Code:     code,
		Reason:   buzzer.ErrorReason(err),
		Instance: r.URL.Path,
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="buzzer"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

// WriteJSON writes v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode response")
	}
	return WriteRaw(w, status, "application/json", append(b, '\n'))
}

// WriteRaw writes body as it is (replayed idempotent responses must be byte
// for byte what was first sent).
func WriteRaw(w http.ResponseWriter, status int, contentType string, body []byte) error {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

// DecodeJSON decodes exactly one JSON object from the request body into v:
// the content type must be JSON, unknown fields and trailing data are
// rejected, and the body size limit set by the server applies.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return buzzer.Errorf(buzzer.EINVALID, "Content-Type must be application/json.")
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return buzzer.Errorf(buzzer.EINVALID, "The request body must hold exactly one JSON object.")
	}
	return nil
}

func decodeError(err error) error {
	var mbe *http.MaxBytesError
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return buzzer.Errorf(buzzer.ETOOLARGE, "The request body is larger than %d bytes.", mbe.Limit)
	case errors.Is(err, io.EOF):
		return buzzer.Errorf(buzzer.EINVALID, "The request body is empty.")
	case errors.As(err, &se), errors.Is(err, io.ErrUnexpectedEOF):
		return buzzer.Errorf(buzzer.EINVALID, "The request body is not valid JSON.")
	case errors.As(err, &te):
		return buzzer.Errorf(buzzer.EINVALID, "Field %q has the wrong type.", te.Field)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no typed error for unknown fields; this prefix is
		// part of its documented behaviour of DisallowUnknownFields.
		return buzzer.Errorf(buzzer.EINVALID, "Unknown field %s.", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		var be *buzzer.Error
		if errors.As(err, &be) {
			return err // a field's own UnmarshalJSON said what is wrong
		}
		return buzzer.Errorf(buzzer.EINVALID, "The request body cannot be decoded.")
	}
}
