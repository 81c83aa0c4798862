package wallettest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/wallet"
)

// BenchPlaceBets places b.N single bets from clients concurrent callers
// spread over players funded players, straight through the service (no
// HTTP), and reports bets/s and the p50/p99 latency of one placement.
func BenchPlaceBets(b *testing.B, store wallet.Store, cfg wallet.Config, clients, players int) {
	e := NewEnv(b, store, &cfg)
	ctx := context.Background()
	for p := 0; p < players; p++ {
		e.Deposit(b, fmt.Sprint("bp", p), 10_000_000)
	}
	Concurrently(b, clients, "bets/s", func(_ int, i int64) error {
		_, err := e.Svc.PlaceBet(ctx, fmt.Sprint("bp", int(i)%players), fmt.Sprint("k", i), single("ev1", "m1", "s1", 20000, 100))
		return err
	})
}

// Concurrently runs op b.N times in all, from clients goroutines (client
// is the caller's index, i the call's, from 1), and reports the throughput
// as unit and the p50/p99 latency of one call. The first failing call
// fails the benchmark and stops its goroutine.
func Concurrently(b *testing.B, clients int, unit string, op func(client int, i int64) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := op(c, i); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(len(all))/el.Seconds(), unit)
		b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
	}
}
