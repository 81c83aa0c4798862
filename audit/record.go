package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buzzer-bet/buzzer"
)

// Component names the part of Buzzer a record comes from.
type Component string

// The components whose changes are captured.
const (
	ComponentWallet     Component = "wallet"
	ComponentBet        Component = "bet"
	ComponentSettlement Component = "settlement"
	ComponentRNG        Component = "rng"
	ComponentTable      Component = "table"
)

// Valid reports whether c is a known component.
func (c Component) Valid() bool {
	switch c {
	case ComponentWallet, ComponentBet, ComponentSettlement, ComponentRNG, ComponentTable:
		return true
	default:
		return false
	}
}

// Record is one captured change. Its source is (Jurisdiction, Component);
// Key names what it is ordered under (an account, bet, table or RNG log) and
// Seq is its position within (Jurisdiction, Component, Key): dense, from 1.
// See doc.go for the canonical encoding and the payload contract.
type Record struct {
	ID           string
	Jurisdiction string
	Component    Component
	Key          string
	Seq          uint64
	Time         time.Time
	Type         string
	Payload      json.RawMessage // a JSON object

	// canon is Payload as SetPayload made it canonical; Encode skips
	// re-canonicalising a Payload still byte-equal to it.
	canon []byte
}

// Limits on record fields.
const (
	MaxIDBytes      = 128
	MaxKeyBytes     = 256
	MaxTypeBytes    = 64
	maxJSONDepth    = 32
	maxJurisdiction = 64
)

// StreamKey is the ordering and de-duplication key: records with the same
// stream key are archived in Seq order with no gap.
func (r *Record) StreamKey() string {
	return r.Jurisdiction + "/" + string(r.Component) + "/" + r.Key
}

func invalid(format string, args ...any) error {
	return buzzer.Errorf(buzzer.EINVALID, format, args...).WithReason("audit_record_invalid")
}

// Validate checks every field except the payload's content.
func (r *Record) Validate() error {
	switch {
	case len(r.ID) == 0 || len(r.ID) > MaxIDBytes || !printableASCII(r.ID):
		return invalid("audit record id must be 1..%d printable ASCII characters", MaxIDBytes)
	case len(r.Jurisdiction) == 0 || len(r.Jurisdiction) > maxJurisdiction || !token(r.Jurisdiction, false):
		return invalid("audit record %s: jurisdiction must be 1..%d of A-Z a-z 0-9 _ - . :", r.ID, maxJurisdiction)
	case !r.Component.Valid():
		return invalid("audit record %s: unknown component %q", r.ID, r.Component)
	case len(r.Key) == 0 || len(r.Key) > MaxKeyBytes || !utf8.ValidString(r.Key) || hasControl(r.Key):
		return invalid("audit record %s: key must be 1..%d bytes of UTF-8 text", r.ID, MaxKeyBytes)
	case r.Seq == 0:
		return invalid("audit record %s: seq starts at 1", r.ID)
	case r.Time.IsZero() || r.Time.Year() < 1970 || r.Time.Year() > 9999:
		return invalid("audit record %s: time is missing or out of range", r.ID)
	case len(r.Type) == 0 || len(r.Type) > MaxTypeBytes || !token(r.Type, true):
		return invalid("audit record %s: type must be 1..%d of a-z 0-9 . _", r.ID, MaxTypeBytes)
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return true
		}
	}
	return false
}

func token(s string, lowerType bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
		case lowerType && c == '.':
		case !lowerType && (c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == ':'):
		default:
			return false
		}
	}
	return true
}

// Encode returns the record's canonical encoding (see doc.go): the bytes that
// are archived and hashed. The same record always encodes to the same bytes.
func Encode(r *Record) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	payload := r.canon
	if len(payload) == 0 || !bytes.Equal(payload, r.Payload) {
		var err error
		if payload, err = canonicalObject(r.Payload); err != nil {
			return nil, invalid("audit record %s: payload: %v", r.ID, err)
		}
	}
	b := make([]byte, 0, 160+len(r.Key)+len(payload))
	b = append(b, `{"component":`...)
	b = appendString(b, string(r.Component))
	b = append(b, `,"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"jurisdiction":`...)
	b = appendString(b, r.Jurisdiction)
	b = append(b, `,"key":`...)
	b = appendString(b, r.Key)
	b = append(b, `,"payload":`...)
	b = append(b, payload...)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":`...)
	b = appendString(b, r.Time.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"type":`...)
	b = appendString(b, r.Type)
	return append(b, '}'), nil
}

// wireRecord is the JSON shape of a record.
type wireRecord struct {
	Component    Component       `json:"component"`
	ID           string          `json:"id"`
	Jurisdiction string          `json:"jurisdiction"`
	Key          string          `json:"key"`
	Payload      json.RawMessage `json:"payload"`
	Seq          uint64          `json:"seq"`
	Time         string          `json:"time"`
	Type         string          `json:"type"`
}

// at is the record w holds, stamped t. Its payload came out of canonical
// bytes, so Encode need not canonicalise it again.
func (w *wireRecord) at(t time.Time) *Record {
	return &Record{ID: w.ID, Jurisdiction: w.Jurisdiction, Component: w.Component, Key: w.Key, Seq: w.Seq,
		Time: t.UTC(), Type: w.Type, Payload: w.Payload, canon: w.Payload}
}

// Decode parses a record from JSON in any valid layout (whitespace, key
// order), rejecting duplicate keys, unknown fields, non-integer numbers and
// invalid UTF-8. Encode(Decode(b)) is the canonical form of b.
func Decode(b []byte) (*Record, error) {
	if r, ok := decodeCanonical(b); ok {
		return r, nil
	}
	return decodeAny(b)
}

// decodeAny is Decode for any layout: it canonicalises b, then reads it.
func decodeAny(b []byte) (*Record, error) {
	canon, err := canonicalObject(b)
	if err != nil {
		return nil, invalid("audit record is not valid canonicalisable JSON: %v", err)
	}
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(canon))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, invalid("audit record has a bad field: %v", err)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return nil, invalid("audit record %q: time is not RFC 3339", w.ID)
	}
	if len(w.Payload) == 0 || w.Payload[0] != '{' {
		return nil, invalid("audit record %q: payload must be a JSON object", w.ID)
	}
	r := w.at(t)
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeCanonical parses an archived record and checks that it is byte for
// byte in canonical form, as everything the archiver writes is.
func DecodeCanonical(b []byte) (*Record, error) {
	r, err := Decode(b)
	if err != nil {
		return nil, err
	}
	again, err := Encode(r)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, invalid("audit record %q is not in canonical form", r.ID)
	}
	return r, nil
}

// canonicalObject re-encodes one JSON object canonically: keys sorted by
// bytes, no duplicates, no insignificant whitespace, integers only, strings
// with minimal escaping.
func canonicalObject(in []byte) ([]byte, error) {
	if !utf8.Valid(in) {
		return nil, errors.New("invalid UTF-8")
	}
	if len(in) > 0 && in[0] == '{' {
		s := scanner{b: in}
		if out, ok := s.recanon(nil, 0); ok && s.i == len(in) {
			return out, nil
		}
	}
	return decodeCanonicalObject(in)
}

// decodeCanonicalObject is canonicalObject through encoding/json's tokens:
// the general path, which also names what is wrong with in.
func decodeCanonicalObject(in []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	out, err := canonicalValue(dec, tok, nil, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return out, nil
}

type member struct {
	key string
	val []byte
}

func canonicalValue(dec *json.Decoder, tok json.Token, out []byte, depth int) ([]byte, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			var ms []member
			seen := map[string]bool{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				if seen[k] {
					return nil, errors.New("duplicate key " + strconv.Quote(k))
				}
				seen[k] = true
				vt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				val, err := canonicalValue(dec, vt, nil, depth+1)
				if err != nil {
					return nil, err
				}
				ms = append(ms, member{k, val})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			sortMembers(ms)
			out = append(out, '{')
			for i, m := range ms {
				if i > 0 {
					out = append(out, ',')
				}
				out = appendString(out, m.key)
				out = append(out, ':')
				out = append(out, m.val...)
			}
			return append(out, '}'), nil
		case '[':
			out = append(out, '[')
			for i := 0; dec.More(); i++ {
				if i > 0 {
					out = append(out, ',')
				}
				vt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				if out, err = canonicalValue(dec, vt, out, depth+1); err != nil {
					return nil, err
				}
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return append(out, ']'), nil
		}
		return nil, errors.New("unexpected delimiter")
	case string:
		return appendString(out, v), nil
	case json.Number:
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			u, uerr := strconv.ParseUint(string(v), 10, 64)
			if uerr != nil {
				return nil, errors.New("number " + string(v) + " is not an integer in 64 bits (write decimals as strings)")
			}
			return strconv.AppendUint(out, u, 10), nil
		}
		return strconv.AppendInt(out, n, 10), nil
	case bool:
		return strconv.AppendBool(out, v), nil
	case nil:
		return append(out, "null"...), nil
	}
	return nil, errors.New("unexpected JSON token")
}

func sortMembers(ms []member) {
	slices.SortFunc(ms, func(a, b member) int { return strings.Compare(a.key, b.key) })
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string escaping only what JSON requires:
// quote, backslash and control characters below U+0020.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '\r':
			b = append(b, '\\', 'r')
		case c == '\t':
			b = append(b, '\\', 't')
		case c == '\b':
			b = append(b, '\\', 'b')
		case c == '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
	}
	return append(b, '"')
}
