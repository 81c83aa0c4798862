package maxmind

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/buzzer-bet/buzzer/geo"
)

func city(country, subdivision string, lat, lon float64, radiusKm uint16) mmdbtype.Map {
	m := mmdbtype.Map{
		"country":  mmdbtype.Map{"iso_code": mmdbtype.String(country)},
		"location": mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon), "accuracy_radius": mmdbtype.Uint16(radiusKm)},
	}
	if subdivision != "" {
		m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(subdivision)}}
	}
	return m
}

// writeDB builds a small City-schema MMDB of the given type.
func writeDB(t testing.TB, dbType string) []byte {
	t.Helper()
	// The test networks are documentation ranges (RFC 5737, RFC 3849),
	// which the writer treats as reserved unless told otherwise.
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 28, IPVersion: 6, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	insert := func(cidr string, v mmdbtype.DataType) {
		_, n, err := net.ParseCIDR(cidr)
		if err != nil {
			t.Fatal(err)
		}
		if err := tree.Insert(n, v); err != nil {
			t.Fatal(err)
		}
	}
	insert("203.0.113.0/24", city("US", "NJ", 40.2171, -74.7429, 20))
	insert("198.51.100.0/25", city("US", "PA", 40.2111, -74.7875, 50))
	insert("2001:db8:1::/48", city("US", "MI", 42.3314, -83.0458, 100))
	// Country-level only: no coordinates.
	insert("198.51.100.128/25", mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("US")}})
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestLocateIP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := os.WriteFile(path, writeDB(t, "GeoIP2-City"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.DatabaseType() != "GeoIP2-City" {
		t.Fatalf("type %q", l.DatabaseType())
	}
	ctx := context.Background()
	tests := []struct {
		ip      string
		want    geo.IPLocation
		wantErr error
	}{
		{"203.0.113.7", geo.IPLocation{Point: geo.Point{Lat: 40.2171, Lon: -74.7429}, AccuracyRadiusM: 20_000, Country: "US", Subdivision: "NJ"}, nil},
		{"::ffff:203.0.113.200", geo.IPLocation{Point: geo.Point{Lat: 40.2171, Lon: -74.7429}, AccuracyRadiusM: 20_000, Country: "US", Subdivision: "NJ"}, nil},
		{"198.51.100.4", geo.IPLocation{Point: geo.Point{Lat: 40.2111, Lon: -74.7875}, AccuracyRadiusM: 50_000, Country: "US", Subdivision: "PA"}, nil},
		{"2001:db8:1:2::9", geo.IPLocation{Point: geo.Point{Lat: 42.3314, Lon: -83.0458}, AccuracyRadiusM: 100_000, Country: "US", Subdivision: "MI"}, nil},
		{"198.51.100.200", geo.IPLocation{}, geo.ErrIPNotFound}, // no coordinates
		{"192.0.2.1", geo.IPLocation{}, geo.ErrIPNotFound},      // not in the database
		{"2001:db8:2::1", geo.IPLocation{}, geo.ErrIPNotFound},
	}
	for _, tt := range tests {
		got, err := l.LocateIP(ctx, netip.MustParseAddr(tt.ip))
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("LocateIP(%s) = %+v, %v; want %+v, %v", tt.ip, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := l.LocateIP(ctx, netip.Addr{}); !errors.Is(err, geo.ErrIPNotFound) {
		t.Errorf("zero addr: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.LocateIP(cctx, netip.MustParseAddr("203.0.113.7")); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
}

func TestOpenRejectsDatabasesWithoutCoordinates(t *testing.T) {
	if _, err := FromBytes(writeDB(t, "GeoIP2-Country")); err == nil {
		t.Fatal("country database accepted")
	}
	if _, err := FromBytes([]byte("not an mmdb")); err == nil {
		t.Fatal("garbage accepted")
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Fatal("missing file accepted")
	}
	l, err := FromBytes(writeDB(t, "GeoLite2-City"))
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
}

// FuzzFromBytes: a damaged database file fails to open or to look up, but
// never panics.
func FuzzFromBytes(f *testing.F) {
	f.Add(writeDB(f, "GeoIP2-City"))
	f.Add([]byte{})
	f.Add([]byte("\xab\xcd\xefMaxMind.com"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := FromBytes(b)
		if err != nil {
			return
		}
		defer l.Close()
		for _, ip := range []string{"203.0.113.7", "198.51.100.200", "2001:db8:1::1", "8.8.8.8"} {
			loc, err := l.LocateIP(context.Background(), netip.MustParseAddr(ip))
			if err == nil && (loc.Point.Lat < -90 || loc.Point.Lat > 90 || loc.Point.Lon < -180 || loc.Point.Lon > 180) {
				t.Fatalf("out-of-range location %+v", loc)
			}
		}
	})
}
