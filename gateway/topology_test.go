package gateway_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer/gateway"
)

func TestParseTopology(t *testing.T) {
	topo, err := gateway.ParseTopology([]byte("edges:\n  NJ: http://127.0.0.1:8081/\n  PA: https://pa-edge.internal:8443/base\nparent: http://127.0.0.1:8080\n"))
	if err != nil {
		t.Fatal(err)
	}
	if topo.Edges["NJ"].String() != "http://127.0.0.1:8081" || topo.Edges["PA"].String() != "https://pa-edge.internal:8443/base" || topo.Parent.String() != "http://127.0.0.1:8080" {
		t.Fatalf("parsed %+v", topo)
	}
	if js := topo.Jurisdictions(); len(js) != 2 || js[0] != "NJ" || js[1] != "PA" {
		t.Fatalf("jurisdictions %v", js)
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"empty":           {"", "empty"},
		"no edge":         {"edges: {}\n", "no edge"},
		"unknown key":     {"edges:\n  NJ: http://a\nfallback: http://b\n", "fallback"},
		"lower-case code": {"edges:\n  nj: http://a\n", "upper-case"},
		"bad scheme":      {"edges:\n  NJ: ftp://a\n", "scheme"},
		"no host":         {"edges:\n  NJ: http://\n", "no host"},
		"credentials":     {"edges:\n  NJ: http://u:p@a\n", "credentials"},
		"query":           {"edges:\n  NJ: http://a?x=1\n", "query"},
		"shared backend":  {"edges:\n  NJ: http://a:1\n  PA: http://a:1/\n", "same edge"},
		"parent is edge":  {"edges:\n  NJ: http://a:1\nparent: http://a:1\n", "parent"},
		"two documents":   {"edges:\n  NJ: http://a:1\n---\nedges:\n  PA: http://b\n", "single"},
		"not a map":       {"- NJ\n", "topology"},
		"edge not a URL":  {"edges:\n  NJ: [1, 2]\n", "topology"},
		"relative edge":   {"edges:\n  NJ: /nj\n", "scheme"},
		"code too long":   {"edges:\n  ABCDEFGHI: http://a\n", "upper-case"},
	} {
		_, err := gateway.ParseTopology([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one mentioning %q", name, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "topology.yaml")
	_ = os.WriteFile(path, []byte("edges:\n  NJ: http://127.0.0.1:1\n"), 0o600)
	if _, err := gateway.LoadTopology(path); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.LoadTopology(path + ".missing"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzParseTopology(f *testing.F) {
	for _, s := range []string{
		"edges:\n  NJ: http://127.0.0.1:8081\n  PA: http://127.0.0.1:8082\nparent: http://127.0.0.1:8080\n",
		"edges:\n  NJ: https://nj.example/x/\n",
		"edges: {NJ: 'http://a', PA: 'http://a'}",
		"edges:\n  NJ: http://a\n---\n",
		"parent: http://p\n",
		"&a [*a]",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		topo, err := gateway.ParseTopology(b)
		if err != nil {
			return
		}
		if len(topo.Edges) == 0 {
			t.Fatal("accepted a topology with no edge")
		}
		seen := map[string]bool{}
		for j, u := range topo.Edges {
			if len(j) < 2 || len(j) > 8 || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.User != nil {
				t.Fatalf("accepted edge %s = %v", j, u)
			}
			if seen[u.String()] {
				t.Fatalf("accepted two jurisdictions on %v", u)
			}
			seen[u.String()] = true
		}
		if topo.Parent != nil && seen[topo.Parent.String()] {
			t.Fatal("accepted a parent that is an edge")
		}
	})
}

// FuzzForwardedDecision: whatever arrives in the decision header, the
// verifier refuses it unless the gateway key signed it.
func FuzzForwardedDecision(f *testing.F) {
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFZERTQSIsImtpZCI6ImsiLCJ0eXAiOiJnZW8tZGVjaXNpb24rand0In0.e30.AAAA")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, header string) {
		fuzzDecision(t, header)
	})
}
