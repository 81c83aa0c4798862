package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestRNGDrawCanonicalMatchesSetPayload: the RNG capture's hand-written
// encoding is byte for byte what the generic path produces.
func TestRNGDrawCanonicalMatchesSetPayload(t *testing.T) {
	for _, p := range []RNGDraw{
		{DrawID: "d", Log: "l"},
		{DrawID: "0b8e1c9e-1f7a-4c4e-9a53-3c1d2f0e9b11", Log: "buzzer.local/rng/US-NJ", Index: 1 << 40, Purpose: "blackjack.shoe",
			Ref: `t1/r9 "quoted" <&> \ é`, Requester: "tables\n\x01", Kind: "shuffle", N: 416, Count: 1, LeafHash: "ab"},
		{DrawID: "", Log: "", Index: 0, N: -1, Count: -2},
	} {
		got, ok := p.canonical()
		if !ok {
			t.Fatalf("%+v declined", p)
		}
		var r Record
		if err := r.SetPayload(p); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, r.Payload) {
			t.Fatalf("canonical\n%s\nSetPayload\n%s", got, r.Payload)
		}
	}
	if _, ok := (RNGDraw{Result: json.RawMessage(`{}`)}).canonical(); ok {
		t.Fatal("a result must take the generic path")
	}
	if _, ok := (RNGDraw{Ref: "\xff"}).canonical(); ok {
		t.Fatal("invalid UTF-8 must take the generic path")
	}
}

// TestEncodeRecanonicalisesAChangedPayload: the skip Encode takes for a
// payload SetPayload made is never taken once the payload changed.
func TestEncodeRecanonicalisesAChangedPayload(t *testing.T) {
	r := &Record{ID: "x", Jurisdiction: "NJ", Component: ComponentTable, Key: "t", Seq: 1, Type: "t.e"}
	r.Time = r.Time.AddDate(2000, 0, 0)
	if err := r.SetPayload(map[string]int{"b": 1, "a": 2}); err != nil {
		t.Fatal(err)
	}
	r.Payload = json.RawMessage(`{ "z": 1, "a": 2 }`)
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"payload":{"a":2,"z":1}`)) {
		t.Fatalf("encoded %s", b)
	}
}
