package odds_test

import (
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

// TestEngineInvariants drives the engine with random updates, heartbeats,
// status changes and clock jumps from three providers over two events, and
// checks after every step: each event's deltas are numbered 1..n; replaying
// them gives exactly the snapshot; no market is open unless a trusted
// provider drives its event; quotes agree with the snapshot.
func TestEngineInvariants(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		providers := []string{"a", "b", "c"}
		events := []string{"e1", "e2"}
		clock := &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}
		deltas := map[string][]odds.Delta{}
		eng, err := odds.NewEngine(odds.EngineConfig{Providers: providers, Clock: clock,
			Publisher: odds.PublisherFunc(func(d odds.Delta) { deltas[d.EventID] = append(deltas[d.EventID], d) })})
		if err != nil {
			rt.Fatal(err)
		}
		for _, ev := range events {
			_ = eng.AddFixture(odds.Fixture{EventID: ev})
		}
		types := []odds.MarketType{odds.MatchResult, odds.Totals, odds.Moneyline}
		statuses := []odds.MarketStatus{odds.Open, odds.Open, odds.Open, odds.Suspended, odds.Closed, odds.Settled}
		steps := rapid.IntRange(1, 60).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			p := rapid.SampledFrom(providers).Draw(rt, "provider")
			switch rapid.IntRange(0, 9).Draw(rt, "op") {
			case 0:
				clock.Advance(time.Duration(rapid.IntRange(0, 3000).Draw(rt, "ms")) * time.Millisecond)
				eng.CheckHealth()
			case 1:
				_ = eng.Apply(odds.Update{Provider: p, Kind: odds.KindAlive})
			case 2:
				st := rapid.SampledFrom([]odds.ProviderStatus{odds.ProviderUp, odds.ProviderUp, odds.ProviderDown}).Draw(rt, "status")
				_ = eng.Apply(odds.Update{Provider: p, Kind: odds.KindStatus, Status: st})
			default:
				u := odds.Update{Provider: p, Kind: odds.KindOdds, EventID: rapid.SampledFrom(events).Draw(rt, "event"),
					Full: rapid.Bool().Draw(rt, "full"), SuspendAll: rapid.IntRange(0, 9).Draw(rt, "stop") == 0}
				n := rapid.IntRange(0, 3).Draw(rt, "markets")
				for j := 0; j < n; j++ {
					typ := rapid.SampledFrom(types).Draw(rt, "type")
					mu := odds.MarketUpdate{Type: typ, Status: rapid.SampledFrom(statuses).Draw(rt, "mstatus")}
					if typ == odds.Totals {
						mu.Line = odds.Line(rapid.SampledFrom([]int64{150, 250}).Draw(rt, "line"))
					}
					for _, sel := range []string{odds.Home, odds.Away} {
						s := odds.Selection{ID: sel, Price: buzzer.Price(rapid.Int64Range(10100, 40000).Draw(rt, "price"))}
						if mu.Status == odds.Settled {
							s.Result = rapid.SampledFrom([]odds.Result{odds.Won, odds.Lost, odds.Void}).Draw(rt, "result")
						}
						mu.Selections = append(mu.Selections, s)
					}
					u.Markets = append(u.Markets, mu)
				}
				if err := eng.Apply(u); err != nil {
					rt.Fatalf("valid update refused: %v", err)
				}
			}
			trusted := map[string]bool{}
			for _, h := range eng.Providers() {
				trusted[h.Provider] = h.Trusted
			}
			for _, ev := range events {
				ds := deltas[ev]
				replay := map[string]odds.Market{}
				for k, d := range ds {
					if d.Seq != uint64(k+1) {
						rt.Fatalf("event %s delta %d has seq %d", ev, k, d.Seq)
					}
					switch d.Kind {
					case odds.DeltaMarket:
						if d.Market.Version != d.Seq {
							rt.Fatalf("market version %d in delta %d", d.Market.Version, d.Seq)
						}
						replay[d.Market.ID] = *d.Market
					case odds.DeltaMarketRemoved:
						delete(replay, d.MarketID)
					}
				}
				snap, err := eng.Snapshot(ev)
				if err != nil {
					rt.Fatal(err)
				}
				if snap.Seq != uint64(len(ds)) || len(snap.Markets) != len(replay) {
					rt.Fatalf("event %s: snapshot seq %d/%d markets, replay %d/%d", ev, snap.Seq, len(snap.Markets), len(ds), len(replay))
				}
				for _, m := range snap.Markets {
					r := replay[m.ID]
					if r.Version != m.Version || r.Status != m.Status || r.Provider != m.Provider || len(r.Selections) != len(m.Selections) {
						rt.Fatalf("snapshot %+v replay %+v", m, r)
					}
					if m.Status == odds.Open && (snap.Event.Provider == "" || !trusted[snap.Event.Provider] || m.Provider != snap.Event.Provider) {
						rt.Fatalf("open market %s with driver %q (trusted %v)", m.ID, snap.Event.Provider, trusted)
					}
					for _, s := range m.Selections {
						q, err := eng.Quote(ev, m.ID, s.ID)
						if err != nil || q.Price != s.Price || q.Status != m.Status || q.Version != m.Version {
							rt.Fatalf("quote %+v %v vs %+v", q, err, m)
						}
					}
				}
			}
		}
	})
}
