package feed_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

type fakeAdapter struct{ s feed.StatsSnapshot }

func (f fakeAdapter) Stats() feed.StatsSnapshot { return f.s }
func (f fakeAdapter) Up() bool                  { return true }

func TestCollector(t *testing.T) {
	clock := &buzzer.FixedClock{T: time.Now()}
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"uof"}, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Apply(odds.Update{Provider: "uof", Kind: odds.KindAlive}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(feed.NewCollector(map[string]feed.StatsSource{
		"uof": fakeAdapter{feed.StatsSnapshot{Messages: 12, ParseErrors: 2, Lag: 250 * time.Millisecond}},
	}, eng))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()] = v
		}
	}
	if got["buzzer_feed_messages_total"] != 12 || got["buzzer_feed_parse_errors_total"] != 2 ||
		got["buzzer_feed_lag_seconds"] != 0.25 || got["buzzer_feed_up"] != 1 {
		t.Fatalf("metrics %v", got)
	}
	if _, ok := got["buzzer_feed_silence_seconds"]; !ok {
		t.Fatalf("no silence metric: %v", got)
	}
}
