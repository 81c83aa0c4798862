package fanout_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/centrifugal/centrifuge"
	"github.com/centrifugal/protocol"

	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/odds"
)

// counting is a transport that only counts what it is given.
type counting struct{ frames, bytes atomic.Int64 }

func (c *counting) Name() string                                { return "bench" }
func (c *counting) AcceptProtocol() string                      { return "" }
func (c *counting) Protocol() centrifuge.ProtocolType           { return centrifuge.ProtocolTypeJSON }
func (c *counting) ProtocolVersion() centrifuge.ProtocolVersion { return centrifuge.ProtocolVersion2 }
func (c *counting) Unidirectional() bool                        { return false }
func (c *counting) Emulation() bool                             { return false }
func (c *counting) DisabledPushFlags() uint64                   { return 0 }
func (c *counting) PingPongConfig() centrifuge.PingPongConfig {
	return centrifuge.PingPongConfig{PingInterval: -1, PongTimeout: -1}
}
func (c *counting) Close(centrifuge.Disconnect) error { return nil }
func (c *counting) Write(b []byte) error              { return c.WriteMany(b) }
func (c *counting) WriteMany(bs ...[]byte) error {
	for _, b := range bs {
		c.frames.Add(1)
		c.bytes.Add(int64(len(b)))
	}
	return nil
}

// BenchmarkFanout measures the fan-out alone: one delta applied, delivered
// to every subscriber of its event (in-memory connections, no network).
// deliveries/s counts publications handed to subscribers' connections,
// conflated ones included.
func BenchmarkFanout(b *testing.B) {
	for _, subs := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"p1"}})
			if err != nil {
				b.Fatal(err)
			}
			if err := eng.AddFixture(odds.Fixture{EventID: "ev", Sport: odds.Football}); err != nil {
				b.Fatal(err)
			}
			srv, err := fanout.New(eng, fanout.Config{Epoch: "e", Coalesce: -1}) // every delta offered as applied
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = srv.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for i := 0; i < subs; i++ {
				c, _, err := centrifuge.NewClient(context.Background(), srv.Node(), &counting{})
				if err != nil {
					b.Fatal(err)
				}
				c.HandleCommand(&protocol.Command{Id: 1, Connect: &protocol.ConnectRequest{}}, 0)
				c.HandleCommand(&protocol.Command{Id: 2, Subscribe: &protocol.SubscribeRequest{Channel: fanout.EventChannel("ev")}}, 0)
			}
			for srv.Stats().Subscribers < int64(subs) {
				time.Sleep(time.Millisecond)
			}
			before := srv.Stats().Publications
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				srv.Apply("e", mdelta(uint64(i+1), odds.Line(50+100*(i%8))))
			}
			el := time.Since(start)
			b.StopTimer()
			st := srv.Stats()
			b.ReportMetric(float64(st.Publications-before)/el.Seconds(), "deliveries/s")
			b.ReportMetric(float64(st.Conflations)/float64(st.Publications-before+1), "conflated/delivery")
		})
	}
}
