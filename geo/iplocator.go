package geo

import (
	"context"
	"errors"
	"net/netip"
	"sort"
)

// IPLocation is where an IP geolocation database places an address.
type IPLocation struct {
	Point Point
	// AccuracyRadiusM is the database's accuracy radius, 0 if unknown.
	AccuracyRadiusM float64
	Country         string // ISO 3166-1 alpha-2, "" if unknown
	Subdivision     string // ISO 3166-2 subdivision code (e.g. "NJ"), "" if unknown
}

// ErrIPNotFound is returned by an IPLocator that has no location for the
// address (private ranges, unallocated space, an entry without
// coordinates). The service denies such tokens; it is not an outage.
var ErrIPNotFound = errors.New("geo: no location for ip address")

// IPLocator places an IP address. Any error other than ErrIPNotFound means
// the locator could not answer.
type IPLocator interface {
	LocateIP(ctx context.Context, ip netip.Addr) (IPLocation, error)
}

// StaticIPLocator places addresses from a fixed table of prefixes, longest
// prefix first. Operators use it for ranges their GeoIP database does not
// know (their own networks); dev mode uses it for loopback and private
// ranges.
type StaticIPLocator struct {
	entries []staticEntry
}

type staticEntry struct {
	prefix netip.Prefix
	loc    IPLocation
}

// NewStaticIPLocator builds a locator from prefix → location.
func NewStaticIPLocator(table map[netip.Prefix]IPLocation) *StaticIPLocator {
	s := &StaticIPLocator{}
	for p, l := range table {
		s.entries = append(s.entries, staticEntry{prefix: p.Masked(), loc: l})
	}
	sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].prefix.Bits() > s.entries[j].prefix.Bits() })
	return s
}

// LocateIP implements IPLocator.
func (s *StaticIPLocator) LocateIP(ctx context.Context, ip netip.Addr) (IPLocation, error) {
	if err := ctx.Err(); err != nil {
		return IPLocation{}, err
	}
	ip = ip.Unmap()
	for _, e := range s.entries {
		if e.prefix.Contains(ip) {
			return e.loc, nil
		}
	}
	return IPLocation{}, ErrIPNotFound
}
