package feed

import (
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer/odds"
)

// StatsSource is an adapter as the metrics collector sees it.
type StatsSource interface {
	Stats() StatsSnapshot
	Up() bool
}

// ProviderHealthSource reports the engine's view of providers (*odds.Engine).
type ProviderHealthSource interface {
	Providers() []odds.ProviderHealth
}

// Collector exposes adapter counters and provider silence as Prometheus
// metrics, read at scrape time. Register it on the registry main passes
// around (never the global one).
type Collector struct {
	adapters map[string]StatsSource
	engine   ProviderHealthSource
	now      func() time.Time

	messages, parseErrors, unmapped, rejected, reconnects, recoveries, downs *prometheus.Desc
	lag, up, silence                                                         *prometheus.Desc
}

// NewCollector returns a collector over the adapters (keyed by provider
// name) and, if engine is not nil, the engine's provider silence.
func NewCollector(adapters map[string]StatsSource, engine ProviderHealthSource) *Collector {
	l := []string{"provider"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, l, nil) }
	return &Collector{
		adapters: adapters, engine: engine, now: time.Now,
		messages:    d("buzzer_feed_messages_total", "Raw messages received from the provider."),
		parseErrors: d("buzzer_feed_parse_errors_total", "Malformed provider messages dropped."),
		unmapped:    d("buzzer_feed_unmapped_total", "Provider messages about events missing from the mapping."),
		rejected:    d("buzzer_feed_rejected_total", "Normalized updates the odds engine refused."),
		reconnects:  d("buzzer_feed_reconnects_total", "Reconnections to the provider."),
		recoveries:  d("buzzer_feed_recoveries_total", "Completed recoveries (snapshot or initial image)."),
		downs:       d("buzzer_feed_downs_total", "Times the provider was marked down."),
		lag:         d("buzzer_feed_lag_seconds", "Processing lag of the provider's last timestamped message."),
		up:          d("buzzer_feed_up", "1 if the adapter trusts the provider, 0 while it is down or recovering."),
		silence:     d("buzzer_feed_silence_seconds", "Time since the engine last heard from the provider."),
	}
}

var _ prometheus.Collector = (*Collector)(nil)

// Describe sends every metric description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.messages, c.parseErrors, c.unmapped, c.rejected, c.reconnects, c.recoveries, c.downs, c.lag, c.up, c.silence} {
		ch <- d
	}
}

// Collect reads the counters now.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	names := make([]string, 0, len(c.adapters))
	for n := range c.adapters {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		a := c.adapters[n]
		s := a.Stats()
		for _, v := range []struct {
			d *prometheus.Desc
			n int64
		}{{c.messages, s.Messages}, {c.parseErrors, s.ParseErrors}, {c.unmapped, s.Unmapped}, {c.rejected, s.Rejected},
			{c.reconnects, s.Reconnects}, {c.recoveries, s.Recoveries}, {c.downs, s.Downs}} {
			ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n), n)
		}
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, s.Lag.Seconds(), n)
		up := 0.0
		if a.Up() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, n)
	}
	if c.engine != nil {
		now := c.now()
		for _, p := range c.engine.Providers() {
			if p.LastSeen.IsZero() {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.silence, prometheus.GaugeValue, now.Sub(p.LastSeen).Seconds(), p.Provider)
		}
	}
}
