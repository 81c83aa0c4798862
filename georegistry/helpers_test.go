package georegistry

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/geo"
)

type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func newSeeded(b byte) seeded { var s [32]byte; s[0] = b; return seeded{rand.NewChaCha8(s)} }

func newService(t *testing.T, reg geo.Registry) (*geo.Service, *geo.DevProvider, *buzzer.FixedClock) {
	t.Helper()
	b, err := geo.USStates()
	if err != nil {
		t.Fatal(err)
	}
	prov, err := geo.OpenDevProvider(t.TempDir(), newSeeded(1))
	if err != nil {
		t.Fatal(err)
	}
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}
	svc, err := geo.NewService(geo.Config{Jurisdictions: []geo.Jurisdiction{"NJ", "PA"}}, geo.Deps{
		Boundaries: b,
		Keys:       prov,
		Registry:   reg,
		IPs: geo.NewStaticIPLocator(map[netip.Prefix]geo.IPLocation{
			netip.MustParsePrefix("203.0.113.0/24"): {Point: geo.Point{Lat: 40.2171, Lon: -74.7429}},
		}),
		Challenges: geo.NewMemoryChallenges(0, 0),
		Clock:      clock,
		Rand:       newSeeded(2),
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc, prov, clock
}
