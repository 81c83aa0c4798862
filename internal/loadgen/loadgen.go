// Package loadgen drives a bounded load against a Buzzer endpoint for the
// `buzzer bench` commands: N concurrent clients for a fixed duration, exact
// latency percentiles from every sample, and a progress line each second. It
// stops by itself when the duration or the context ends; it never decides
// what a request means.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Op runs one operation for a client and reports it. A returned error counts
// as a failed operation; its latency is still recorded.
type Op func(ctx context.Context, client int) error

// Result is what a run measured.
type Result struct {
	Ops      int64         `json:"ops"`
	Errors   int64         `json:"errors"`
	Elapsed  time.Duration `json:"-"`
	PerSec   float64       `json:"per_s"`
	P50ms    float64       `json:"p50_ms"`
	P95ms    float64       `json:"p95_ms"`
	P99ms    float64       `json:"p99_ms"`
	MaxMs    float64       `json:"max_ms"`
	Samples  int           `json:"-"`
	FirstErr string        `json:"first_error,omitempty"`
}

// Run starts clients goroutines calling op until duration has passed, then
// waits for the operations in flight (bounded by their own contexts) and
// returns the figures. Progress goes to progress (nil for none) once a second.
func Run(ctx context.Context, clients int, duration time.Duration, progress io.Writer, op Op) Result {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var ops, errs atomic.Int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, clients)
	start := time.Now()

	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	if progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			var last int64
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					n := ops.Load()
					fmt.Fprintf(progress, "bench: %5.0fs  %d ops (%d/s)  %d errors\n",
						time.Since(start).Seconds(), n, n-last, errs.Load())
					last = n
				}
			}
		}()
	}

	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples := make([]time.Duration, 0, 4096)
			for ctx.Err() == nil {
				t0 := time.Now()
				// The operation gets a context that outlives the run's deadline
				// so a request in flight at the end completes and is counted.
				err := op(context.WithoutCancel(ctx), c)
				samples = append(samples, time.Since(t0))
				ops.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
			lat[c] = samples
		}()
	}
	wg.Wait()
	close(stopProgress)
	pwg.Wait()

	elapsed := time.Since(start)
	var all []time.Duration
	for _, s := range lat {
		all = append(all, s...)
	}
	r := Result{Ops: ops.Load(), Errors: errs.Load(), Elapsed: elapsed, Samples: len(all)}
	r.PerSec = float64(r.Ops) / elapsed.Seconds()
	r.P50ms, r.P95ms, r.P99ms, r.MaxMs = Percentile(all, 50), Percentile(all, 95), Percentile(all, 99), Percentile(all, 100)
	if v, ok := firstErr.Load().(string); ok {
		r.FirstErr = v
	}
	return r
}

// Percentile returns the p-th percentile (nearest rank) of samples in
// milliseconds, rounded to 0.001 ms; 0 for no samples. It sorts samples.
func Percentile(samples []time.Duration, p float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	rank := int(math.Ceil(p / 100 * float64(len(samples))))
	rank = min(max(rank, 1), len(samples))
	ms := float64(samples[rank-1]) / float64(time.Millisecond)
	return math.Round(ms*1000) / 1000
}
