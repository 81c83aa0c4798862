package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

// Topology says where each jurisdiction's regulated services run:
//
//	edges:
//	  NJ: http://10.1.0.10:8080   # the NJ edge's player listener
//	  PA: https://pa-edge.internal:8443
//	parent: http://10.0.0.5:8080  # optional: unregulated routes (catalog)
//
// A jurisdiction absent from edges is not served: a player located there is
// refused, never sent elsewhere.
type Topology struct {
	Edges map[geo.Jurisdiction]*url.URL
	// Parent, when set, serves the unregulated routes (catalog, odds).
	Parent *url.URL
}

// maxTopologyBytes bounds the file read.
const maxTopologyBytes = 1 << 20

// LoadTopology reads and validates a topology file.
func LoadTopology(path string) (Topology, error) {
	f, err := os.Open(path)
	if err != nil {
		return Topology{}, buzzer.Wrap(err, buzzer.EINVALID, "cannot read topology file %s", path)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTopologyBytes+1))
	if err != nil {
		return Topology{}, buzzer.Wrap(err, buzzer.EINVALID, "cannot read topology file %s", path)
	}
	t, err := ParseTopology(b)
	if err != nil {
		return Topology{}, buzzer.Wrap(err, buzzer.EINVALID, "topology file %s: %s", path, buzzer.ErrorMessage(err))
	}
	return t, nil
}

// ParseTopology decodes a topology document strictly: unknown keys, a
// jurisdiction code that is not 2..8 upper-case letters or digits, an edge
// URL that is not an absolute http(s) URL without query or fragment, two
// jurisdictions on one URL, or no edge at all are errors.
func ParseTopology(b []byte) (Topology, error) {
	if len(b) > maxTopologyBytes {
		return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology is larger than %d bytes", maxTopologyBytes)
	}
	var doc struct {
		Edges  map[string]string `yaml:"edges"`
		Parent string            `yaml:"parent"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology is empty")
		}
		return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology must be a single YAML document")
	}
	if len(doc.Edges) == 0 {
		return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology names no edge")
	}
	t := Topology{Edges: map[geo.Jurisdiction]*url.URL{}}
	seen := map[string]string{}
	codes := make([]string, 0, len(doc.Edges))
	for j := range doc.Edges {
		codes = append(codes, j)
	}
	sort.Strings(codes)
	for _, j := range codes {
		if !validJurisdiction(j) {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: jurisdiction %q must be 2..8 upper-case letters or digits", j)
		}
		u, err := parseBaseURL(doc.Edges[j])
		if err != nil {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: edge %s: %v", j, err)
		}
		// Two jurisdictions on one backend would mix their regulated stores.
		if other, dup := seen[u.String()]; dup {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: %s and %s name the same edge %s", other, j, u.Redacted())
		}
		seen[u.String()] = j
		t.Edges[geo.Jurisdiction(j)] = u
	}
	if doc.Parent != "" {
		u, err := parseBaseURL(doc.Parent)
		if err != nil {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: parent: %v", err)
		}
		if j, dup := seen[u.String()]; dup {
			return Topology{}, buzzer.Errorf(buzzer.EINVALID, "topology: parent is the %s edge", j)
		}
		t.Parent = u
	}
	return t, nil
}

// Jurisdictions returns the served jurisdictions, sorted.
func (t Topology) Jurisdictions() []geo.Jurisdiction {
	out := make([]geo.Jurisdiction, 0, len(t.Edges))
	for j := range t.Edges {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

func parseBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%q is not a URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: scheme must be http or https", raw)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%q has no host", raw)
	case u.User != nil:
		return nil, fmt.Errorf("%q must not carry credentials", raw)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%q must not have a query or fragment", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

func validJurisdiction(j string) bool {
	if len(j) < 2 || len(j) > 8 {
		return false
	}
	for _, r := range j {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
