package geo

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"math"
	"sort"

	"github.com/paulmach/orb"
	orbgeo "github.com/paulmach/orb/geo"
	"github.com/paulmach/orb/planar"

	"github.com/buzzer-bet/buzzer"
)

// Jurisdiction is a USPS state code such as "NJ".
type Jurisdiction string

// Point is a WGS84 position in decimal degrees.
type Point struct {
	Lat float64 `json:"lat"`
	Lon float64 `json:"lon"`
}

func (p Point) orb() orb.Point { return orb.Point{p.Lon, p.Lat} }

// DistanceM returns the great-circle distance between p and q in metres.
func DistanceM(p, q Point) float64 { return orbgeo.DistanceHaversine(p.orb(), q.orb()) }

//go:embed boundaries/us-states.geojson
var usStatesGeoJSON []byte

// USStates returns the shipped US state boundaries (Census Bureau
// cartographic boundaries via the us-atlas package; see
// boundaries/PROVENANCE.md for their resolution and how they were made).
func USStates() (*Boundaries, error) {
	return LoadBoundaries(usStatesGeoJSON)
}

// Boundaries is an immutable set of jurisdiction polygons, safe for
// concurrent use.
type Boundaries struct {
	polys []region
	codes []Jurisdiction
}

type region struct {
	code  Jurisdiction
	poly  orb.Polygon
	bound orb.Bound
}

// LoadBoundaries parses a GeoJSON FeatureCollection whose features are
// Polygons or MultiPolygons carrying a string property "code" (the
// jurisdiction).
func LoadBoundaries(data []byte) (*Boundaries, error) {
	var fc struct {
		Type     string `json:"type"`
		Features []struct {
			Type       string         `json:"type"`
			Properties map[string]any `json:"properties"`
			Geometry   struct {
				Type        string          `json:"type"`
				Coordinates json.RawMessage `json:"coordinates"`
			} `json:"geometry"`
		} `json:"features"`
	}
	if err := json.Unmarshal(data, &fc); err != nil || fc.Type != "FeatureCollection" {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "Boundary file is not a GeoJSON FeatureCollection.")
	}
	b := &Boundaries{}
	seen := map[Jurisdiction]bool{}
	for i, f := range fc.Features {
		code, _ := f.Properties["code"].(string)
		if code == "" {
			return nil, buzzer.Errorf(buzzer.EINVALID, "Boundary feature %d has no code property.", i)
		}
		j := Jurisdiction(code)
		var polys []orb.Polygon
		var err error
		switch f.Geometry.Type {
		case "Polygon":
			var p [][][2]float64
			err = json.Unmarshal(f.Geometry.Coordinates, &p)
			polys = []orb.Polygon{toPolygon(p)}
		case "MultiPolygon":
			var mp [][][][2]float64
			err = json.Unmarshal(f.Geometry.Coordinates, &mp)
			for _, p := range mp {
				polys = append(polys, toPolygon(p))
			}
		default:
			return nil, buzzer.Errorf(buzzer.EINVALID, "Boundary feature %s is a %q, not a polygon.", code, f.Geometry.Type)
		}
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "Boundary feature %s has malformed coordinates.", code)
		}
		for _, p := range polys {
			if len(p) == 0 || len(p[0]) < 4 {
				return nil, buzzer.Errorf(buzzer.EINVALID, "Boundary feature %s has a degenerate polygon.", code)
			}
			for _, r := range p {
				for _, pt := range r {
					if math.IsNaN(pt[0]) || math.IsNaN(pt[1]) || pt[0] < -180 || pt[0] > 180 || pt[1] < -90 || pt[1] > 90 {
						return nil, buzzer.Errorf(buzzer.EINVALID, "Boundary feature %s has a coordinate out of range.", code)
					}
				}
			}
			b.polys = append(b.polys, region{code: j, poly: p, bound: p.Bound()})
		}
		if !seen[j] {
			seen[j] = true
			b.codes = append(b.codes, j)
		}
	}
	if len(b.polys) == 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "Boundary file has no polygons.")
	}
	sort.Slice(b.codes, func(i, k int) bool { return b.codes[i] < b.codes[k] })
	return b, nil
}

// Jurisdictions lists the jurisdictions the boundaries cover, sorted.
func (b *Boundaries) Jurisdictions() []Jurisdiction {
	return append([]Jurisdiction(nil), b.codes...)
}

// Has reports whether the boundaries include jurisdiction j.
func (b *Boundaries) Has(j Jurisdiction) bool {
	for _, c := range b.codes {
		if c == j {
			return true
		}
	}
	return false
}

// Jurisdiction returns the jurisdiction whose polygon contains p (planar
// point-in-polygon on longitude/latitude), or false if none does.
func (b *Boundaries) Jurisdiction(p Point) (Jurisdiction, bool) {
	op := p.orb()
	for i := range b.polys {
		r := &b.polys[i]
		if r.bound.Contains(op) && planar.PolygonContains(r.poly, op) {
			return r.code, true
		}
	}
	return "", false
}

// DistanceToBoundaryM returns the geodesic distance in metres from p to the
// nearest edge of any polygon (state lines, coastlines and international
// borders alike), or limit if no edge is closer than limit. Every edge
// counts because a fix near any edge may lie on the other side of it.
func (b *Boundaries) DistanceToBoundaryM(p Point, limit float64) float64 {
	// Only polygons whose bounding box, widened by limit, holds p can have
	// an edge within limit. 111 km per degree of latitude is a safe lower
	// bound on metres per degree; longitude degrees shrink with cos(lat).
	dLat := limit / 110_000
	cos := math.Cos(p.Lat * math.Pi / 180)
	if cos < 0.01 {
		cos = 0.01
	}
	dLon := limit / (110_000 * cos)
	best := limit
	// Edges are measured on a local equirectangular plane centred on p,
	// which is accurate to well under 1% within tens of kilometres; the
	// nearest point found is then measured exactly on the sphere.
	kx := 111_320 * cos
	const ky = 110_574.0
	for i := range b.polys {
		r := &b.polys[i]
		if p.Lon < r.bound.Min[0]-dLon || p.Lon > r.bound.Max[0]+dLon || p.Lat < r.bound.Min[1]-dLat || p.Lat > r.bound.Max[1]+dLat {
			continue
		}
		for _, ring := range r.poly {
			for k := 1; k < len(ring); k++ {
				a, c := ring[k-1], ring[k]
				ax, ay := (a[0]-p.Lon)*kx, (a[1]-p.Lat)*ky
				cx, cy := (c[0]-p.Lon)*kx, (c[1]-p.Lat)*ky
				dx, dy := cx-ax, cy-ay
				t := 0.0
				if l := dx*dx + dy*dy; l > 0 {
					t = math.Max(0, math.Min(1, -(ax*dx+ay*dy)/l))
				}
				if math.Hypot(ax+t*dx, ay+t*dy) >= best*1.01 {
					continue
				}
				near := Point{Lat: a[1] + t*(c[1]-a[1]), Lon: a[0] + t*(c[0]-a[0])}
				if d := DistanceM(p, near); d < best {
					best = d
				}
			}
		}
	}
	return best
}

// validate reports whether p is a finite position.
func (p Point) validate() error {
	if math.IsNaN(p.Lat) || math.IsNaN(p.Lon) || p.Lat < -90 || p.Lat > 90 || p.Lon < -180 || p.Lon > 180 {
		return fmt.Errorf("position %v,%v out of range", p.Lat, p.Lon)
	}
	return nil
}

func toPolygon(p [][][2]float64) orb.Polygon {
	poly := make(orb.Polygon, len(p))
	for i, r := range p {
		ring := make(orb.Ring, len(r))
		for k, pt := range r {
			ring[k] = orb.Point(pt)
		}
		poly[i] = ring
	}
	return poly
}
