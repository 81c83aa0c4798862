package geo

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func TestIsBSSID(t *testing.T) {
	for s, want := range map[string]bool{
		"a4:2b:b0:11:22:33": true, "A4-2B-B0-11-22-33": true,
		"a4:2b:b0:11:22": false, "a4:2b:b0:11:22:3g": false, "a4:2b:b0:11:22:333": false, "a42bb0112233": false, "": false,
	} {
		if got := isBSSID(s); got != want {
			t.Errorf("isBSSID(%q) = %v", s, got)
		}
	}
}

func TestParseClaimsRejects(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"player_id": "p", "session_id": "s", "challenge": "c", "iat": 100, "exp": 200,
			"gps": map[string]any{"lat": 40.2, "lon": -74.7, "accuracy_m": 10}, "ip": "203.0.113.7",
			"cell_towers": []any{map[string]any{"mcc": "310", "mnc": "410", "lac": 1, "cid": 2}},
			"wifi_bssids": []any{"a4:2b:b0:11:22:33"},
		}
	}
	if _, err := ParseClaims(mustJSON(t, base())); err != nil {
		t.Fatalf("base claims rejected: %v", err)
	}
	for name, mutate := range map[string]func(m map[string]any){
		"no player":        func(m map[string]any) { delete(m, "player_id") },
		"long session":     func(m map[string]any) { m["session_id"] = strings.Repeat("s", 129) },
		"no challenge":     func(m map[string]any) { m["challenge"] = "" },
		"no iat":           func(m map[string]any) { delete(m, "iat") },
		"no gps":           func(m map[string]any) { delete(m, "gps") },
		"lat out of range": func(m map[string]any) { m["gps"].(map[string]any)["lat"] = 90.5 },
		"zero accuracy":    func(m map[string]any) { m["gps"].(map[string]any)["accuracy_m"] = 0 },
		"bad ip":           func(m map[string]any) { m["ip"] = "203.0.113" },
		"zoned ip":         func(m map[string]any) { m["ip"] = "fe80::1%eth0" },
		"bad mcc": func(m map[string]any) {
			m["cell_towers"] = []any{map[string]any{"mcc": "31", "mnc": "410", "lac": 1, "cid": 2}}
		},
		"negative cid": func(m map[string]any) {
			m["cell_towers"] = []any{map[string]any{"mcc": "310", "mnc": "410", "lac": 1, "cid": -2}}
		},
		"bad bssid":  func(m map[string]any) { m["wifi_bssids"] = []any{"nope"} },
		"string iat": func(m map[string]any) { m["iat"] = "100" },
	} {
		m := base()
		mutate(m)
		if c, err := ParseClaims(mustJSON(t, m)); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
	if _, err := ParseClaims(append(mustJSON(t, base()), []byte(` {"x":1}`)...)); err == nil {
		t.Error("trailing data accepted")
	}
}

func TestNewProviderKeys(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(newRand(3))
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), newRand(4))
	ec384, _ := ecdsa.GenerateKey(elliptic.P384(), newRand(5))
	rsaPriv, _ := rsa.GenerateKey(newRand(6), 2048)
	ok := jose.JSONWebKey{Key: edPub, KeyID: "ed", Use: "sig"}
	tests := []struct {
		name  string
		keys  []jose.JSONWebKey
		wantN int // 0 means an error is wanted
	}{
		{"ed25519 and p-256", []jose.JSONWebKey{ok, {Key: &ecPriv.PublicKey, KeyID: "ec", Algorithm: "ES256"}}, 2},
		{"unusable keys skipped", []jose.JSONWebKey{ok, {Key: &rsaPriv.PublicKey, KeyID: "rsa"}, {Key: &ec384.PublicKey, KeyID: "p384"}, {Key: &ecPriv.PublicKey, KeyID: "enc", Use: "enc"}}, 1},
		{"only unusable keys", []jose.JSONWebKey{{Key: &rsaPriv.PublicKey, KeyID: "rsa"}}, 0},
		{"no kid", []jose.JSONWebKey{{Key: edPub}}, 0},
		{"duplicate kid", []jose.JSONWebKey{ok, ok}, 0},
		{"alg not pinned to key type", []jose.JSONWebKey{{Key: edPub, KeyID: "ed", Algorithm: "ES256"}}, 0},
		{"private key", []jose.JSONWebKey{{Key: ecPriv, KeyID: "ec"}}, 0},
	}
	for _, tt := range tests {
		got, err := NewProviderKeys(jose.JSONWebKeySet{Keys: tt.keys})
		switch {
		case tt.wantN == 0 && err == nil:
			t.Errorf("%s: accepted", tt.name)
		case tt.wantN != 0 && (err != nil || got.Len() != tt.wantN):
			t.Errorf("%s: %v keys, err %v; want %d", tt.name, got, err, tt.wantN)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
