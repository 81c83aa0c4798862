package geo_test

import (
	"testing"

	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/geo/challengetest"
)

func TestMemoryChallengesConformance(t *testing.T) {
	challengetest.Run(t, func(t *testing.T, maxPerSession int) geo.ChallengeStore {
		return geo.NewMemoryChallenges(maxPerSession, 0)
	})
}
