package geo

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/buzzer-bet/buzzer"
)

// FuzzParseClaims: any payload either parses into claims that satisfy
// every validation rule, or is rejected; never a panic.
func FuzzParseClaims(f *testing.F) {
	valid := Claims{
		Issuer: DevIssuer, PlayerID: "p", SessionID: "s", Challenge: "c", IssuedAt: 1_770_000_000, Expiry: 1_770_000_300,
		GPS:        GPSFix{Lat: 40.2222, Lon: -74.7656, AccuracyM: 10},
		CellTowers: []CellTower{{MCC: "310", MNC: "410", LAC: 1, CID: 2}},
		WiFiBSSIDs: []string{"a4:2b:b0:11:22:33"},
		IP:         "203.0.113.7",
		Risk:       RiskFlags{VPN: true},
	}
	b, _ := json.Marshal(valid)
	f.Add(b)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"player_id":"p","session_id":"s","challenge":"c","iat":1,"exp":2,"gps":{"lat":91,"lon":0,"accuracy_m":1},"ip":"::1"}`))
	f.Add([]byte(`{"player_id":"p","session_id":"s","challenge":"c","iat":1,"exp":2,"gps":{"lat":1,"lon":1,"accuracy_m":1},"ip":"fe80::1%eth0"}`))
	f.Add([]byte(`{"player_id":"p","session_id":"s","challenge":"c","iat":1,"exp":2,"gps":{"lat":1,"lon":1,"accuracy_m":1e400},"ip":"1.2.3.4"}`))
	f.Add([]byte(`{"cell_towers":[{"mcc":"31a","mnc":"1","lac":-1,"cid":1}]} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseClaims(data)
		if err != nil {
			return
		}
		if c.PlayerID == "" || c.SessionID == "" || c.Challenge == "" || c.IssuedAt <= 0 || c.Expiry <= 0 {
			t.Fatalf("accepted claims missing required fields: %+v", c)
		}
		if !(c.GPS.AccuracyM > 0) || (Point{c.GPS.Lat, c.GPS.Lon}).validate() != nil {
			t.Fatalf("accepted bad gps: %+v", c.GPS)
		}
		if _, err := c.DeviceIP(); err != nil {
			t.Fatalf("accepted bad ip %q", c.IP)
		}
		for _, tw := range c.CellTowers {
			if !digits(tw.MCC, 3, 3) || !digits(tw.MNC, 2, 3) {
				t.Fatalf("accepted bad tower %+v", tw)
			}
		}
	})
}

// FuzzCheckToken: arbitrary Geolocation-Token header values never panic
// and are never allowed, except the one genuinely signed seed.
func FuzzCheckToken(f *testing.F) {
	fx := newFixture(f, nil)
	genuine := fx.sign(fx.claims(trenton))
	// The seed's challenge is spent by checking it once; afterwards no
	// input can carry an unspent challenge, so nothing may be allowed.
	if _, err := fx.check(genuine); err != nil {
		f.Fatal(err)
	}
	fx.svc.Invalidate(player, session)
	f.Add(genuine)
	parts := strings.Split(genuine, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".." + parts[2])
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Add("eyJhbGciOiJIUzI1NiIsImtpZCI6IngiLCJ0eXAiOiJnZW8rand0In0.e30.c2ln")
	f.Add("a.b.c.d.e")
	f.Add("")
	f.Fuzz(func(t *testing.T, raw string) {
		d, err := fx.svc.Check(context.Background(), CheckInput{PlayerID: player, SessionID: session, Token: raw})
		if err == nil {
			t.Fatalf("token allowed: %+v", d)
		}
		switch buzzer.ErrorCode(err) {
		case buzzer.EFORBIDDEN, buzzer.EINVALID:
		default:
			t.Fatalf("unexpected error class %v", err)
		}
	})
}

// FuzzParseJWKS: arbitrary JWKS documents never panic, and an accepted set
// holds only public ES256/EdDSA keys.
func FuzzParseJWKS(f *testing.F) {
	fx := newFixture(f, nil)
	f.Add(fx.provider.JWKS())
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"h"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"p"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"e","alg":"EdDSA"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, err := ParseJWKS(data)
		if err != nil {
			return
		}
		if keys.Len() == 0 {
			t.Fatal("accepted empty key set")
		}
		for kid, k := range keys.byKID {
			if kid == "" || (k.alg != "ES256" && k.alg != "EdDSA") {
				t.Fatalf("accepted key %q with alg %s", kid, k.alg)
			}
		}
	})
}

// FuzzCheckSignedPayload: genuinely signed tokens with arbitrary payloads
// reach every check after the signature. Whatever the payload, an allowed
// decision must be for this player session, a fresh challenge, and a fix
// in a served jurisdiction clear of the buffer.
func FuzzCheckSignedPayload(f *testing.F) {
	fx := newFixture(f, nil)
	c := fx.claims(trenton)
	b, _ := json.Marshal(c)
	f.Add(b, true)
	c.Risk.Emulator = true
	b, _ = json.Marshal(c)
	f.Add(b, false)
	f.Add([]byte(`{"player_id":"player-1","session_id":"session-1","challenge":"x","iat":1,"exp":2}`), true)
	f.Add([]byte(`null`), false)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: fx.provider.priv}, (&jose.SignerOptions{}).WithType(TokenType).WithHeader("kid", fx.provider.KeyID()))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte, freshChallenge bool) {
		var ch string
		if freshChallenge {
			// Give the payload a live challenge when it names the
			// placeholder, so the later checks are reachable.
			issued, err := fx.svc.IssueChallenge(context.Background(), player, session)
			if err != nil {
				// Earlier inputs left unspent challenges; let them expire.
				fx.clock.Advance(MaxChallengeTTL)
				if issued, err = fx.svc.IssueChallenge(context.Background(), player, session); err != nil {
					t.Fatal(err)
				}
			}
			ch = issued.Value
			var m map[string]any
			if json.Unmarshal(payload, &m) == nil && m != nil {
				m["challenge"] = ch
				m["iat"] = fx.clock.Now().Unix()
				if e, ok := m["exp"].(float64); !ok || e < float64(fx.clock.Now().Unix()) {
					m["exp"] = fx.clock.Now().Unix() + 60
				}
				payload, _ = json.Marshal(m)
			}
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := jws.CompactSerialize()
		if err != nil {
			t.Fatal(err)
		}
		fx.svc.Invalidate(player, session)
		d, err := fx.check(raw)
		if err != nil {
			if code := buzzer.ErrorCode(err); code != buzzer.EFORBIDDEN && code != buzzer.EINVALID {
				t.Fatalf("unexpected error class %v", err)
			}
			return
		}
		cl, perr := ParseClaims(payload)
		if perr != nil {
			t.Fatalf("allowed a payload that does not parse: %v", perr)
		}
		if cl.PlayerID != player || cl.SessionID != session || cl.Challenge != ch || ch == "" {
			t.Fatalf("allowed foreign claims %+v", cl)
		}
		if cl.Risk.raised() != "" || (d.Jurisdiction != "NJ" && d.Jurisdiction != "PA") || d.BoundaryDistanceM < DefaultBoundaryBufferM {
			t.Fatalf("allowed %+v for %+v", d, cl)
		}
	})
}
