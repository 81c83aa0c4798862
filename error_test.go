package buzzer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/buzzer-bet/buzzer"
)

func TestErrorCodeAndMessage(t *testing.T) {
	for _, c := range []struct {
		name      string
		err       error
		code, msg string
	}{
		{"nil", nil, "", ""},
		{"application error", buzzer.Errorf(buzzer.ECONFLICT, "Stale."), buzzer.ECONFLICT, "Stale."},
		{"wrapped application error", fmt.Errorf("op: %w", buzzer.Errorf(buzzer.ENOTFOUND, "No such bet.")), buzzer.ENOTFOUND, "No such bet."},
		{"unknown error", errors.New("disk on fire"), buzzer.EINTERNAL, "Internal error."},
		{"bare deadline", context.DeadlineExceeded, buzzer.ETIMEOUT, "The operation did not finish in time."},
		{"wrapped deadline", fmt.Errorf("exec: %w", context.DeadlineExceeded), buzzer.ETIMEOUT, "The operation did not finish in time."},
		{"deadline under an application error", buzzer.Wrap(context.DeadlineExceeded, buzzer.EUNAVAILABLE, "The store is down."), buzzer.EUNAVAILABLE, "The store is down."},
		{"cancelled", context.Canceled, buzzer.EINTERNAL, "Internal error."},
	} {
		if got := buzzer.ErrorCode(c.err); got != c.code {
			t.Errorf("%s: code %q, want %q", c.name, got, c.code)
		}
		if got := buzzer.ErrorMessage(c.err); got != c.msg {
			t.Errorf("%s: message %q, want %q", c.name, got, c.msg)
		}
	}
}
