package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
)

func goldenRecord(t testing.TB) *Record {
	r := &Record{ID: "0b6f3c2e-5d1a-4f7e-9a51-1c2d3e4f5a6b", Jurisdiction: "US-NJ", Component: ComponentWallet,
		Key: "player-1", Seq: 42, Time: time.Date(2026, 2, 8, 23, 59, 58, 123456000, time.FixedZone("EST", -5*3600)),
		Type: TypeLedgerTransaction}
	if err := r.SetPayload(LedgerTransaction{TxID: "tx-1", Kind: "bet_placed", Player: "player-1", Reference: "bet-1",
		EffectKey: "player-1/idem-\u00e9\"<x>", Postings: []Posting{
			{Account: "player-1|US-NJ|USD|cash|0", Currency: "USD", Amount: -500},
			{Account: "house|US-NJ|USD|stakes|3", Currency: "USD", Amount: 500}}}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEncodeMatchesGolden(t *testing.T) {
	got, err := Encode(goldenRecord(t))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/record_v1.json")
	if err != nil {
		t.Fatal(err)
	}
	want = bytes.TrimSuffix(want, []byte("\n"))
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical encoding changed:\n got %s\nwant %s", got, want)
	}
	if _, err := DecodeCanonical(want); err != nil {
		t.Fatalf("golden is not canonical: %v", err)
	}
}

func TestDecodeCanonicalises(t *testing.T) {
	want, _ := Encode(goldenRecord(t))
	// The same record with keys reordered, whitespace, escapes and a time
	// zone offset: Decode accepts it, Encode brings it back to canonical.
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(want))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	m["time"] = "2026-02-08T23:59:58.123456-05:00"
	loose, _ := json.MarshalIndent(m, "", "   ") // escapes <, > and é differently, reorders nothing
	loose = bytes.Replace(loose, []byte(`"seq": 42`), []byte(`"seq" :  42`), 1)
	r, err := Decode(loose)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	got, _ := Encode(r)
	if !bytes.Equal(got, want) {
		t.Fatalf("canonical form of the loose encoding:\n%s\nwant\n%s", got, want)
	}
	if _, err := DecodeCanonical(loose); err == nil {
		t.Fatal("DecodeCanonical accepted a non-canonical encoding")
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(goldenRecord(t))
	g := string(good)
	cases := map[string]string{
		"duplicate key":     strings.Replace(g, `{"component":"wallet",`, `{"component":"wallet","component":"bet",`, 1),
		"duplicate nested":  strings.Replace(g, `"kind":"bet_placed"`, `"kind":"bet_placed","kind":"x"`, 1),
		"float":             strings.Replace(g, `"amount":500`, `"amount":500.0`, 1),
		"exponent":          strings.Replace(g, `"amount":500`, `"amount":5e2`, 1),
		"unknown field":     strings.Replace(g, `"seq":42`, `"seq":42,"extra":1`, 1),
		"seq zero":          strings.Replace(g, `"seq":42`, `"seq":0`, 1),
		"seq negative":      strings.Replace(g, `"seq":42`, `"seq":-1`, 1),
		"bad component":     strings.Replace(g, `"component":"wallet"`, `"component":"casino"`, 1),
		"bad jurisdiction":  strings.Replace(g, `"US-NJ"`, `"US/NJ"`, 1),
		"bad type":          strings.Replace(g, `"type":"ledger.transaction"`, `"type":"Ledger Tx"`, 1),
		"payload array":     strings.Replace(g, `"payload":{`, `"payload":[{`, 1),
		"time missing":      strings.Replace(g, `"time":"2026-02-09T04:59:58.123456Z"`, `"time":""`, 1),
		"trailing data":     g + `{}`,
		"invalid utf-8":     strings.Replace(g, "player-1", "player-\xff", 1),
		"not an object":     `[1,2]`,
		"empty":             ``,
		"id with space":     strings.Replace(g, `"id":"0b6f`, `"id":"0 b6f`, 1),
		"key control char":  strings.Replace(g, `"key":"player-1"`, `"key":"player\u00011"`, 1),
		"too deep":          strings.Replace(g, `"payload":{`, `"payload":{"x":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)+`,`, 1),
		"huge int":          strings.Replace(g, `"amount":500`, `"amount":99999999999999999999`, 1),
		"missing payload":   strings.Replace(g, `"payload":`, `"payloadx":`, 1),
		"string for number": strings.Replace(g, `"seq":42`, `"seq":"42"`, 1),
	}
	for name, in := range cases {
		if in == g {
			t.Fatalf("%s: replacement did not apply", name)
		}
		if _, err := Decode([]byte(in)); err == nil {
			t.Errorf("%s: accepted %s", name, in)
		} else if buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: code %s", name, buzzer.ErrorCode(err))
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := Encode(goldenRecord(f))
	f.Add(good)
	f.Add([]byte(`{"component":"rng","id":"x","jurisdiction":"GB","key":"k","payload":{},"seq":1,"time":"2026-01-01T00:00:00Z","type":"rng.draw"}`))
	f.Add([]byte(`{"a":{"b":[1,-2,true,null,"\u0001"]}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := Encode(r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		r2, err := DecodeCanonical(enc)
		if err != nil {
			t.Fatalf("encoding is not canonical: %v\n%s", err, enc)
		}
		enc2, _ := Encode(r2)
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc, enc2)
		}
	})
}
