package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// b64 is the JWS segment encoding: base64url without padding, with strict
// trailing bits so one token has exactly one spelling.
var b64 = base64.RawURLEncoding.Strict()

// header is the validated JOSE header of a compact JWS.
type header struct {
	alg string
	kid string
	typ string
}

// forbiddenHeaders would tell the verifier where to find a key or chain; the
// token's own word on that is never followed (RFC 8725 §3.10), so such a
// token is refused outright. crit and b64 change how the token is processed.
var forbiddenHeaders = []string{"jku", "x5u", "jwk", "x5c", "crit", "b64"}

// splitToken splits a compact JWS into its three segments (the header
// non-empty; the caller checks the others after judging the header).
func splitToken(tok string) (h, p, s string, ok bool) {
	h, rest, ok1 := strings.Cut(tok, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || h == "" || strings.Contains(s, ".") {
		return "", "", "", false
	}
	return h, p, s, true
}

// parseHeader decodes and checks the protected header segment.
func parseHeader(seg string, allowedTypes []string) (header, error) {
	raw, err := b64.DecodeString(seg)
	if err != nil {
		return header{}, reject(ReasonMalformed, "The token is malformed.")
	}
	m, err := decodeObject(raw)
	if err != nil {
		return header{}, reject(ReasonMalformed, "The token is malformed.")
	}
	for _, name := range forbiddenHeaders {
		if _, ok := m[name]; ok {
			return header{}, reject(ReasonForbiddenHeader, "The token header carries a parameter that is not accepted.")
		}
	}
	var h header
	if !stringMember(m, "alg", &h.alg) {
		return header{}, reject(ReasonMalformed, "The token is malformed.")
	}
	if _, ok := allowedAlgs[h.alg]; !ok {
		return header{}, reject(ReasonAlgNotAllowed, "The token's signing algorithm is not accepted.")
	}
	if !stringMember(m, "typ", &h.typ) || !typeAllowed(h.typ, allowedTypes) {
		return header{}, reject(ReasonBadType, "The token type is not accepted.")
	}
	if !stringMember(m, "kid", &h.kid) || h.kid == "" {
		return header{}, reject(ReasonMissingKeyID, "The token names no key.")
	}
	return h, nil
}

// typeAllowed compares typ values as media types: without case and with an
// optional "application/" prefix (RFC 7515 §4.1.9).
func typeAllowed(typ string, allowed []string) bool {
	norm := func(s string) string {
		s = strings.ToLower(s)
		return strings.TrimPrefix(s, "application/")
	}
	t := norm(typ)
	for _, a := range allowed {
		if norm(a) == t {
			return true
		}
	}
	return false
}

// stringMember reads m[name] as a JSON string; absent or another type is false.
func stringMember(m map[string]json.RawMessage, name string, out *string) bool {
	v, ok := m[name]
	if !ok || len(v) == 0 || v[0] != '"' {
		return false
	}
	return json.Unmarshal(v, out) == nil
}

var errDuplicateMember = errors.New("duplicate member")

// decodeObject decodes one JSON object into its members, refusing duplicate
// names (which parsers resolve differently) and trailing data.
func decodeObject(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, ok := t.(string)
		if !ok {
			return nil, errors.New("bad member name")
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := m[name]; dup {
			return nil, errDuplicateMember
		}
		m[name] = v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data")
	}
	return m, nil
}

// claims are the registered and Buzzer claims of a verified payload.
type claims struct {
	iss, sub, jti, jurisdiction string
	aud                         []string
	exp, nbf, iat               time.Time
	hasExp, hasNbf, hasIat      bool
	roles                       []string
}

var errBadClaims = errors.New("bad claims")

func parseClaims(payload []byte) (claims, error) {
	m, err := decodeObject(payload)
	if err != nil {
		return claims{}, err
	}
	var c claims
	optString := func(name string, out *string) error {
		if _, ok := m[name]; ok && !stringMember(m, name, out) {
			return errBadClaims
		}
		return nil
	}
	for name, out := range map[string]*string{"iss": &c.iss, "sub": &c.sub, "jti": &c.jti, "jurisdiction": &c.jurisdiction} {
		if err := optString(name, out); err != nil {
			return claims{}, err
		}
	}
	if v, ok := m["aud"]; ok {
		if c.aud, err = stringOrArray(v); err != nil {
			return claims{}, err
		}
	}
	if v, ok := m["roles"]; ok {
		if err := json.Unmarshal(v, &c.roles); err != nil || len(v) == 0 || v[0] != '[' {
			return claims{}, errBadClaims
		}
	}
	for name, dst := range map[string]struct {
		t   *time.Time
		has *bool
	}{"exp": {&c.exp, &c.hasExp}, "nbf": {&c.nbf, &c.hasNbf}, "iat": {&c.iat, &c.hasIat}} {
		v, ok := m[name]
		if !ok {
			continue
		}
		t, err := numericDate(v)
		if err != nil {
			return claims{}, err
		}
		*dst.t, *dst.has = t, true
	}
	return c, nil
}

// stringOrArray decodes aud, which RFC 7519 allows as one string or an array.
func stringOrArray(v json.RawMessage) ([]string, error) {
	if len(v) > 0 && v[0] == '"' {
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return nil, errBadClaims
		}
		return []string{s}, nil
	}
	var a []string
	if len(v) == 0 || v[0] != '[' || json.Unmarshal(v, &a) != nil {
		return nil, errBadClaims
	}
	return a, nil
}

// maxNumericDate bounds NumericDate values (year 5138) so conversions never
// overflow.
const maxNumericDate = 1e11

// numericDate decodes an RFC 7519 NumericDate: non-negative seconds since the
// epoch, possibly fractional.
func numericDate(v json.RawMessage) (time.Time, error) {
	s := string(v)
	if s == "" || !(s[0] >= '0' && s[0] <= '9') {
		return time.Time{}, errBadClaims
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > maxNumericDate {
			return time.Time{}, errBadClaims
		}
		return time.Unix(n, 0), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, errBadClaims
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
