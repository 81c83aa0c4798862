package feed_test

import (
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/odds"
)

type statusSink struct{ got []odds.ProviderStatus }

func (s *statusSink) Apply(u odds.Update) error {
	if u.Kind == odds.KindStatus {
		s.got = append(s.got, u.Status)
	}
	return nil
}

func TestHealthInactivityAndLag(t *testing.T) {
	clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}
	sink := &statusSink{}
	var stats feed.Stats
	h := feed.NewHealth("p", feed.HealthConfig{}, clock, sink, &stats)
	if h.Check() {
		t.Fatal("up before any recovery")
	}
	h.Recovered()
	clock.Advance(2 * time.Second)
	if !h.Check() {
		t.Fatal("down at exactly MaxInactivity")
	}
	clock.Advance(time.Millisecond)
	if h.Check() {
		t.Fatal("still up after the heartbeat interval was violated")
	}
	h.Recovered()
	if !h.Seen(clock.Now().Add(-time.Second)) || !h.Up() {
		t.Fatal("lag at the bound marked down")
	}
	if h.Seen(clock.Now().Add(-1001*time.Millisecond)) || h.Up() {
		t.Fatal("lag over the bound did not mark down")
	}
	h.Down("again") // idempotent: no second status
	want := []odds.ProviderStatus{odds.ProviderUp, odds.ProviderDown, odds.ProviderUp, odds.ProviderDown}
	if len(sink.got) != len(want) {
		t.Fatalf("statuses %v", sink.got)
	}
	for i := range want {
		if sink.got[i] != want[i] {
			t.Fatalf("statuses %v", sink.got)
		}
	}
	if s := stats.Snapshot(); s.Downs != 2 || s.Recoveries != 2 || s.Lag != 1001*time.Millisecond {
		t.Fatalf("stats %+v", s)
	}
}

func TestBackoff(t *testing.T) {
	if feed.Backoff(1) != 100*time.Millisecond || feed.Backoff(2) != 200*time.Millisecond || feed.Backoff(50) != 5*time.Second {
		t.Fatal(feed.Backoff(1), feed.Backoff(2), feed.Backoff(50))
	}
}
