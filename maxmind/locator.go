// Package maxmind implements geo.IPLocator over a MaxMind DB (MMDB) file:
// the operator's GeoIP2/GeoLite2 City database, or any City-schema MMDB.
// It owns reading that file and mapping its records to geo.IPLocation; it
// never downloads or updates the database (operators deliver it) and holds
// no compliance policy (package geo decides what a location means).
package maxmind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"

	"github.com/buzzer-bet/buzzer/geo"
)

var _ geo.IPLocator = (*Locator)(nil)

// Locator looks addresses up in an open MMDB. It is safe for concurrent
// use; Close it only after the last lookup.
type Locator struct {
	r *maxminddb.Reader
}

// Open memory-maps the MMDB at path. The database must be of a City
// schema (its type names "City" or "Enterprise"), since only those carry
// coordinates; with any other it fails here rather than denying every
// player later.
func Open(path string) (*Locator, error) {
	r, err := maxminddb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("maxmind: open %s: %w", path, err)
	}
	return newLocator(r)
}

// FromBytes reads an MMDB held in memory; b must not change afterwards.
func FromBytes(b []byte) (*Locator, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("maxmind: %w", err)
	}
	return newLocator(r)
}

func newLocator(r *maxminddb.Reader) (*Locator, error) {
	t := r.Metadata.DatabaseType
	if !strings.Contains(t, "City") && !strings.Contains(t, "Enterprise") {
		r.Close()
		return nil, fmt.Errorf("maxmind: database type %q carries no coordinates; a City database is required", t)
	}
	return &Locator{r: r}, nil
}

// DatabaseType returns the database's type from its metadata, such as
// "GeoIP2-City".
func (l *Locator) DatabaseType() string { return l.r.Metadata.DatabaseType }

// Close releases the database.
func (l *Locator) Close() error { return l.r.Close() }

// cityRecord is the subset of the GeoIP2 City schema the locator reads.
type cityRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	Subdivisions []struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"subdivisions"`
	Location struct {
		Latitude       *float64 `maxminddb:"latitude"`
		Longitude      *float64 `maxminddb:"longitude"`
		AccuracyRadius uint16   `maxminddb:"accuracy_radius"` // kilometres
	} `maxminddb:"location"`
}

// LocateIP implements geo.IPLocator. Addresses absent from the database,
// or present without coordinates, give geo.ErrIPNotFound; a record that
// cannot be decoded is an error (the database is damaged).
func (l *Locator) LocateIP(ctx context.Context, ip netip.Addr) (geo.IPLocation, error) {
	if err := ctx.Err(); err != nil {
		return geo.IPLocation{}, err
	}
	if !ip.IsValid() {
		return geo.IPLocation{}, geo.ErrIPNotFound
	}
	res := l.r.Lookup(ip.Unmap())
	if err := res.Err(); err != nil {
		return geo.IPLocation{}, fmt.Errorf("maxmind: lookup %s: %w", ip, err)
	}
	if !res.Found() {
		return geo.IPLocation{}, geo.ErrIPNotFound
	}
	var rec cityRecord
	if err := res.Decode(&rec); err != nil {
		return geo.IPLocation{}, fmt.Errorf("maxmind: decode record for %s: %w", ip, err)
	}
	lat, lon := rec.Location.Latitude, rec.Location.Longitude
	if lat == nil || lon == nil {
		return geo.IPLocation{}, geo.ErrIPNotFound
	}
	if *lat < -90 || *lat > 90 || *lon < -180 || *lon > 180 || *lat != *lat || *lon != *lon {
		return geo.IPLocation{}, errors.New("maxmind: record has coordinates out of range")
	}
	loc := geo.IPLocation{
		Point:           geo.Point{Lat: *lat, Lon: *lon},
		AccuracyRadiusM: float64(rec.Location.AccuracyRadius) * 1000,
		Country:         rec.Country.ISOCode,
	}
	if len(rec.Subdivisions) > 0 {
		loc.Subdivision = rec.Subdivisions[0].ISOCode
	}
	return loc, nil
}
