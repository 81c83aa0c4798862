package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
)

func TestDevKeysTokensVerify(t *testing.T) {
	dir := t.TempDir()
	keys, err := LoadOrCreateDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"player.jwk", "admin.jwk"} {
		st, err := os.Stat(filepath.Join(dir, "keys", name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	for _, p := range []string{keys.PlayerJWKSPath, keys.AdminJWKSPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), `"d"`) {
			t.Fatalf("public JWKS %s carries private key material", p)
		}
	}

	clock := newTestClock()
	ctx := context.Background()
	player, err := NewVerifier(DevPlayerConfig(keys), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer player.Close()
	admin, err := NewVerifier(DevAdminConfig(keys), clock, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := player.Warm(ctx); err != nil {
		t.Fatal(err)
	}
	if err := admin.Warm(ctx); err != nil {
		t.Fatal(err)
	}

	ptok, err := keys.PlayerToken("player-42", "NJ", time.Hour, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	p, err := player.Verify(ctx, ptok)
	if err != nil {
		t.Fatal(err)
	}
	if p.Subject != "player-42" || p.Jurisdiction != "NJ" || !p.ExpiresAt.Equal(clock.Now().Add(time.Hour)) || p.TokenID == "" {
		t.Fatalf("player principal %+v", p)
	}
	atok, err := keys.AdminToken("ops-1", time.Hour, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	a, err := admin.Verify(ctx, atok)
	if err != nil {
		t.Fatal(err)
	}
	if a.Subject != "ops-1" || !a.HasRole(OperatorRole) {
		t.Fatalf("admin principal %+v", a)
	}

	// The two credentials never stand in for each other.
	_, err = admin.Verify(ctx, ptok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonUnknownKey)
	_, err = player.Verify(ctx, atok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonUnknownKey)

	// Expiry applies to dev tokens like any other.
	clock.Advance(time.Hour + DefaultConfig().Leeway)
	_, err = player.Verify(ctx, ptok)
	wantReject(t, err, buzzer.EUNAUTHORIZED, ReasonExpired)
}

func TestDevKeysStableAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreateDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := newTestClock().Now()
	tok, err := first.PlayerToken("p", "PA", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	// A later process on the same data dir (e.g. a restarted serve).
	second, err := LoadOrCreateDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	if second.player.kid != first.player.kid || second.admin.kid != first.admin.kid || first.player.kid == first.admin.kid {
		t.Fatalf("kids changed or shared: %s/%s then %s/%s", first.player.kid, first.admin.kid, second.player.kid, second.admin.kid)
	}
	v, err := NewVerifier(DevPlayerConfig(second), &buzzer.FixedClock{T: now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("token from before the restart: %v", err)
	}
	// A deleted public JWKS is rebuilt from the private key.
	if err := os.Remove(second.PlayerJWKSPath); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDevKeys(dir); err != nil {
		t.Fatal(err)
	}
	v2, err := NewVerifier(DevPlayerConfig(second), &buzzer.FixedClock{T: now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := v2.Verify(context.Background(), tok); err != nil {
		t.Fatalf("after rebuilding the JWKS: %v", err)
	}
}

func TestDevKeysConcurrentCreationAgrees(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	kids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreateDevKeys(dir)
			errs[i] = err
			if err == nil {
				kids[i] = k.player.kid + "/" + k.admin.kid
			}
		}()
	}
	wg.Wait()
	for i := range kids {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if kids[i] != kids[0] {
			t.Fatalf("process %d got keys %s, process 0 got %s", i, kids[i], kids[0])
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "keys", ".tmp-*"))
	if len(leftovers) != 0 {
		t.Fatalf("temporary files left: %v", leftovers)
	}
}

func TestDevKeysRefuseBadInput(t *testing.T) {
	if _, err := LoadOrCreateDevKeys(""); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("empty data dir: %v", err)
	}
	dir := t.TempDir()
	keys, err := LoadOrCreateDevKeys(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if _, err := keys.PlayerToken("", "NJ", time.Hour, now); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("empty player: %v", err)
	}
	if _, err := keys.PlayerToken("p", "NJ", 0, now); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("zero ttl: %v", err)
	}
	if _, err := keys.AdminToken("", time.Hour, now); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("empty operator: %v", err)
	}
	// A corrupted private key is reported, not silently replaced (tokens
	// already handed out would stop working).
	if err := os.WriteFile(filepath.Join(dir, "keys", "player.jwk"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateDevKeys(dir); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("corrupted key: %v", err)
	}
}
