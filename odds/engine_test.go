package odds_test

import (
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/odds"
)

type harness struct {
	t      *testing.T
	clock  *buzzer.FixedClock
	eng    *odds.Engine
	deltas []odds.Delta
}

func newHarness(t *testing.T, providers ...string) *harness {
	t.Helper()
	h := &harness{t: t, clock: &buzzer.FixedClock{T: time.Date(2026, 2, 8, 23, 0, 0, 0, time.UTC)}}
	eng, err := odds.NewEngine(odds.EngineConfig{
		Providers: providers,
		Clock:     h.clock,
		Publisher: odds.PublisherFunc(func(d odds.Delta) { h.deltas = append(h.deltas, d) }),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.eng = eng
	if err := eng.AddFixture(odds.Fixture{EventID: "ev1", Sport: odds.Football, Home: "Arsenal", Away: "Chelsea"}); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) apply(u odds.Update) {
	h.t.Helper()
	if err := h.eng.Apply(u); err != nil {
		h.t.Fatalf("apply %+v: %v", u, err)
	}
}

func (h *harness) up(p string) {
	h.apply(odds.Update{Provider: p, Kind: odds.KindStatus, Status: odds.ProviderUp})
}

func price(t *testing.T, s string) buzzer.Price {
	t.Helper()
	p, err := buzzer.ParsePrice(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func result1x2(t *testing.T, provider, home, draw, away string) odds.Update {
	inPlay := true
	return odds.Update{Provider: provider, Kind: odds.KindOdds, EventID: "ev1", InPlay: &inPlay, Markets: []odds.MarketUpdate{{
		Type: odds.MatchResult, Status: odds.Open, Selections: []odds.Selection{
			{ID: odds.Home, Price: price(t, home)}, {ID: odds.Draw, Price: price(t, draw)}, {ID: odds.Away, Price: price(t, away)},
		}}}}
}

var mr = odds.MarketID("ev1", odds.MatchResult, 0)

func (h *harness) quote(sel string) odds.Quote {
	h.t.Helper()
	q, err := h.eng.Quote("ev1", mr, sel)
	if err != nil {
		h.t.Fatal(err)
	}
	return q
}

// checkSeq asserts the deltas seen so far are numbered 1..n without gap.
func (h *harness) checkSeq() {
	h.t.Helper()
	for i, d := range h.deltas {
		if d.Seq != uint64(i+1) || d.EventID != "ev1" {
			h.t.Fatalf("delta %d has seq %d event %s", i, d.Seq, d.EventID)
		}
	}
	s, err := h.eng.Snapshot("ev1")
	if err != nil {
		h.t.Fatal(err)
	}
	if s.Seq != uint64(len(h.deltas)) {
		h.t.Fatalf("snapshot seq %d, deltas %d", s.Seq, len(h.deltas))
	}
}

func (h *harness) last() odds.Delta { return h.deltas[len(h.deltas)-1] }

func TestSequenceSnapshotAndQuote(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6"))
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6")) // no change, no delta
	n := len(h.deltas)
	h.apply(result1x2(t, "a", "2.0", "3.5", "3.8"))
	if len(h.deltas) != n+1 {
		t.Fatalf("price change gave %d deltas, want 1", len(h.deltas)-n)
	}
	h.checkSeq()
	q := h.quote(odds.Home)
	if q.Price != price(t, "2.0") || q.Status != odds.Open || !q.InPlay || q.Version != h.last().Seq {
		t.Fatalf("quote %+v, last seq %d", q, h.last().Seq)
	}
	if _, err := h.eng.Quote("ev1", mr, "nope"); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("unknown selection: %v", err)
	}
	if _, err := h.eng.Quote("ev2", mr, odds.Home); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("unknown event: %v", err)
	}
	s, _ := h.eng.Snapshot("ev1")
	if len(s.Markets) != 1 || s.Markets[0].Selections[1].ID != odds.Draw || s.Event.Provider != "a" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestSilentProviderSuspendedWithinTimeout(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6"))
	h.clock.Advance(2 * time.Second) // exactly the timeout: still trusted
	h.eng.CheckHealth()
	if q := h.quote(odds.Home); q.Status != odds.Open {
		t.Fatalf("suspended at the timeout boundary: %+v", q)
	}
	h.clock.Advance(time.Millisecond)
	h.eng.CheckHealth()
	if q := h.quote(odds.Home); q.Status != odds.Suspended {
		t.Fatalf("not suspended after silence: %+v", q)
	}
	var sawSuspend bool
	for _, d := range h.deltas {
		if d.Kind == odds.DeltaMarket && d.Market.Status == odds.Suspended && d.Reason == "provider_unavailable" {
			sawSuspend = true
		}
	}
	if !sawSuspend {
		t.Fatalf("no explicit suspension delta in %+v", h.deltas)
	}
	n := len(h.deltas)
	h.eng.CheckHealth() // idempotent
	if len(h.deltas) != n {
		t.Fatal("second health check emitted deltas")
	}
	// A heartbeat brings it back: its last prices are published again.
	h.apply(odds.Update{Provider: "a", Kind: odds.KindAlive})
	if q := h.quote(odds.Home); q.Status != odds.Open {
		t.Fatalf("not reopened after heartbeat: %+v", q)
	}
	h.checkSeq()
}

func TestAdapterDownSuspendsUntilRecovered(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6"))
	h.apply(odds.Update{Provider: "a", Kind: odds.KindStatus, Status: odds.ProviderDown})
	if q := h.quote(odds.Home); q.Status != odds.Suspended {
		t.Fatalf("down provider's market open: %+v", q)
	}
	// Data while recovering is folded in but not trusted.
	h.apply(result1x2(t, "a", "1.9", "3.5", "4.0"))
	if q := h.quote(odds.Home); q.Status != odds.Suspended || q.Price != price(t, "2.1") {
		t.Fatalf("untrusted data published: %+v", q)
	}
	h.up("a")
	if q := h.quote(odds.Home); q.Status != odds.Open || q.Price != price(t, "1.9") {
		t.Fatalf("after recovery: %+v", q)
	}
	h.checkSeq()
}

func TestFailoverToSecondaryAndHandBack(t *testing.T) {
	h := newHarness(t, "primary", "secondary")
	h.up("primary")
	h.up("secondary")
	h.apply(result1x2(t, "primary", "2.10", "3.40", "3.60"))
	h.apply(result1x2(t, "secondary", "2.05", "3.35", "3.55"))
	if q := h.quote(odds.Home); q.Price != price(t, "2.1") {
		t.Fatalf("primary not driving: %+v", q)
	}
	// The secondary keeps heartbeating; the primary goes quiet.
	h.clock.Advance(1500 * time.Millisecond)
	h.apply(odds.Update{Provider: "secondary", Kind: odds.KindAlive})
	h.clock.Advance(600 * time.Millisecond)
	h.eng.CheckHealth()
	q := h.quote(odds.Home)
	if q.Price != price(t, "2.05") || q.Status != odds.Open {
		t.Fatalf("secondary did not take over: %+v", q)
	}
	if s, _ := h.eng.Snapshot("ev1"); s.Event.Provider != "secondary" || s.Markets[0].Provider != "secondary" {
		t.Fatalf("snapshot after failover: %+v", s)
	}
	// The primary recovers: it drives again.
	h.apply(odds.Update{Provider: "primary", Kind: odds.KindAlive})
	if q := h.quote(odds.Home); q.Price != price(t, "2.1") || q.Status != odds.Open {
		t.Fatalf("no hand-back: %+v", q)
	}
	if s, _ := h.eng.Snapshot("ev1"); s.Event.Provider != "primary" {
		t.Fatalf("snapshot after hand-back: %+v", s.Event)
	}
	h.checkSeq()
}

func TestDivergingPricesSuspend(t *testing.T) {
	h := newHarness(t, "a", "b")
	h.up("a")
	h.up("b")
	h.apply(result1x2(t, "a", "2.10", "3.40", "3.60"))
	h.apply(result1x2(t, "b", "2.05", "3.35", "3.55"))
	if q := h.quote(odds.Home); q.Status != odds.Open {
		t.Fatalf("close prices suspended: %+v", q)
	}
	h.apply(result1x2(t, "b", "2.90", "3.35", "3.55")) // 38% off
	if q := h.quote(odds.Home); q.Status != odds.Suspended {
		t.Fatalf("divergence not suspended: %+v", q)
	}
	if d := h.last(); d.Reason != "price_divergence" {
		t.Fatalf("reason %q", d.Reason)
	}
	h.apply(result1x2(t, "b", "2.12", "3.35", "3.55"))
	if q := h.quote(odds.Home); q.Status != odds.Open {
		t.Fatalf("not reopened when prices agree: %+v", q)
	}
	h.checkSeq()
}

func TestFullImageRemovesMissingMarket(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	u := result1x2(t, "a", "2.1", "3.4", "3.6")
	u.Markets = append(u.Markets, odds.MarketUpdate{Type: odds.Totals, Line: 250, Status: odds.Open,
		Selections: []odds.Selection{{ID: odds.Over, Price: price(t, "1.9")}, {ID: odds.Under, Price: price(t, "1.95")}}})
	h.apply(u)
	tot := odds.MarketID("ev1", odds.Totals, 250)
	if _, err := h.eng.Quote("ev1", tot, odds.Over); err != nil {
		t.Fatal(err)
	}
	img := result1x2(t, "a", "2.1", "3.4", "3.6")
	img.Full = true
	h.apply(img)
	if _, err := h.eng.Quote("ev1", tot, odds.Over); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("missing market still quoted: %v", err)
	}
	if d := h.last(); d.Kind != odds.DeltaMarketRemoved || d.MarketID != tot || d.Reason != "not_offered" {
		t.Fatalf("last delta %+v", d)
	}
	h.checkSeq()
}

func TestBetStopAndSettlement(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6"))
	h.apply(odds.Update{Provider: "a", Kind: odds.KindOdds, EventID: "ev1", SuspendAll: true, Reason: "bet_stop"})
	if q := h.quote(odds.Home); q.Status != odds.Suspended {
		t.Fatalf("bet stop: %+v", q)
	}
	if d := h.last(); d.Reason != "bet_stop" {
		t.Fatalf("reason %q", d.Reason)
	}
	h.apply(odds.Update{Provider: "a", Kind: odds.KindOdds, EventID: "ev1", Ended: true, Reason: "settlement",
		Markets: []odds.MarketUpdate{{Type: odds.MatchResult, Status: odds.Settled, Selections: []odds.Selection{
			{ID: odds.Home, Result: odds.Won}, {ID: odds.Draw, Result: odds.Lost}, {ID: odds.Away, Result: odds.Lost}}}}})
	s, _ := h.eng.Snapshot("ev1")
	m := s.Markets[0]
	if m.Status != odds.Settled || m.Selections[0].Result != odds.Won || m.Selections[0].Price != price(t, "2.1") || !s.Event.Ended {
		t.Fatalf("settled market %+v event %+v", m, s.Event)
	}
	// Settlement is final: a silent provider does not reopen or suspend it.
	h.clock.Advance(5 * time.Second)
	h.eng.CheckHealth()
	if q := h.quote(odds.Home); q.Status != odds.Settled {
		t.Fatalf("settled market changed: %+v", q)
	}
	h.checkSeq()
	if n := h.eng.Prune(h.clock.Now().Add(-6 * time.Second)); n != 0 {
		t.Fatalf("pruned %d recent events", n)
	}
	if n := h.eng.Prune(h.clock.Now().Add(time.Millisecond)); n != 1 {
		t.Fatalf("pruned %d", n)
	}
	if _, err := h.eng.Snapshot("ev1"); buzzer.ErrorCode(err) != buzzer.ENOTFOUND {
		t.Fatalf("pruned event still there: %v", err)
	}
}

func TestBadUpdatesChangeNothing(t *testing.T) {
	h := newHarness(t, "a")
	h.up("a")
	h.apply(result1x2(t, "a", "2.1", "3.4", "3.6"))
	n := len(h.deltas)
	bad := []odds.Update{
		{Kind: odds.KindAlive},
		{Provider: "a", Kind: "gossip"},
		{Provider: "a", Kind: odds.KindStatus, Status: "sideways"},
		{Provider: "a", Kind: odds.KindOdds, EventID: "ev1", Markets: []odds.MarketUpdate{{Type: "exotic", Status: odds.Open}}},
		{Provider: "a", Kind: odds.KindOdds, EventID: "ev1", Markets: []odds.MarketUpdate{{Type: odds.Totals, Status: "maybe"}}},
		{Provider: "a", Kind: odds.KindOdds, EventID: "ev1", Markets: []odds.MarketUpdate{{Type: odds.Moneyline, Status: odds.Open, Selections: []odds.Selection{{ID: odds.Home, Price: 10000}}}}},
		{Provider: "a", Kind: odds.KindOdds, EventID: "nope"},
	}
	for _, u := range bad {
		if err := h.eng.Apply(u); err == nil {
			t.Fatalf("accepted %+v", u)
		}
	}
	if len(h.deltas) != n {
		t.Fatalf("bad updates emitted %d deltas", len(h.deltas)-n)
	}
}

func TestLineRoundTrip(t *testing.T) {
	for _, c := range []struct {
		in   string
		want odds.Line
		out  string
	}{{"2.5", 250, "2.5"}, {"-1.5", -150, "-1.5"}, {"+3", 300, "3"}, {"-0.25", -25, "-0.25"}, {"0", 0, "0"}, {"44.5", 4450, "44.5"}} {
		l, err := odds.ParseLine(c.in)
		if err != nil || l != c.want || l.String() != c.out {
			t.Fatalf("%q: %v %v %q", c.in, l, err, l.String())
		}
	}
	for _, bad := range []string{"", "-", "1.234", "1e3", "a", "1.-5", "--1"} {
		if _, err := odds.ParseLine(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"2.5", "-1.5", "+3", "-0.25", "1.234", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := odds.ParseLine(s)
		if err != nil {
			return
		}
		l2, err := odds.ParseLine(l.String())
		if err != nil || l2 != l {
			t.Fatalf("%q -> %v -> %q -> %v %v", s, l, l.String(), l2, err)
		}
	})
}
