package gateway_test

import (
	"crypto/rand"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
)

var fuzzVerifier struct {
	once sync.Once
	v    *gateway.Verifier
	err  error
}

func fuzzDecision(t *testing.T, header string) {
	fuzzVerifier.once.Do(func() {
		s, err := gateway.OpenSigner(gateway.KeyFile(t.TempDir()), rand.Reader)
		if err != nil {
			fuzzVerifier.err = err
			return
		}
		fuzzVerifier.v, fuzzVerifier.err = gateway.NewVerifier(s.JWKS(), "NJ", buzzer.SystemClock{})
	})
	if fuzzVerifier.err != nil {
		t.Fatal(fuzzVerifier.err)
	}
	r := httptest.NewRequest("POST", "/v1/wallet/deposits", nil)
	r.Header.Set(gateway.DecisionHeader, header)
	d, err := fuzzVerifier.v.Decide(r, auth.Principal{Subject: "alice", Jurisdiction: "NJ", TokenID: "t"})
	if err == nil || d.Allowed || buzzer.ErrorCode(err) != buzzer.EFORBIDDEN {
		t.Fatalf("unsigned header %q: %+v %v", header, d, err)
	}
}
