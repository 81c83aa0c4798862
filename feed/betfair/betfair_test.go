package betfair_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed/betfair"
	"github.com/buzzer-bet/buzzer/feed/internal/golden"
	"github.com/buzzer-bet/buzzer/odds"
)

func mapping(t testing.TB) *odds.MappingTable {
	m, err := odds.NewMappingTable(
		odds.EventLink{Provider: "betfair", ProviderEventID: "32000001", EventID: "ev-1", Home: "1000002", Away: "1000003"},
		odds.EventLink{Provider: "betfair", ProviderEventID: "32000002", EventID: "ev-2", Home: "1000004", Away: "1000005"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lines(t testing.TB) [][]byte {
	b, err := os.ReadFile("testdata/stream.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

type result struct {
	Line     int           `json:"line"`
	Error    string        `json:"error,omitempty"`
	Image    bool          `json:"image,omitempty"`
	Unmapped int           `json:"unmapped,omitempty"`
	Updates  []odds.Update `json:"updates,omitempty"`
}

// TestGolden runs the whole stream through one normalizer, since Betfair
// deltas rely on definitions sent earlier.
func TestGolden(t *testing.T) {
	n := &betfair.Normalizer{Provider: "betfair", Mapper: mapping(t)}
	var got []result
	for i, l := range lines(t) {
		r := result{Line: i + 1}
		m, err := betfair.Parse(l)
		if err == nil {
			var res betfair.Result
			res, err = n.Normalize(m)
			r.Updates, r.Image, r.Unmapped = res.Updates, res.Image, res.Unmapped
		}
		if err != nil {
			r.Error = buzzer.ErrorMessage(err)
		}
		got = append(got, r)
	}
	golden.Check(t, "testdata/stream.golden.json", got)
}

type sink struct{ eng *odds.Engine }

func (s sink) Apply(u odds.Update) error { return s.eng.Apply(u) }

func newEngine(t testing.TB) (*odds.Engine, *[]odds.Delta, *buzzer.FixedClock) {
	clock := &buzzer.FixedClock{T: time.UnixMilli(1770591600000)}
	var deltas []odds.Delta
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"betfair"}, Clock: clock,
		Publisher: odds.PublisherFunc(func(d odds.Delta) { deltas = append(deltas, d) })})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev-1", "ev-2"} {
		if err := eng.AddFixture(odds.Fixture{EventID: id}); err != nil {
			t.Fatal(err)
		}
	}
	return eng, &deltas, clock
}

// TestHandleTrustsAfterImage: the adapter's handler counts malformed lines,
// becomes trusted on the subscription image, and its prices reach the engine.
func TestHandleTrustsAfterImage(t *testing.T) {
	eng, _, clock := newEngine(t)
	a, err := betfair.New(betfair.Config{Addr: "127.0.0.1:1", Mapper: mapping(t), Sink: eng, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ls := lines(t)
	for i, l := range ls[:4] {
		a.Handle(context.Background(), l)
		if want := i >= 2; a.Up() != want {
			t.Fatalf("after line %d up=%v", i+1, a.Up())
		}
	}
	q, err := eng.Quote("ev-1", odds.MarketID("ev-1", odds.MatchResult, 0), odds.Home)
	// The draw's best back went to size 0: no price, so the market is not bettable.
	if err != nil || q.Price != 15200 || q.Status != odds.Suspended {
		t.Fatalf("quote %+v %v", q, err)
	}
	q, _ = eng.Quote("ev-1", odds.MarketID("ev-1", odds.Totals, 250), odds.Over)
	if q.Price != 19800 {
		t.Fatalf("totals quote %+v", q)
	}
	for _, l := range ls[4:] {
		clock.T = time.UnixMilli(1770591605000)
		a.Handle(context.Background(), l)
	}
	s := a.Stats()
	if s.Messages != int64(len(ls)) || s.ParseErrors != 7 {
		t.Fatalf("stats %+v", s)
	}
	q, _ = eng.Quote("ev-1", odds.MarketID("ev-1", odds.Totals, 250), odds.Over)
	if q.Status != odds.Settled {
		t.Fatalf("totals after settlement %+v", q)
	}
}

func FuzzParse(f *testing.F) {
	for _, l := range lines(f) {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := betfair.Parse(data)
		if err != nil {
			if buzzer.ErrorCode(err) != buzzer.EINVALID {
				t.Fatalf("parse error without EINVALID: %v", err)
			}
			return
		}
		// Prime the normalizer with the image so deltas have definitions.
		n := &betfair.Normalizer{Provider: "betfair", Mapper: mapping(t)}
		img, _ := betfair.Parse(lines(t)[2])
		if _, err := n.Normalize(img); err != nil {
			t.Fatal(err)
		}
		res, err := n.Normalize(m)
		if err != nil {
			return
		}
		eng, deltas, _ := newEngine(t)
		_ = eng.Apply(odds.Update{Provider: "betfair", Kind: odds.KindStatus, Status: odds.ProviderUp})
		for _, u := range res.Updates {
			_ = eng.Apply(u)
		}
		counts := map[string]uint64{}
		for _, d := range *deltas {
			counts[d.EventID]++
			if d.Seq != counts[d.EventID] {
				t.Fatalf("gap: %+v", d)
			}
		}
	})
}

// TestSegmentedImage: an image split into SEG_START / SEG / SEG_END gives the
// same updates as the whole message.
func TestSegmentedImage(t *testing.T) {
	whole, err := betfair.Parse(lines(t)[2])
	if err != nil {
		t.Fatal(err)
	}
	want, err := (&betfair.Normalizer{Provider: "betfair", Mapper: mapping(t)}).Normalize(whole)
	if err != nil {
		t.Fatal(err)
	}
	n := &betfair.Normalizer{Provider: "betfair", Mapper: mapping(t)}
	parts := []string{"SEG_START", "SEG", "SEG_END"}
	var got betfair.Result
	for i, st := range parts {
		m := whole
		m.SegmentType = st
		m.Mc = whole.Mc[i*2 : min(len(whole.Mc), i*2+2)]
		res, err := n.Normalize(m)
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 && len(res.Updates) != 0 {
			t.Fatalf("segment %s produced updates", st)
		}
		got = res
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("segmented %+v\nwhole %+v", got, want)
	}
	if _, err := n.Normalize(betfair.Message{Op: "mcm", SegmentType: "SEG"}); err == nil {
		t.Fatal("SEG without SEG_START accepted")
	}
}
