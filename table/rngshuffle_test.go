package table_test

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"github.com/buzzer-bet/buzzer/table"
)

// rngService starts a real RNG service on rngtest's store.
func rngService(t *testing.T) (*rng.Service, *rngtest.MemStore, note.Verifier) {
	t.Helper()
	const origin = "rng.tabletest.buzzer.example/v1"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	store := rngtest.NewMemStore()
	svc, err := rng.NewService(context.Background(), store, signer, rng.Config{
		Origin: origin, Jurisdiction: "NJ", CheckpointInterval: time.Hour, CheckpointEvery: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc, store, v
}

// rederive reads a shoe back from the RNG log by its reference alone.
func rederive(t *testing.T, store *rngtest.MemStore, ref string, decks int) ([]table.Card, rng.Record) {
	t.Helper()
	index, id, shoe, err := table.ParseShoeRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := store.Records(context.Background(), index, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("record %d: %v", index, err)
	}
	rec, err := rng.UnmarshalRecord(recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	cards, err := table.ShoeFromRecord(rec, id, shoe, decks)
	if err != nil {
		t.Fatal(err)
	}
	return cards, rec
}

// TestRNGShufflerLogsEachShoe: every shoe is one logged shuffle draw with
// purpose "shoe" and ref "<table>/<shoe>", verifiable against a signed
// checkpoint, and the shoe re-derived from the log is the shoe dealt.
func TestRNGShufflerLogsEachShoe(t *testing.T) {
	svc, store, verifier := rngService(t)
	sh, err := table.NewRNGShuffler(svc, "table:n1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var shoes [][]table.Card
	for i, decks := range []int{1, 6, 8} {
		req := table.ShoeRequest{Table: "bj-7", Shoe: int64(i + 1), Decks: decks}
		got, err := sh.Shuffle(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if err := table.CheckShoe(got.Cards, decks); err != nil {
			t.Fatalf("shoe %d: %v", i+1, err)
		}
		cards, rec := rederive(t, store, got.Ref, decks)
		if !slices.Equal(cards, got.Cards) {
			t.Fatalf("shoe %d re-derived from the log differs from the shoe dealt", i+1)
		}
		if rec.Purpose != "shoe" || rec.Ref != table.ShoeRef("bj-7", int64(i+1)) || rec.Requester != "table:n1" || rec.Kind != rng.KindShuffle {
			t.Fatalf("logged draw %+v", rec)
		}
		p, err := svc.Proof(ctx, rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := rng.VerifyDraw(p, verifier); err != nil {
			t.Fatalf("the shoe draw does not verify against a signed checkpoint: %v", err)
		}
		shoes = append(shoes, got.Cards)
	}
	// The first deck of the 6- and 8-deck shoes are not both in factory order.
	if slices.Equal(shoes[1][:52], table.OrderedShoe(1)) && slices.Equal(shoes[2][:52], table.OrderedShoe(1)) {
		t.Fatal("shoes are not shuffled")
	}
	if _, err := sh.Shuffle(ctx, table.ShoeRequest{Table: "bj", Shoe: 0, Decks: 6}); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("shoe 0: %v", err)
	}
	if _, err := table.NewRNGShuffler(nil, "x"); buzzer.ErrorCode(err) != buzzer.EINVALID {
		t.Fatalf("no RNG: %v", err)
	}
}

// TestRoundRederivedFromRNGLog plays rounds on a service whose shoes come
// from a real RNG service, then re-derives every round from the RNG log
// alone: the shoe named by the deal's shoe_ref, dealt by the rules engine to
// the round's bets and played with the round's logged decisions, yields the
// same hands, dealer cards and returns the table published.
func TestRoundRederivedFromRNGLog(t *testing.T) {
	rs, store, _ := rngService(t)
	sh, err := table.NewRNGShuffler(rs, "table:n1")
	if err != nil {
		t.Fatal(err)
	}
	c := newClock()
	w := newLedger()
	svc, err := table.NewService(table.Config{Node: "n1"}, table.Deps{Store: inmem.NewTableStore(c, inmem.TableStoreConfig{}), Wallet: w, Shuffler: sh, Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	tc := table.DefaultTableConfig()
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	for seat := 1; seat <= 3; seat++ {
		p := fmt.Sprintf("p%d", seat)
		w.fund(p, 1_000_000)
		if _, err := svc.Sit(ctx, "bj", p, seat); err != nil {
			t.Fatal(err)
		}
	}
	rnd := mrand.New(mrand.NewPCG(5, 5))
	for i := 0; i < 8; i++ {
		playRound(t, svc, c, "bj", tc, rnd, 0)
	}
	shoes := map[string]*table.Shoe{}
	var g *table.Round
	var shoe *table.Shoe
	var bets []table.Bet
	rounds := 0
	for _, e := range allEvents(t, svc, "bj") {
		switch e.Kind {
		case table.EventBet:
			bets = append(bets, table.Bet{Seat: e.Seat, Amount: e.Amount})
		case table.EventDealt:
			if shoes[e.ShoeRef] == nil {
				cards, _ := rederive(t, store, e.ShoeRef, tc.Rules.Decks)
				shoes[e.ShoeRef] = &table.Shoe{Cards: cards}
			}
			shoe = shoes[e.ShoeRef]
			if g, err = table.Deal(tc.Rules, shoe, bets); err != nil {
				t.Fatal(err)
			}
			if g.Up() != e.Cards[0] {
				t.Fatalf("round %d: up card %v, the log deals %v", e.Round, e.Cards[0], g.Up())
			}
			for i, hc := range e.Hands {
				if !slices.Equal(hc.Cards, g.Seats[i].Hands[0].Cards) {
					t.Fatalf("round %d seat %d: dealt %v, the log deals %v", e.Round, hc.Seat, hc.Cards, g.Seats[i].Hands[0].Cards)
				}
			}
		case table.EventAction:
			before := shoe.Pos
			if err := g.Act(shoe, e.Action, e.Amount); err != nil {
				t.Fatalf("round %d: replaying %v: %v", e.Round, e.Action, err)
			}
			if e.Action != table.Split && !slices.Equal(e.Cards, shoe.Cards[before:before+len(e.Cards)]) {
				t.Fatalf("round %d: %v drew %v, the log deals %v", e.Round, e.Action, e.Cards, shoe.Cards[before:before+len(e.Cards)])
			}
		case table.EventReveal:
			if !slices.Equal(e.Cards, g.Dealer) {
				t.Fatalf("round %d: dealer revealed %v, the log deals %v", e.Round, e.Cards, g.Dealer)
			}
		case table.EventSettled:
			for i, r := range e.Results {
				for j, hr := range r.Hands {
					if hr.Return != g.Seats[i].Hands[j].Return {
						t.Fatalf("round %d seat %d hand %d: return %d, re-derived %d", e.Round, r.Seat, j, hr.Return, g.Seats[i].Hands[j].Return)
					}
				}
			}
			rounds++
			bets = nil
		}
	}
	if rounds != 8 {
		t.Fatalf("re-derived %d rounds, want 8", rounds)
	}
}

func TestParseShoeRef(t *testing.T) {
	idx, id, shoe, err := table.ParseShoeRef(table.LogShoeRef(42, "bj/a", 3))
	if err != nil || idx != 42 || id != "bj/a" || shoe != 3 {
		t.Fatalf("%d %q %d %v", idx, id, shoe, err)
	}
	for _, bad := range []string{"", "rng/", "rng/1", "rng/1/t", "rng/x/t/1", "rng/1/t/0", "rng/-1/t/1", "rng/01/t/1", "draw/1/t/1", "rng/1//1"} {
		if _, _, _, err := table.ParseShoeRef(bad); buzzer.ErrorCode(err) != buzzer.EINVALID {
			t.Errorf("%q parsed: %v", bad, err)
		}
	}
}

func FuzzParseShoeRef(f *testing.F) {
	for _, s := range []string{"rng/0/bj/1", "rng/12/a/b/9", "rng//x/1", "rng/1/t/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		idx, id, shoe, err := table.ParseShoeRef(s)
		if err != nil {
			return
		}
		if back := table.LogShoeRef(idx, id, shoe); back != s {
			t.Fatalf("%q parsed to (%d, %q, %d) which formats as %q", s, idx, id, shoe, back)
		}
	})
}
