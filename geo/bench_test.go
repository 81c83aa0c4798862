package geo

import (
	"context"
	"testing"
)

// BenchmarkCheckCached is the per-request cost once a session's decision is
// cached: hash the header, one map lookup.
func BenchmarkCheckCached(b *testing.B) {
	f := newFixture(b, nil)
	tok := f.sign(f.claims(trenton))
	if _, err := f.check(tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.check(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckFresh is a full verification: signature, claims, challenge,
// point-in-polygon and boundary distance, IP and registry lookups (in
// process here).
func BenchmarkCheckFresh(b *testing.B) {
	f := newFixture(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		tok := f.sign(f.claims(trenton))
		f.svc.Invalidate(player, session)
		b.StartTimer()
		if _, err := f.svc.Check(ctx, CheckInput{PlayerID: player, SessionID: session, Token: tok}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLocate is point-in-polygon plus boundary distance on the shipped
// US states.
func BenchmarkLocate(b *testing.B) {
	bd := mustUSStates(b)
	b.ReportAllocs()
	for b.Loop() {
		bd.Jurisdiction(trenton)
		bd.DistanceToBoundaryM(trenton, boundarySearchM)
	}
}
