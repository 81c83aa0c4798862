package kafka_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/buzzer-bet/buzzer/kafka"
	"github.com/buzzer-bet/buzzer/odds"
	"github.com/buzzer-bet/buzzer/odds/oddstest"
)

// TestBusConformance runs the same odds.Bus suite as JetStream against an
// in-process Kafka (kfake, three brokers), a fresh topic per subtest.
func TestBusConformance(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	var n atomic.Int64
	oddstest.RunBus(t, func(t *testing.T) odds.Bus {
		cfg := kafka.DefaultConfig()
		cfg.Brokers = cluster.ListenAddrs()
		cfg.Topic = fmt.Sprintf("odds-%d", n.Add(1))
		cfg.Partitions = 4
		bus, err := kafka.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(bus.Close)
		return bus
	})
}

func TestConfigValidate(t *testing.T) {
	good := kafka.DefaultConfig()
	good.Brokers = []string{"127.0.0.1:9092"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*kafka.Config){
		"no brokers":   func(c *kafka.Config) { c.Brokers = nil },
		"no topic":     func(c *kafka.Config) { c.Topic = "" },
		"partitions":   func(c *kafka.Config) { c.Partitions = 0 },
		"replication":  func(c *kafka.Config) { c.ReplicationFactor = 0 },
		"linger":       func(c *kafka.Config) { c.Linger = -1 },
		"request wait": func(c *kafka.Config) { c.RequestTimeout = 0 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

// TestBadPosition: a position that is not "partition:offset" pairs is refused.
func TestBadPosition(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	cfg := kafka.DefaultConfig()
	cfg.Brokers = cluster.ListenAddrs()
	bus, err := kafka.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	for _, pos := range []string{"x", "1", "1:-2", "a:1", "0:1,", "-1:0"} {
		if err := bus.Subscribe(context.Background(), pos, func(odds.BusMessage) error { return nil }); err == nil {
			t.Errorf("position %q accepted", pos)
		}
	}
}
