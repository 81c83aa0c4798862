package gateway_test

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer/auth"
)

type nopVerifier struct{}

func (nopVerifier) Verify(context.Context, string) (auth.Principal, error) {
	return auth.Principal{}, errNop
}

type nopRegisterer struct{}

func (nopRegisterer) Register(prometheus.Collector) error  { return nil }
func (nopRegisterer) MustRegister(...prometheus.Collector) {}
func (nopRegisterer) Unregister(prometheus.Collector) bool { return true }
