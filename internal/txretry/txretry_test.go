package txretry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
)

var errRace = errors.New("serialization race")

func TestDo(t *testing.T) {
	p := Policy{MaxAttempts: 4, BaseDelay: time.Microsecond, MaxDelay: 10 * time.Microsecond}
	isRace := func(err error) bool { return errors.Is(err, errRace) }
	tests := []struct {
		name     string
		failures int   // attempts that lose the race before success
		other    error // a non-retryable error returned at the first attempt
		wantCode string
		wantRuns int
	}{
		{name: "first try", failures: 0, wantRuns: 1},
		{name: "retried to success", failures: 3, wantRuns: 4},
		{name: "attempts exhausted", failures: 10, wantCode: buzzer.EUNAVAILABLE, wantRuns: 4},
		{name: "not retryable", other: buzzer.Errorf(buzzer.EINVALID, "bad"), wantCode: buzzer.EINVALID, wantRuns: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs, observed := 0, 0
			err := Do(context.Background(), p, isRace, func(int, error) { observed++ }, func(attempt int) error {
				runs++
				if attempt != runs {
					t.Fatalf("attempt %d on run %d", attempt, runs)
				}
				if tt.other != nil {
					return tt.other
				}
				if runs <= tt.failures {
					return errRace
				}
				return nil
			})
			if got := buzzer.ErrorCode(err); got != tt.wantCode {
				t.Fatalf("code = %q, want %q (err %v)", got, tt.wantCode, err)
			}
			if runs != tt.wantRuns {
				t.Fatalf("runs = %d, want %d", runs, tt.wantRuns)
			}
			if tt.wantCode == buzzer.EUNAVAILABLE && !errors.Is(err, errRace) {
				t.Fatalf("exhausted error lost its cause: %v", err)
			}
			if want := max(0, min(tt.failures, tt.wantRuns-1)); tt.other == nil && observed != want {
				t.Fatalf("observed %d retries, want %d", observed, want)
			}
		})
	}
}

func TestDoStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{MaxAttempts: 1000, BaseDelay: time.Hour, MaxDelay: time.Hour}
	runs := 0
	err := Do(ctx, p, func(error) bool { return true }, nil, func(int) error {
		runs++
		cancel() // the backoff sleep must notice the cancellation, not wait an hour
		return errRace
	})
	if buzzer.ErrorCode(err) != buzzer.ETIMEOUT || runs != 1 {
		t.Fatalf("err=%v runs=%d", err, runs)
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []Policy{{}, {MaxAttempts: 1}, {MaxAttempts: 1, BaseDelay: 2, MaxDelay: 1}} {
		if buzzer.ErrorCode(p.Validate()) != buzzer.EINVALID {
			t.Fatalf("%+v accepted", p)
		}
	}
}
