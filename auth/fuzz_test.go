package auth

import (
	"context"
	"testing"

	"github.com/buzzer-bet/buzzer"
)

// FuzzVerify feeds arbitrary strings to the verifier: it must never panic,
// every rejection must be a typed EUNAUTHORIZED, and only the one good token
// may ever verify.
func FuzzVerify(f *testing.F) {
	fx := newFixture(f, nil)
	good := fx.good(f)
	f.Add(good)
	for _, tc := range badCorpus {
		f.Add(tc.token(f, fx))
	}
	f.Add("")
	f.Add(".")
	f.Add("..")
	f.Add("eyJhbGciOiJub25lIn0..")
	ctx := context.Background()
	if err := fx.v.Warm(ctx); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		p, err := fx.v.Verify(ctx, tok)
		if err == nil {
			if tok != good {
				t.Fatalf("a token other than the good one verified: %q -> %+v", tok, p)
			}
			if p.Subject != "player-7" {
				t.Fatalf("good token gave %+v", p)
			}
			return
		}
		if tok == good {
			t.Fatalf("good token rejected: %v", err)
		}
		if code := buzzer.ErrorCode(err); code != buzzer.EUNAUTHORIZED {
			t.Fatalf("rejection with code %s: %v", code, err)
		}
		if buzzer.ErrorReason(err) == "" {
			t.Fatalf("rejection without a reason: %v", err)
		}
	})
}

func BenchmarkVerifyCached(b *testing.B) {
	fx := newFixture(b, nil)
	tok := fx.good(b)
	ctx := context.Background()
	if _, err := fx.v.Verify(ctx, tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := fx.v.Verify(ctx, tok); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkVerifyUncached(b *testing.B) {
	fx := newFixture(b, func(c *Config) { c.CacheSize = 0 })
	tok := fx.good(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := fx.v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
