package audit

import (
	"bytes"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// decodeCanonical is Decode's fast path for a record that is already in
// canonical form, which is what every record Buzzer captures is: it checks
// the form in one pass over the bytes, without building tokens, and reads
// the record's members from it. It reports false for anything it does not
// take, and the general path then decides; so for every input it either
// returns what the general path would, or nothing.
func decodeCanonical(b []byte) (*Record, bool) {
	if len(b) < 2 || b[0] != '{' || b[1] == '}' || !utf8.Valid(b) {
		return nil, false
	}
	s := scanner{b: b, i: 1}
	var w wireRecord
	var component string
	var prev []byte
	for {
		key, ok := s.plainString()
		if !ok || (prev != nil && bytes.Compare(prev, key) >= 0) || !s.byte(':') {
			return nil, false
		}
		prev = key
		v0 := s.i
		if !s.value(1) {
			return nil, false
		}
		raw := b[v0:s.i]
		var str *string
		switch string(key) {
		case "component":
			str = &component
		case "id":
			str = &w.ID
		case "jurisdiction":
			str = &w.Jurisdiction
		case "key":
			str = &w.Key
		case "time":
			str = &w.Time
		case "type":
			str = &w.Type
		case "payload":
			if raw[0] != '{' {
				return nil, false
			}
			w.Payload = bytes.Clone(raw)
		case "seq":
			if raw[0] == '-' {
				return nil, false
			}
			n, err := strconv.ParseUint(string(raw), 10, 64)
			if err != nil {
				return nil, false
			}
			w.Seq = n
		default:
			return nil, false
		}
		if str != nil {
			if raw[0] != '"' {
				return nil, false
			}
			*str = unescapeCanonical(raw)
		}
		if s.byte('}') {
			break
		}
		if !s.byte(',') {
			return nil, false
		}
	}
	if s.i != len(b) {
		return nil, false
	}
	w.Component = Component(component)
	return w.record()
}

// record turns the wire form into a Record as Decode does, reporting false
// where Decode would refuse it (the general path then says why).
func (w *wireRecord) record() (*Record, bool) {
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil || len(w.Payload) == 0 {
		return nil, false
	}
	r := w.at(t)
	if r.Validate() != nil {
		return nil, false
	}
	return r, true
}

// scanner walks JSON that must already be canonical (see canonicalObject):
// no whitespace, object members in strictly increasing byte order of their
// keys, integers written as strconv writes them, and strings escaped exactly
// as appendString escapes them. Each method reports false at the first byte
// that is not so, without saying why.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) byte(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

func (s *scanner) value(depth int) bool {
	if depth > maxJSONDepth || s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		_, ok := s.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return s.integer()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return false
}

func (s *scanner) object(depth int) bool {
	s.i++ // '{'
	if s.byte('}') {
		return true
	}
	var prev []byte
	for {
		// A key with an escape would have to be compared decoded; the
		// general path does that.
		key, ok := s.plainString()
		if !ok || (prev != nil && bytes.Compare(prev, key) >= 0) || !s.byte(':') || !s.value(depth+1) {
			return false
		}
		prev = key
		if s.byte('}') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

func (s *scanner) array(depth int) bool {
	s.i++ // '['
	if s.byte(']') {
		return true
	}
	for {
		if !s.value(depth + 1) {
			return false
		}
		if s.byte(']') {
			return true
		}
		if !s.byte(',') {
			return false
		}
	}
}

// plainString scans a string without escapes and returns its content.
func (s *scanner) plainString() ([]byte, bool) {
	start := s.i
	escaped, ok := s.str()
	if !ok || escaped {
		return nil, false
	}
	return s.b[start+1 : s.i-1], true
}

// str scans a string, reporting whether it holds escapes; every escape must
// be the one appendString writes for its character.
func (s *scanner) str() (escaped, ok bool) {
	if !s.byte('"') {
		return false, false
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped, true
		case c < 0x20:
			return false, false
		case c != '\\':
			s.i++
			continue
		}
		escaped = true
		if s.i+1 >= len(s.b) {
			return false, false
		}
		switch s.b[s.i+1] {
		case '"', '\\', 'n', 'r', 't', 'b', 'f':
			s.i += 2
		case 'u':
			// appendString writes \u00xx, lower-case, for the control
			// characters without a short escape.
			if s.i+6 > len(s.b) || s.b[s.i+2] != '0' || s.b[s.i+3] != '0' {
				return false, false
			}
			hi, lo := s.b[s.i+4], s.b[s.i+5]
			if hi != '0' && hi != '1' || !(lo >= '0' && lo <= '9' || lo >= 'a' && lo <= 'f') {
				return false, false
			}
			switch c := (hi-'0')<<4 | unhex(lo); c {
			case '\n', '\r', '\t', '\b', '\f':
				return false, false
			}
			s.i += 6
		default:
			return false, false
		}
	}
	return false, false
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}

// integer scans an integer as strconv writes it. Up to 18 digits always
// fit in an int64; longer ones are left to the general path.
func (s *scanner) integer() bool {
	neg := s.byte('-')
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	n := s.i - start
	switch {
	case n == 0 || n > 18:
		return false
	case s.b[start] == '0':
		return n == 1 && !neg // "0", never "-0" or a leading zero
	}
	return true
}

func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

// unescapeCanonical returns the content of a string scanned by str.
func unescapeCanonical(raw []byte) string {
	raw = raw[1 : len(raw)-1]
	i := bytes.IndexByte(raw, '\\')
	if i < 0 {
		return string(raw)
	}
	out := make([]byte, 0, len(raw))
	for i >= 0 {
		out = append(out, raw[:i]...)
		switch e := raw[i+1]; e {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			out = append(out, (raw[i+4]-'0')<<4|unhex(raw[i+5]))
			raw = raw[i+6:]
			i = bytes.IndexByte(raw, '\\')
			continue
		default: // '"' or '\\'
			out = append(out, e)
		}
		raw = raw[i+2:]
		i = bytes.IndexByte(raw, '\\')
	}
	return string(append(out, raw...))
}

// recanon appends the canonical form of the JSON value at s.i, for JSON as
// json.Marshal writes it: compact, strings and integers already as
// appendString and strconv write them, only object members out of order.
// It sorts those and copies everything else through. It reports false for
// anything else (whitespace, a key with an escape, a duplicate key, a
// decimal, a string json.Marshal escaped for HTML), and canonicalObject
// then takes encoding/json's general path, which encodes or refuses it.
func (s *scanner) recanon(out []byte, depth int) ([]byte, bool) {
	if depth > maxJSONDepth || s.i >= len(s.b) {
		return nil, false
	}
	switch s.b[s.i] {
	case '{':
		return s.recanonObject(out, depth)
	case '[':
		s.i++
		out = append(out, '[')
		if s.byte(']') {
			return append(out, ']'), true
		}
		for {
			var ok bool
			if out, ok = s.recanon(out, depth+1); !ok {
				return nil, false
			}
			if s.byte(']') {
				return append(out, ']'), true
			}
			if !s.byte(',') {
				return nil, false
			}
			out = append(out, ',')
		}
	}
	// A string, an integer or a literal the scanner takes is canonical as
	// written.
	start := s.i
	if !s.value(depth) {
		return nil, false
	}
	return append(out, s.b[start:s.i]...), true
}

// rawMember is an object member as recanon collects it: the key's bytes
// (no escapes) and the value's canonical form.
type rawMember struct{ key, val []byte }

func (s *scanner) recanonObject(out []byte, depth int) ([]byte, bool) {
	s.i++ // '{'
	if s.byte('}') {
		return append(out, '{', '}'), true
	}
	var ms []rawMember
	sorted := true
	for {
		key, ok := s.plainString()
		if !ok || !s.byte(':') {
			return nil, false
		}
		// A composite value is re-encoded; a scalar is kept as a slice of
		// the input (canonical as written, see recanon).
		var val []byte
		if s.i < len(s.b) && (s.b[s.i] == '{' || s.b[s.i] == '[') {
			val, ok = s.recanon(nil, depth+1)
		} else {
			start := s.i
			ok = s.value(depth + 1)
			val = s.b[start:s.i]
		}
		if !ok {
			return nil, false
		}
		if n := len(ms); n > 0 && bytes.Compare(ms[n-1].key, key) >= 0 {
			sorted = false
		}
		ms = append(ms, rawMember{key, val})
		if s.byte('}') {
			break
		}
		if !s.byte(',') {
			return nil, false
		}
	}
	if !sorted {
		slices.SortFunc(ms, func(a, b rawMember) int { return bytes.Compare(a.key, b.key) })
		for i := 1; i < len(ms); i++ {
			if bytes.Equal(ms[i-1].key, ms[i].key) {
				return nil, false // a duplicate: the general path says so
			}
		}
	}
	out = append(out, '{')
	for i, m := range ms {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, m.key...)
		out = append(out, '"', ':')
		out = append(out, m.val...)
	}
	return append(out, '}'), true
}
