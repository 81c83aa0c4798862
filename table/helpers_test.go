package table_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/inmem"
	"github.com/buzzer-bet/buzzer/table"
)

// clock is a settable clock safe for concurrent readers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 2, 8, 23, 30, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ledger is a deterministic in-process wallet with the contract table.Wallet
// states: idempotent per key (a replay returns the first result, a key reused
// for another movement is refused), insufficient funds refused with
// ECONFLICT. Faults can be injected: down refuses everything as
// unavailable; loseReply applies the next movement and then reports it
// unavailable, as a timeout after commit would.
type ledger struct {
	mu        sync.Mutex
	balance   map[string]buzzer.Amount
	applied   map[string]table.WalletOp
	debits    int
	credits   int
	down      bool
	loseReply bool
}

func newLedger() *ledger {
	return &ledger{balance: map[string]buzzer.Amount{}, applied: map[string]table.WalletOp{}}
}

func (l *ledger) fund(player string, a buzzer.Amount) {
	l.mu.Lock()
	l.balance[player] += a
	l.mu.Unlock()
}

func (l *ledger) bal(player string) buzzer.Amount {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.balance[player]
}

func (l *ledger) move(op table.WalletOp, sign buzzer.Amount) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "wallet down")
	}
	if prev, ok := l.applied[op.Key]; ok {
		if prev != op {
			return buzzer.Errorf(buzzer.EUNPROCESSABLE, "key %s reused for another movement", op.Key)
		}
		return nil
	}
	if op.Key != table.WalletKey(op.Table, op.Round, op.Seat, op.Action) || op.Amount <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "bad wallet op %+v", op)
	}
	if sign < 0 && l.balance[op.Player] < op.Amount {
		return buzzer.Errorf(buzzer.ECONFLICT, "insufficient funds")
	}
	l.balance[op.Player] += sign * op.Amount
	l.applied[op.Key] = op
	if sign < 0 {
		l.debits++
	} else {
		l.credits++
	}
	if l.loseReply {
		l.loseReply = false
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "reply lost")
	}
	return nil
}

func (l *ledger) Debit(ctx context.Context, op table.WalletOp) error  { return l.move(op, -1) }
func (l *ledger) Credit(ctx context.Context, op table.WalletOp) error { return l.move(op, 1) }

// shuffler deals seeded Fisher–Yates shuffles and remembers every shoe.
type shuffler struct {
	mu    sync.Mutex
	seed  uint64
	calls int
	shoes map[string][]table.Card
}

func newShuffler(seed uint64) *shuffler {
	return &shuffler{seed: seed, shoes: map[string][]table.Card{}}
}

func (s *shuffler) Shuffle(ctx context.Context, req table.ShoeRequest) (table.ShuffledShoe, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	rng := rand.New(rand.NewPCG(s.seed, uint64(s.calls)))
	cards := table.OrderedShoe(req.Decks)
	rng.Shuffle(len(cards), func(i, j int) { cards[i], cards[j] = cards[j], cards[i] })
	ref := fmt.Sprintf("draw/%s/%d/%d", req.Table, req.Shoe, s.calls)
	s.shoes[ref] = cards
	return table.ShuffledShoe{Ref: ref, Cards: cards}, nil
}

// rig wires a service on the in-memory store.
type rig struct {
	clock  *clock
	store  *inmem.TableStore
	wallet *ledger
	shuf   *shuffler
	pub    table.Publisher
}

func newRig(seed uint64) *rig {
	c := newClock()
	return &rig{clock: c, store: inmem.NewTableStore(c, inmem.TableStoreConfig{}), wallet: newLedger(), shuf: newShuffler(seed)}
}

func (r *rig) service(t testing.TB, node string) *table.Service {
	t.Helper()
	s, err := table.NewService(table.Config{Node: node}, table.Deps{Store: r.store, Wallet: r.wallet, Shuffler: r.shuf, Clock: r.clock, Publisher: r.pub})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// decide is a basic-strategy bot's decision for the view's turn; rng, when
// set, sometimes takes insurance.
func decide(rules table.Rules, v table.View, rng *rand.Rand) (table.Action, buzzer.Amount) {
	var legal table.Actions
	for _, a := range v.Turn.Actions {
		legal |= 1 << a
	}
	if v.Turn.Phase == table.TableInsurance {
		for _, s := range v.Seats {
			if s.Seat == v.Turn.Seat && rng != nil && rng.IntN(2) == 0 && s.Bet/2 > 0 {
				return table.Insure, s.Bet / 2
			}
		}
		return table.NoInsurance, 0
	}
	var cards []table.Card
	for _, s := range v.Seats {
		if s.Seat == v.Turn.Seat {
			cards = s.Hands[v.Turn.Hand].Cards
		}
	}
	return table.BasicStrategy(rules, legal, cards, v.Dealer[0]), 0
}

func playerAt(v table.View, seat int) string {
	for _, s := range v.Seats {
		if s.Seat == seat {
			return s.Player
		}
	}
	return ""
}

// playRound has every seated player bet, closes the betting window and plays
// each turn by basic strategy until the next round opens. With timeouts > 0,
// roughly one decision in timeouts is left to time out instead.
func playRound(t testing.TB, svc *table.Service, c *clock, id string, tc table.TableConfig, rng *rand.Rand, timeouts int) table.View {
	t.Helper()
	ctx := context.Background()
	v, err := svc.Snapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	round := v.Round
	for _, s := range v.Seats {
		amount := tc.MinBet * buzzer.Amount(1+rng.IntN(5))
		if v, err = svc.Act(ctx, id, table.Request{Player: s.Player, Seat: s.Seat, Round: round, Action: table.PlaceBet, Amount: amount}); err != nil {
			t.Fatalf("bet: %v", err)
		}
	}
	wait(t, svc, c, tc.BettingWindow)
	paid := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		if i > 200 {
			t.Fatal("round does not end")
		}
		v, err = svc.Snapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v.Round != round {
			return v
		}
		if v.Turn == nil && v.Phase == table.TableSettled && time.Now().Before(paid) {
			// Settled: the payouts run after the last decision's answer,
			// then the next round opens.
			i--
			time.Sleep(time.Millisecond)
			continue
		}
		if v.Turn == nil {
			t.Fatalf("round %d stuck without a turn: %+v", round, v)
		}
		if timeouts > 0 && rng.IntN(timeouts) == 0 {
			wait(t, svc, c, tc.ActionTimeout)
			continue
		}
		a, amt := decide(tc.Rules, v, rng)
		if _, err := svc.Act(ctx, id, table.Request{Player: playerAt(v, v.Turn.Seat), Seat: v.Turn.Seat, Round: round, Seq: v.Seq, Action: a, Amount: amt}); err != nil {
			t.Fatalf("act %v: %v", a, err)
		}
	}
}

// allEvents reads a table's whole log.
func allEvents(t testing.TB, svc *table.Service, id string) []table.Event {
	t.Helper()
	var out []table.Event
	for {
		evs, err := svc.Events(context.Background(), id, int64(len(out)), 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) == 0 {
			return out
		}
		out = append(out, evs...)
	}
}

// fold applies events to an empty view of the table.
func fold(t testing.TB, id string, evs []table.Event) table.View {
	t.Helper()
	v := table.View{Table: id, Round: 1, Phase: table.TableBetting}
	for _, e := range evs {
		if err := v.Apply(e); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// wait lets d pass the way production does: the clock moves a second at a
// time and the service ticks its tables after each.
func wait(t testing.TB, svc *table.Service, c *clock, d time.Duration) {
	t.Helper()
	for ; d > 0; d -= time.Second {
		c.Advance(time.Second)
		if err := svc.TickAll(context.Background()); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
}
