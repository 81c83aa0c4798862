package rngtest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/rng"
)

// BenchmarkDraws runs b.N durable draws through a Service over store from
// the given number of concurrent clients and reports draws/s and latency
// percentiles (p50_ms, p95_ms, p99_ms).
func BenchmarkDraws(b *testing.B, store rng.Store, clients int) {
	svc, err := rng.NewService(context.Background(), store, newSigner(b), rng.Config{Origin: testOrigin, Jurisdiction: "US-NJ"})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	req := rng.DrawRequest{Purpose: "bench", Requester: "bench", Kind: rng.KindInt, N: 52, Count: 5}
	per := (b.N + clients - 1) / clients
	lat := make([]time.Duration, 0, per*clients)
	var mu sync.Mutex
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t0 := time.Now()
				if _, err := svc.Draw(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "draws/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.95), "p95_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}
