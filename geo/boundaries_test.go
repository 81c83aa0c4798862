package geo

import (
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer"
)

// Reference points (WGS84). Trenton NJ and Morrisville PA face each other
// across the Delaware River.
var (
	trenton     = Point{Lat: 40.2222, Lon: -74.7656}
	morrisville = Point{Lat: 40.2111, Lon: -74.7875}
	// nearRiver is on the New Jersey bank of the Delaware at Trenton,
	// closer to the state line than the default buffer.
	nearRiver    = Point{Lat: 40.2160, Lon: -74.7680}
	philadelphia = Point{Lat: 39.9526, Lon: -75.1652}
	manhattan    = Point{Lat: 40.7580, Lon: -73.9855}
	wilmington   = Point{Lat: 39.7391, Lon: -75.5398}
	detroit      = Point{Lat: 42.3500, Lon: -83.0500}
	atlantic     = Point{Lat: 39.5, Lon: -72.0} // open ocean
	losAngeles   = Point{Lat: 34.0522, Lon: -118.2437}
)

// usStates is parsed once; Boundaries is immutable.
var usStates = sync.OnceValues(USStates)

func mustUSStates(t testing.TB) *Boundaries {
	t.Helper()
	b, err := usStates()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUSStatesJurisdiction(t *testing.T) {
	b := mustUSStates(t)
	tests := []struct {
		name string
		p    Point
		want Jurisdiction
	}{
		{"Trenton", trenton, "NJ"},
		{"Morrisville", morrisville, "PA"},
		{"Philadelphia", philadelphia, "PA"},
		{"Manhattan", manhattan, "NY"},
		{"Wilmington", wilmington, "DE"},
		{"Detroit", detroit, "MI"},
		{"Los Angeles", losAngeles, "CA"},
		{"Atlantic Ocean", atlantic, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := b.Jurisdiction(tt.p)
			if got != tt.want || ok != (tt.want != "") {
				t.Fatalf("Jurisdiction(%v) = %q, %v; want %q", tt.p, got, ok, tt.want)
			}
		})
	}
}

func TestUSStatesCoverRequiredJurisdictions(t *testing.T) {
	b := mustUSStates(t)
	for _, j := range []Jurisdiction{"NJ", "PA", "NY", "DE", "MI", "OH", "IN", "WI", "MD", "CT", "VT", "MA", "WV", "IL", "MN"} {
		if !b.Has(j) {
			t.Errorf("boundaries lack %s", j)
		}
	}
	if n := len(b.Jurisdictions()); n != 56 {
		t.Errorf("got %d jurisdictions, want 56 (50 states, DC, 5 territories)", n)
	}
}

func TestDistanceToBoundary(t *testing.T) {
	b := mustUSStates(t)
	// Trenton and Morrisville lie clear of the buffer on their own sides;
	// the river bank lies inside it.
	for _, tt := range []struct {
		name     string
		p        Point
		min, max float64
	}{
		{"Trenton", trenton, DefaultBoundaryBufferM + 200, 2_000},
		{"Morrisville", morrisville, DefaultBoundaryBufferM + 200, 2_000},
		{"river bank", nearRiver, 0, DefaultBoundaryBufferM - 100},
		{"central PA far from any edge", Point{Lat: 40.8, Lon: -77.8}, 50_000, 50_000},
	} {
		d := b.DistanceToBoundaryM(tt.p, 50_000)
		if d < tt.min || d > tt.max {
			t.Errorf("%s: distance %.0f m, want in [%.0f, %.0f]", tt.name, d, tt.min, tt.max)
		}
	}
	if j, _ := b.Jurisdiction(nearRiver); j != "NJ" {
		t.Fatalf("river bank point resolves to %q, want NJ", j)
	}
}

func TestDistanceToBoundaryMatchesBruteForce(t *testing.T) {
	// The bbox pre-filter and the early-out must not change the answer:
	// compare against a dense sampling of every edge near the point.
	b := mustUSStates(t)
	for _, p := range []Point{trenton, morrisville, nearRiver, wilmington, detroit} {
		got := b.DistanceToBoundaryM(p, 50_000)
		want := 50_000.0
		for _, r := range b.polys {
			for _, ring := range r.poly {
				for k := 1; k < len(ring); k++ {
					a, c := ring[k-1], ring[k]
					// Edges wholly more than ~1 degree away cannot be
					// within 50 km.
					if (a[1]-p.Lat > 1 && c[1]-p.Lat > 1) || (p.Lat-a[1] > 1 && p.Lat-c[1] > 1) ||
						(a[0]-p.Lon > 1.5 && c[0]-p.Lon > 1.5) || (p.Lon-a[0] > 1.5 && p.Lon-c[0] > 1.5) {
						continue
					}
					for s := 0; s <= 200; s++ {
						f := float64(s) / 200
						q := Point{Lat: a[1] + f*(c[1]-a[1]), Lon: a[0] + f*(c[0]-a[0])}
						if d := DistanceM(p, q); d < want {
							want = d
						}
					}
				}
			}
		}
		// Sampling overestimates by at most half a sample step; the local
		// projection is within 1%.
		if got > want+1 || got < want*0.98-1 {
			t.Errorf("%v: DistanceToBoundaryM = %.1f, brute force %.1f", p, got, want)
		}
	}
}

func TestLoadBoundariesRejectsBadInput(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":         `{`,
		"not a collection": `{"type":"Feature"}`,
		"no code":          `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}]}`,
		"point":            `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"X"},"geometry":{"type":"Point","coordinates":[0,0]}}]}`,
		"degenerate":       `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"X"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}}]}`,
		"out of range":     `{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"code":"X"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,91],[0,0]]]}}]}`,
		"empty":            `{"type":"FeatureCollection","features":[]}`,
	} {
		if _, err := LoadBoundaries([]byte(doc)); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%s: err = %v, want invalid", name, err)
		}
	}
}
