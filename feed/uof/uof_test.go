package uof_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/feed"
	"github.com/buzzer-bet/buzzer/feed/internal/golden"
	"github.com/buzzer-bet/buzzer/feed/uof"
	"github.com/buzzer-bet/buzzer/odds"
)

func mapping(t testing.TB) *odds.MappingTable {
	m, err := odds.NewMappingTable(
		odds.EventLink{Provider: "uof", ProviderEventID: "sr:match:50000001", EventID: "ev-1"},
		odds.EventLink{Provider: "uof", ProviderEventID: "sr:match:50000002", EventID: "ev-2"},
	)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func lines(t testing.TB, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

type result struct {
	Line    int           `json:"line"`
	Error   string        `json:"error,omitempty"`
	Updates []odds.Update `json:"updates,omitempty"`
}

func TestGolden(t *testing.T) {
	n := uof.Normalizer{Provider: "uof", Mapper: mapping(t)}
	var got []result
	for i, l := range lines(t, "testdata/messages.xml") {
		r := result{Line: i + 1}
		m, err := uof.Parse(l)
		if err == nil {
			r.Updates, err = n.Normalize(m)
		}
		if err != nil {
			r.Error = buzzer.ErrorMessage(err)
		}
		got = append(got, r)
	}
	golden.Check(t, "testdata/messages.golden.json", got)
}

type recorder struct {
	eng     *odds.Engine
	updates []odds.Update
}

func (r *recorder) Apply(u odds.Update) error {
	r.updates = append(r.updates, u)
	return r.eng.Apply(u)
}

func newEngine(t testing.TB, clock buzzer.Clock) (*odds.Engine, *[]odds.Delta) {
	var deltas []odds.Delta
	eng, err := odds.NewEngine(odds.EngineConfig{Providers: []string{"uof"}, Clock: clock,
		Publisher: odds.PublisherFunc(func(d odds.Delta) { deltas = append(deltas, d) })})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ev-1", "ev-2"} {
		if err := eng.AddFixture(odds.Fixture{EventID: id, Sport: odds.Football}); err != nil {
			t.Fatal(err)
		}
	}
	return eng, &deltas
}

// TestMalformedCountedAndDropped feeds every test message through the
// adapter's handler: malformed ones are counted and reach nothing.
func TestMalformedCountedAndDropped(t *testing.T) {
	clock := &buzzer.FixedClock{T: time.UnixMilli(1770591600050)}
	eng, _ := newEngine(t, clock)
	rec := &recorder{eng: eng}
	var journaled int
	a, err := uof.New(uof.Config{URL: "http://127.0.0.1:1", Mapper: mapping(t), Sink: rec, Clock: clock,
		Journal: journalCounter(&journaled)})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines(t, "testdata/messages.xml") {
		a.Handle(context.Background(), l)
	}
	s := a.Stats()
	// Lines 8-13 are malformed or unknown; line 7 is unmapped.
	if s.Messages != 13 || s.ParseErrors != 6 || s.Unmapped != 1 || journaled != 13 {
		t.Fatalf("stats %+v journaled %d", s, journaled)
	}
	for _, u := range rec.updates {
		if u.EventID == "" && u.Kind == odds.KindOdds {
			t.Fatalf("bad update reached the sink: %+v", u)
		}
	}
}

func journalCounter(n *int) feed.Journal {
	return feed.JournalFunc(func(_ context.Context, m feed.RawMessage) {
		if m.Provider == "uof" && !m.Received.IsZero() && len(m.Payload) > 0 {
			*n++
		}
	})
}

func FuzzParse(f *testing.F) {
	for _, l := range lines(f, "testdata/messages.xml") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := uof.Parse(data)
		if err != nil {
			if buzzer.ErrorCode(err) != buzzer.EINVALID {
				t.Fatalf("parse error without EINVALID: %v", err)
			}
			return
		}
		ups, err := uof.Normalizer{Provider: "uof", Mapper: mapping(t)}.Normalize(m)
		if err != nil {
			return
		}
		// Whatever survives parsing either applies cleanly or is refused
		// whole; the engine's sequence stays gap-free.
		clock := &buzzer.FixedClock{T: time.UnixMilli(1770591600000)}
		eng, deltas := newEngine(t, clock)
		_ = eng.Apply(odds.Update{Provider: "uof", Kind: odds.KindStatus, Status: odds.ProviderUp})
		for _, u := range ups {
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
