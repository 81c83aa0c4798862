package rngtest_test

import (
	"errors"
	"testing"

	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"golang.org/x/mod/sumdb/tlog"
)

func TestMemStore(t *testing.T) {
	rngtest.RunStoreTests(t, func(t *testing.T) rng.Store { return rngtest.NewMemStore() })
}

func TestServiceOnMemStore(t *testing.T) {
	rngtest.RunServiceTests(t, func(t *testing.T) rngtest.Harness {
		mem := rngtest.NewMemStore()
		fs := &rngtest.FaultStore{Store: mem}
		return rngtest.Harness{
			Store:         fs,
			Reopen:        func(*testing.T) rng.Store { return fs },
			SetRecordData: func(_ *testing.T, i int64, d []byte) { mem.TamperRecord(i, d) },
			SetHash:       func(_ *testing.T, i int64, h tlog.Hash) { mem.TamperHash(i, h) },
			FailAppends: func(_ *testing.T, fail bool) {
				if fail {
					fs.SetAppendError(errors.New("injected"))
				} else {
					fs.SetAppendError(nil)
				}
			},
		}
	})
}
