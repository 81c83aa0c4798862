package auth

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The node's YAML configuration decodes into Config by its field names, with
// durations as Go duration strings and unknown fields refused.
func TestConfigDecodesFromYAML(t *testing.T) {
	src := `
issuer: https://idp.example/
audience: buzzer
jwks_url: https://idp.example/.well-known/jwks.json
leeway: 10s
refresh_interval: 10m
refresh_min_interval: 1m
fetch_timeout: 3s
keys_max_stale: 2h
max_token_bytes: 4096
cache_size: 5000
allowed_types: [at+jwt]
required_role: operator
`
	c := DefaultConfig()
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Leeway != 10*time.Second || c.RefreshInterval != 10*time.Minute || c.RefreshMinInterval != time.Minute ||
		c.FetchTimeout != 3*time.Second || c.KeysMaxStale != 2*time.Hour || c.MaxTokenBytes != 4096 ||
		c.CacheSize != 5000 || len(c.AllowedTypes) != 1 || c.AllowedTypes[0] != "at+jwt" || c.RequiredRole != "operator" {
		t.Fatalf("decoded %+v", c)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "keys_max_stale: 2h0m0s") {
		t.Fatalf("durations do not round-trip as strings:\n%s", out)
	}
	bad := yaml.NewDecoder(strings.NewReader("jwks_uri: https://x/\n"))
	bad.KnownFields(true)
	c2 := DefaultConfig()
	if err := bad.Decode(&c2); err == nil {
		t.Fatal("unknown field accepted")
	}
}
