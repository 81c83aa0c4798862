package gateway

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/buzzer-bet/buzzer"
)

// ParseTrustedProxies reads a comma-separated list of CIDR prefixes or
// single addresses (a /32 or /128): the load balancers and proxies whose
// X-Forwarded-For the gateway believes.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, buzzer.Errorf(buzzer.EINVALID, "trusted proxy %q is neither a CIDR prefix nor an IP address", f)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func trustedAddr(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one address of a forwarding chain: a bare IP, or an
// IP:port as some proxies write.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// ClientAddr is the address a request is accounted to (per-IP rate limit):
// the TCP peer, unless the peer is a trusted proxy; then X-Forwarded-For is
// read from the right (the hop the trusted peer itself appended) and the
// first address that is not a trusted proxy is the client. Entries left of
// it were written by the client and may be anything, so they are never
// read. When every hop is trusted the left-most counts; when a trusted
// proxy wrote an unreadable hop, the last trusted address counts. ok is
// false only when the peer address itself is unreadable.
func ClientAddr(r *http.Request, trusted []netip.Prefix) (addr netip.Addr, ok bool) {
	addr, ok = parseHop(r.RemoteAddr)
	if !ok || len(trusted) == 0 || !trustedAddr(addr, trusted) {
		return addr, ok
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			return addr, true
		}
		addr = a
		if !trustedAddr(a, trusted) {
			return addr, true
		}
	}
	return addr, true
}

// ipKey is the rate-limit key of a client address: the address for IPv4,
// its /64 for IPv6 (one subscriber usually holds a whole /64).
func ipKey(a netip.Addr, ok bool) string {
	if !ok {
		return "ip:unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return "ip:" + p.String()
	}
	return "ip:" + a.String()
}
