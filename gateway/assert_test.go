package gateway_test

import (
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/gateway/limitertest"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
)

func TestForwardedDecisionIsBoundToSessionRequestAndEdge(t *testing.T) {
	dir := t.TempDir()
	signer, err := gateway.OpenSigner(gateway.KeyFile(dir), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	again, err := gateway.OpenSigner(gateway.KeyFile(dir), rand.Reader)
	if err != nil || string(again.JWKS()) != string(signer.JWKS()) {
		t.Fatalf("reopening the key gave another key (%v)", err)
	}
	if b, err := os.ReadFile(gateway.JWKSFile(dir)); err != nil || string(b) != string(signer.JWKS())+"\n" {
		t.Fatalf("public JWKS file: %v", err)
	}
	other, _ := gateway.OpenSigner(gateway.KeyFile(t.TempDir()), rand.Reader)
	clock := limitertest.NewClockAt(time.Now())
	nj, err := gateway.LoadVerifier(gateway.JWKSFile(dir), "NJ", clock)
	if err != nil {
		t.Fatal(err)
	}
	alice := auth.Principal{Subject: "alice", Jurisdiction: "NJ", TokenID: "t1"}
	d := geo.Decision{Allowed: true, PlayerID: "alice", SessionID: "jti:t1", Jurisdiction: "NJ", TokenSHA256: "ab12",
		DecidedAt: clock.Now(), ValidUntil: clock.Now().Add(5 * time.Minute), Reason: "verified"}
	req := func(method, path, key string) *http.Request {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("Authorization", "Bearer x")
		if key != "" {
			r.Header.Set(httpapi.IdempotencyHeader, key)
		}
		return r
	}
	sign := func(s *gateway.Signer, d geo.Decision, r *http.Request) string {
		v, err := s.Sign(d, r, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	good := sign(signer, d, req("POST", "/v1/wallet/deposits", "k1"))

	check := func(v *gateway.Verifier, r *http.Request, header string, p auth.Principal) (geo.Decision, error) {
		if header != "" {
			r.Header.Set(gateway.DecisionHeader, header)
		}
		return v.Decide(r, p)
	}
	got, err := check(nj, req("POST", "/v1/wallet/deposits", "k1"), good, alice)
	if err != nil || !got.Allowed || got.Jurisdiction != "NJ" || got.TokenSHA256 != "ab12" || !got.DecidedAt.Equal(d.DecidedAt.UTC()) {
		t.Fatalf("valid forwarded decision: %+v %v", got, err)
	}

	pa := d
	pa.Jurisdiction = "PA"
	bob := auth.Principal{Subject: "alice", Jurisdiction: "PA", TokenID: "t1"}
	for _, tc := range []struct {
		name   string
		r      *http.Request
		header string
		p      auth.Principal
		reason string
	}{
		{"missing", req("POST", "/v1/wallet/deposits", "k1"), "", alice, "geolocation_required"},
		{"another gateway key", req("POST", "/v1/wallet/deposits", "k1"), sign(other, d, req("POST", "/v1/wallet/deposits", "k1")), alice, "gateway_decision_invalid"},
		{"garbage", req("POST", "/v1/wallet/deposits", "k1"), "a.b.c", alice, "gateway_decision_invalid"},
		{"tampered", req("POST", "/v1/wallet/deposits", "k1"), good[:len(good)-4] + "AAAA", alice, "gateway_decision_invalid"},
		{"other path", req("POST", "/v1/wallet/withdrawals", "k1"), good, alice, "gateway_decision_mismatch"},
		{"other idempotency key", req("POST", "/v1/wallet/deposits", "k2"), good, alice, "gateway_decision_mismatch"},
		{"other session", req("POST", "/v1/wallet/deposits", "k1"), good, auth.Principal{Subject: "alice", Jurisdiction: "NJ", TokenID: "t2"}, "gateway_decision_mismatch"},
		{"other player", req("POST", "/v1/wallet/deposits", "k1"), good, auth.Principal{Subject: "bob", Jurisdiction: "NJ", TokenID: "t1"}, "gateway_decision_mismatch"},
		{"PA decision at the NJ edge", req("POST", "/v1/wallet/deposits", "k1"), sign(signer, pa, req("POST", "/v1/wallet/deposits", "k1")), bob, "edge_jurisdiction_mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := check(nj, tc.r, tc.header, tc.p)
			if buzzer.ErrorCode(err) != buzzer.EFORBIDDEN || buzzer.ErrorReason(err) != tc.reason {
				t.Fatalf("err %v, want forbidden/%s", err, tc.reason)
			}
		})
	}

	clock.Advance(gateway.MaxDecisionLifetime + 3*time.Second)
	if _, err := check(nj, req("POST", "/v1/wallet/deposits", "k1"), good, alice); buzzer.ErrorReason(err) != "gateway_decision_expired" {
		t.Fatalf("expired forwarded decision: %v", err)
	}

	if _, err := gateway.NewVerifier(signer.JWKS(), "", clock); err == nil {
		t.Fatal("a verifier without its edge jurisdiction was built")
	}
	if _, err := gateway.NewVerifier([]byte(`{"keys":[]}`), "NJ", clock); err == nil {
		t.Fatal("a verifier without keys was built")
	}
}
