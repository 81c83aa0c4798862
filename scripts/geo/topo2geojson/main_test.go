package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// A two-state topology sharing one arc, with a degenerate island: the
// shared arc must appear forward in one state and reversed in the other,
// rings must close and come out counter-clockwise, and the island must be
// dropped.
const topo = `{
 "type":"Topology",
 "transform":{"scale":[0.5,0.5],"translate":[-75,40]},
 "objects":{"states":{"type":"GeometryCollection","geometries":[
  {"type":"Polygon","id":"34","properties":{"name":"New Jersey"},"arcs":[[0,1]]},
  {"type":"MultiPolygon","id":"42","properties":{"name":"Pennsylvania"},"arcs":[[[-1,2]],[[3]]]}
 ]}},
 "arcs":[
  [[2,0],[0,2]],
  [[2,2],[2,0],[0,-2],[-2,0]],
  [[2,0],[-2,0],[0,2],[2,0]],
  [[1,1],[1,0],[-1,0]]
 ]
}`

func TestRun(t *testing.T) {
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.geojson")
	if err := os.WriteFile(in, []byte(topo), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var fc struct {
		Features []feature `json:"features"`
	}
	if err := json.Unmarshal(b, &fc); err != nil {
		t.Fatal(err)
	}
	if len(fc.Features) != 2 || fc.Features[0].Properties["code"] != "NJ" || fc.Features[1].Properties["code"] != "PA" {
		t.Fatalf("features %+v", fc.Features)
	}
	for _, f := range fc.Features {
		if len(f.Geometry.Coordinates) != 1 {
			t.Fatalf("%s: %d polygons, want 1 (island dropped)", f.Properties["code"], len(f.Geometry.Coordinates))
		}
		ring := f.Geometry.Coordinates[0][0]
		if ring[0] != ring[len(ring)-1] || len(ring) < 4 {
			t.Fatalf("%s: ring not closed: %v", f.Properties["code"], ring)
		}
		if signedArea(ring) <= 0 {
			t.Fatalf("%s: exterior ring is clockwise", f.Properties["code"])
		}
	}
	// NJ is the square from (-74, 40) to (-73, 41) in decoded degrees.
	nj := fc.Features[0].Geometry.Coordinates[0][0]
	if signedArea(nj) != 1 {
		t.Fatalf("NJ area %v, want 1 square degree: %v", signedArea(nj), nj)
	}
}
