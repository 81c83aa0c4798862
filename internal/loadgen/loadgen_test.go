package loadgen

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(101-i)*time.Millisecond) // unsorted on purpose
	}
	for p, want := range map[float64]float64{50: 50, 95: 95, 99: 99, 100: 100, 1: 1} {
		if got := Percentile(s, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("empty")
	}
}

func TestRunCountsOpsAndErrors(t *testing.T) {
	var progress bytes.Buffer
	n := 0
	r := Run(context.Background(), 1, 1200*time.Millisecond, &progress, func(ctx context.Context, c int) error {
		n++
		time.Sleep(time.Millisecond)
		if n%2 == 0 {
			return errors.New("odd one out")
		}
		return nil
	})
	if r.Ops != int64(n) || r.Errors != int64(n/2) || r.FirstErr != "odd one out" || r.Samples != n {
		t.Fatalf("result %+v after %d ops", r, n)
	}
	if !strings.Contains(progress.String(), "ops") {
		t.Fatalf("no progress line: %q", progress.String())
	}
}
