package geo

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestDevProviderPersistsItsKey(t *testing.T) {
	dir := t.TempDir()
	p1, err := OpenDevProvider(dir, newRand(7))
	if err != nil {
		t.Fatal(err)
	}
	// A second open — even with other randomness — loads the same key.
	p2, err := OpenDevProvider(dir, newRand(8))
	if err != nil {
		t.Fatal(err)
	}
	if p1.KeyID() != p2.KeyID() || string(p1.JWKS()) != string(p2.JWKS()) {
		t.Fatal("second open made a new key")
	}
	fi, err := os.Stat(filepath.Join(dir, "keys", devKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	pub, err := os.ReadFile(filepath.Join(dir, "keys", devJWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := ParseJWKS(pub)
	if err != nil || keys.Len() != 1 {
		t.Fatalf("published JWKS: %v", err)
	}

	// A token p1 signs verifies under the published JWKS and p2's keys.
	now := int64(1_770_000_000)
	tok, err := p1.Sign(Claims{PlayerID: "p", SessionID: "s", Challenge: "c", IssuedAt: now, Expiry: now + 60,
		GPS: GPSFix{Lat: trenton.Lat, Lon: trenton.Lon, AccuracyM: 5}, IP: "203.0.113.7"})
	if err != nil {
		t.Fatal(err)
	}
	pt, err := parseCompact(tok)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := p2.ProviderKeys(context.Background())
	for _, ks := range []*ProviderKeys{keys, k2} {
		payload, err := pt.verify(ks)
		if err != nil {
			t.Fatal(err)
		}
		c, err := ParseClaims(payload)
		if err != nil || c.Issuer != DevIssuer || c.PlayerID != "p" {
			t.Fatalf("claims %+v, %v", c, err)
		}
	}

	// Another data dir means another key, which p1's tokens do not verify
	// under.
	p3, err := OpenDevProvider(t.TempDir(), newRand(9))
	if err != nil {
		t.Fatal(err)
	}
	k3, _ := p3.ProviderKeys(context.Background())
	if _, err := pt.verify(k3); err == nil {
		t.Fatal("token verified under another provider's key")
	}
}
