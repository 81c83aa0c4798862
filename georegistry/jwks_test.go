package georegistry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

// jwksServer serves a provider JWKS document and can be taken down.
type jwksServer struct {
	mu   sync.Mutex
	doc  []byte
	down bool
}

func (s *jwksServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Write(s.doc)
}

func (s *jwksServer) set(doc []byte, down bool) {
	s.mu.Lock()
	s.doc, s.down = doc, down
	s.mu.Unlock()
}

func TestJWKSCachesRefreshesAndExpires(t *testing.T) {
	prov, err := geo.OpenDevProvider(t.TempDir(), newSeeded(1))
	if err != nil {
		t.Fatal(err)
	}
	js := &jwksServer{doc: prov.JWKS()}
	hits := &counting{h: js}
	srv := httptest.NewServer(hits)
	defer srv.Close()
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}
	src, err := NewJWKS(JWKSConfig{URL: srv.URL + "/jwks.json", RefreshInterval: time.Minute, MaxStale: 10 * time.Minute, RetryBackoff: 5 * time.Second, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		k, err := src.ProviderKeys(ctx)
		if err != nil || k.Len() != 1 {
			t.Fatalf("keys: %v, %v", k, err)
		}
	}
	if n := hits.n.Load(); n != 1 {
		t.Fatalf("%d fetches within the refresh interval, want 1", n)
	}
	clock.Advance(time.Minute)
	if _, err := src.ProviderKeys(ctx); err != nil || hits.n.Load() != 2 {
		t.Fatalf("refresh: %v, fetches %d", err, hits.n.Load())
	}

	// Endpoint down: the fetched set serves until MaxStale, with retries
	// spaced by the backoff.
	js.set(nil, true)
	clock.Advance(2 * time.Minute)
	if _, err := src.ProviderKeys(ctx); err != nil {
		t.Fatalf("stale keys should serve: %v", err)
	}
	before := hits.n.Load()
	if _, err := src.ProviderKeys(ctx); err != nil || hits.n.Load() != before {
		t.Fatalf("retried inside the backoff: %v, fetches %d -> %d", err, before, hits.n.Load())
	}
	clock.Advance(8 * time.Minute)
	if k, err := src.ProviderKeys(ctx); err == nil {
		t.Fatalf("keys past MaxStale served: %v", k)
	}

	// Back up: recovers after the backoff.
	js.set(prov.JWKS(), false)
	clock.Advance(5 * time.Second)
	if _, err := src.ProviderKeys(ctx); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestJWKSRejectsBadDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"not json":    `<html>`,
		"no keys":     `{"keys":[]}`,
		"hmac only":   `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0","kid":"h","alg":"HS256"}]}`,
		"private key": `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"p"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(&jwksServer{doc: []byte(doc)})
			defer srv.Close()
			src, err := NewJWKS(JWKSConfig{URL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if k, err := src.ProviderKeys(context.Background()); err == nil {
				t.Fatalf("accepted %v", k)
			}
		})
	}
}

func TestJWKSConfigValidation(t *testing.T) {
	for _, cfg := range []JWKSConfig{
		{URL: "http://keys.example/jwks"},
		{URL: "https://keys.example/jwks", RefreshInterval: time.Hour, MaxStale: time.Minute},
	} {
		if _, err := NewJWKS(cfg); err == nil {
			t.Errorf("accepted %+v", cfg)
		}
	}
}
