package georegistry

import (
	"testing"

	"github.com/buzzer-bet/buzzer/geo"
)

// FuzzParseStatus: any registry body either parses into an answer that
// echoes the request or is rejected; never a panic.
func FuzzParseStatus(f *testing.F) {
	f.Add([]byte(`{"player_id":"p-1","jurisdiction":"NJ","self_excluded":false,"consented":true}`))
	f.Add([]byte(`{"player_id":"p-1","jurisdiction":"NJ","self_excluded":true,"consented":true}`))
	f.Add([]byte(`{"player_id":"p-1","jurisdiction":"NJ","self_excluded":false}`))
	f.Add([]byte(`{"player_id":"p-1","jurisdiction":"NJ","self_excluded":false,"consented":true}{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := ParseStatus(body, "p-1", geo.Jurisdiction("NJ"))
		if err != nil {
			return
		}
		// Re-parsing with another player must fail: the echo is checked.
		if _, err := ParseStatus(body, "p-2", geo.Jurisdiction("NJ")); err == nil {
			t.Fatalf("body %q accepted for two players (%+v)", body, st)
		}
	})
}
