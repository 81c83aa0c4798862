// Command topo2geojson converts the us-atlas TopoJSON state boundaries (US
// Census Bureau cartographic boundaries, redistributed by the us-atlas npm
// package) into the GeoJSON FeatureCollection that package geo embeds. It
// is run by scripts/geo/regen.sh; it never fetches anything itself.
//
// Each feature carries the properties code (USPS code, e.g. "NJ"), fips and
// name. Exterior rings are written counter-clockwise and holes clockwise, as
// RFC 7946 asks; coordinates are rounded to 5 decimals (about 1 m), well
// below the source's quantization step.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
)

// fipsToUSPS maps state FIPS codes to USPS codes (FIPS PUB 5-2, public facts).
var fipsToUSPS = map[string]string{
	"01": "AL", "02": "AK", "04": "AZ", "05": "AR", "06": "CA", "08": "CO", "09": "CT",
	"10": "DE", "11": "DC", "12": "FL", "13": "GA", "15": "HI", "16": "ID", "17": "IL",
	"18": "IN", "19": "IA", "20": "KS", "21": "KY", "22": "LA", "23": "ME", "24": "MD",
	"25": "MA", "26": "MI", "27": "MN", "28": "MS", "29": "MO", "30": "MT", "31": "NE",
	"32": "NV", "33": "NH", "34": "NJ", "35": "NM", "36": "NY", "37": "NC", "38": "ND",
	"39": "OH", "40": "OK", "41": "OR", "42": "PA", "44": "RI", "45": "SC", "46": "SD",
	"47": "TN", "48": "TX", "49": "UT", "50": "VT", "51": "VA", "53": "WA", "54": "WV",
	"55": "WI", "56": "WY", "60": "AS", "66": "GU", "69": "MP", "72": "PR", "78": "VI",
}

type topology struct {
	Type      string `json:"type"`
	Transform *struct {
		Scale     [2]float64 `json:"scale"`
		Translate [2]float64 `json:"translate"`
	} `json:"transform"`
	Objects map[string]struct {
		Geometries []struct {
			Type       string            `json:"type"`
			ID         string            `json:"id"`
			Arcs       json.RawMessage   `json:"arcs"`
			Properties map[string]string `json:"properties"`
		} `json:"geometries"`
	} `json:"objects"`
	Arcs [][][2]float64 `json:"arcs"`
}

type feature struct {
	Type       string            `json:"type"`
	Properties map[string]string `json:"properties"`
	Geometry   struct {
		Type        string           `json:"type"`
		Coordinates [][][][2]float64 `json:"coordinates"`
	} `json:"geometry"`
}

func main() {
	in := flag.String("in", "", "us-atlas states-10m.json")
	out := flag.String("out", "", "GeoJSON file to write")
	flag.Parse()
	if *in == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: topo2geojson -in states-10m.json -out us-states.geojson")
		os.Exit(2)
	}
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "topo2geojson:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var t topology
	if err := json.Unmarshal(b, &t); err != nil {
		return fmt.Errorf("decode topology: %w", err)
	}
	if t.Type != "Topology" || t.Transform == nil {
		return fmt.Errorf("not a quantized TopoJSON topology")
	}
	arcs := make([][][2]float64, len(t.Arcs))
	for i, a := range t.Arcs {
		var x, y float64
		pts := make([][2]float64, len(a))
		for j, d := range a { // delta-encoded, quantized positions
			x += d[0]
			y += d[1]
			pts[j] = [2]float64{round5(x*t.Transform.Scale[0] + t.Transform.Translate[0]), round5(y*t.Transform.Scale[1] + t.Transform.Translate[1])}
		}
		arcs[i] = pts
	}
	states, ok := t.Objects["states"]
	if !ok {
		return fmt.Errorf("topology has no states object")
	}
	var feats []feature
	for _, g := range states.Geometries {
		code, ok := fipsToUSPS[g.ID]
		if !ok {
			return fmt.Errorf("unknown state FIPS %q", g.ID)
		}
		var polys [][][]int
		switch g.Type {
		case "Polygon":
			var p [][]int
			if err := json.Unmarshal(g.Arcs, &p); err != nil {
				return err
			}
			polys = [][][]int{p}
		case "MultiPolygon":
			if err := json.Unmarshal(g.Arcs, &polys); err != nil {
				return err
			}
		default:
			return fmt.Errorf("state %s: unexpected geometry %s", code, g.Type)
		}
		f := feature{Type: "Feature", Properties: map[string]string{"code": code, "fips": g.ID, "name": g.Properties["name"]}}
		f.Geometry.Type = "MultiPolygon"
		for _, p := range polys {
			var poly [][][2]float64
			for ri, r := range p {
				ring, err := stitch(arcs, r)
				if err != nil {
					return fmt.Errorf("state %s: %w", code, err)
				}
				if len(ring) < 4 || signedArea(ring) == 0 {
					// Quantization collapsed a tiny island or hole to a
					// line; it encloses nothing.
					if ri == 0 {
						break
					}
					continue
				}
				ccw := signedArea(ring) > 0
				if (ri == 0) != ccw { // exterior CCW, holes CW
					for i, j := 0, len(ring)-1; i < j; i, j = i+1, j-1 {
						ring[i], ring[j] = ring[j], ring[i]
					}
				}
				poly = append(poly, ring)
			}
			if len(poly) > 0 {
				f.Geometry.Coordinates = append(f.Geometry.Coordinates, poly)
			}
		}
		feats = append(feats, f)
	}
	sort.Slice(feats, func(i, j int) bool { return feats[i].Properties["code"] < feats[j].Properties["code"] })
	fc := struct {
		Type     string    `json:"type"`
		Features []feature `json:"features"`
	}{"FeatureCollection", feats}
	enc, err := json.Marshal(fc)
	if err != nil {
		return err
	}
	return os.WriteFile(out, append(enc, '\n'), 0o644)
}

// stitch joins a ring's arcs; a negative index ~i means arc i reversed, and
// consecutive arcs share their joining point.
func stitch(arcs [][][2]float64, idx []int) ([][2]float64, error) {
	var ring [][2]float64
	for _, i := range idx {
		rev := i < 0
		if rev {
			i = ^i
		}
		if i >= len(arcs) {
			return nil, fmt.Errorf("arc %d out of range", i)
		}
		a := arcs[i]
		pts := make([][2]float64, len(a))
		copy(pts, a)
		if rev {
			for l, r := 0, len(pts)-1; l < r; l, r = l+1, r-1 {
				pts[l], pts[r] = pts[r], pts[l]
			}
		}
		if len(ring) > 0 {
			pts = pts[1:]
		}
		ring = append(ring, pts...)
	}
	if len(ring) == 0 || ring[0] != ring[len(ring)-1] {
		return nil, fmt.Errorf("ring is not closed (%d points)", len(ring))
	}
	return ring, nil
}

func signedArea(r [][2]float64) float64 {
	var s float64
	for i := 1; i < len(r); i++ {
		s += r[i-1][0]*r[i][1] - r[i][0]*r[i-1][1]
	}
	return s / 2
}

func round5(v float64) float64 { return math.Round(v*1e5) / 1e5 }
