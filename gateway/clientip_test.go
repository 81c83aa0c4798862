package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/gateway"
)

func TestClientAddrTrustsOnlyConfiguredProxies(t *testing.T) {
	trusted, err := gateway.ParseTrustedProxies("10.0.0.0/8, 192.0.2.7,2001:db8::/32")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer string
		xff        []string
		trusted    []netip.Prefix
		want       string
	}{
		{"no proxies configured: the header is ignored", "203.0.113.9:5000", []string{"1.1.1.1"}, nil, "203.0.113.9"},
		{"untrusted peer: the header is ignored", "203.0.113.9:5000", []string{"1.1.1.1"}, trusted, "203.0.113.9"},
		{"trusted peer: the hop it appended", "10.1.2.3:443", []string{"198.51.100.4"}, trusted, "198.51.100.4"},
		{"a spoofed left part is never read", "10.1.2.3:443", []string{"6.6.6.6, 198.51.100.4"}, trusted, "198.51.100.4"},
		{"right-most untrusted through a chain", "10.1.2.3:443", []string{"6.6.6.6, 198.51.100.4, 192.0.2.7, 10.9.9.9"}, trusted, "198.51.100.4"},
		{"several header lines, in order", "10.1.2.3:443", []string{"6.6.6.6", "198.51.100.4", "10.2.2.2"}, trusted, "198.51.100.4"},
		{"every hop trusted: the left-most", "10.1.2.3:443", []string{"10.7.7.7, 192.0.2.7"}, trusted, "10.7.7.7"},
		{"no header from a trusted peer: the peer", "10.1.2.3:443", nil, trusted, "10.1.2.3"},
		{"an unreadable hop stops at the last trusted one", "10.1.2.3:443", []string{"198.51.100.4, garbage"}, trusted, "10.1.2.3"},
		{"hop with a port", "10.1.2.3:443", []string{"198.51.100.4:6000"}, trusted, "198.51.100.4"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:443", []string{"198.51.100.4"}, trusted, "198.51.100.4"},
		{"IPv6 chain", "[2001:db8::1]:443", []string{"2001:db9::5"}, trusted, "2001:db9::5"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		for _, v := range tc.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		got, ok := gateway.ClientAddr(r, tc.trusted)
		if !ok || got != netip.MustParseAddr(tc.want) {
			t.Errorf("%s: %v %v, want %s", tc.name, got, ok, tc.want)
		}
	}
	if _, err := gateway.ParseTrustedProxies("10.0.0.0/8,nope"); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("a bad entry: %v", err)
	}
}

// Behind a trusted load balancer each client gets its own per-IP bucket;
// from an untrusted peer, X-Forwarded-For cannot buy a fresh one.
func TestPerIPLimitReadsForwardedForFromTrustedProxiesOnly(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		trusted string
		second  int // status of a second client's request from the same peer
	}{
		{"untrusted peer", "", http.StatusTooManyRequests},
		{"trusted load balancer", "127.0.0.0/8,::1", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			trusted, err := gateway.ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, harnessOpts{cfg: func(c *gateway.Config) {
				c.IPRate = gateway.Rate{PerSecond: 0.001, Burst: 1}
				c.TrustedProxies = trusted
			}})
			// Unauthenticated requests spend the per-IP bucket first.
			if r := h.do(http.MethodPost, "/v1/wallet/deposits", "", map[string]string{"X-Forwarded-For": "198.51.100.1"}, ""); r.status != http.StatusUnauthorized {
				t.Fatalf("first client: %d %s", r.status, r.body)
			}
			r := h.do(http.MethodPost, "/v1/wallet/deposits", "", map[string]string{"X-Forwarded-For": "198.51.100.2"}, "")
			if r.status != tc.second {
				t.Fatalf("second client: %d %s, want %d", r.status, r.body, tc.second)
			}
			// The first client's bucket stays empty either way.
			r = h.do(http.MethodPost, "/v1/wallet/deposits", "", map[string]string{"X-Forwarded-For": "198.51.100.1"}, "")
			wantProblem(t, r, 429, buzzer.ETOOMANY, "rate_limited_ip")
		})
	}
}
