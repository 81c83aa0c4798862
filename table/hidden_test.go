package table_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer/table"
)

// innerState mirrors the parts of the service's stored internal state that
// hold secrets: the shoe with its position, and the dealer's hand.
type innerState struct {
	Shoe *table.Shoe `json:"shoe"`
	Game *struct {
		Dealer   []table.Card `json:"dealer"`
		Revealed bool         `json:"revealed"`
	} `json:"game"`
}

var cardToken = regexp.MustCompile(`"([2-9TJQKA][SHDC])"`)

// leakChecker is a Publisher that inspects every message a player could
// receive — each published event, and the snapshot after each batch —
// against the secret state at that moment: every card named in a message
// must be among the cards already dealt face up from the shoe, counted with
// multiplicity. Before the reveal, the hole card and the dealer's later
// draws are not face up.
type leakChecker struct {
	t       *testing.T
	store   table.Store
	svc     func() *table.Service
	mu      sync.Mutex
	checked int
	holes   int
	failed  bool
}

func (c *leakChecker) Publish(id string, events []table.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx := context.Background()
	stored, err := c.store.Load(ctx, id)
	if err != nil {
		c.fail("load: %v", err)
		return
	}
	var st innerState
	if err := json.Unmarshal(stored.State, &st); err != nil {
		c.fail("decode: %v", err)
		return
	}
	faceUp := map[table.Card]int{}
	if st.Shoe != nil {
		for _, card := range st.Shoe.Cards[:st.Shoe.Pos] {
			faceUp[card]++
		}
	}
	// Before the reveal, everything the dealer holds but the up card is face down.
	beforeReveal := map[table.Card]int{}
	for k, n := range faceUp {
		beforeReveal[k] = n
	}
	revealed := true
	if st.Game != nil {
		for _, card := range st.Game.Dealer[1:] {
			beforeReveal[card]--
		}
		revealed = st.Game.Revealed
		c.holes++
	}
	allowed := beforeReveal
	for _, e := range events {
		if e.Kind == table.EventReveal {
			allowed = faceUp
		}
		c.check(fmt.Sprintf("event %d (%s)", e.Seq, e.Kind), e, allowed)
	}
	snap, err := c.svc().Snapshot(ctx, id)
	if err != nil {
		c.fail("snapshot: %v", err)
		return
	}
	if revealed {
		c.check("snapshot", snap, faceUp)
	} else {
		c.check("snapshot", snap, beforeReveal)
	}
}

func (c *leakChecker) check(what string, msg any, allowed map[table.Card]int) {
	b, err := json.Marshal(msg)
	if err != nil {
		c.fail("%s: %v", what, err)
		return
	}
	c.checked++
	seen := map[table.Card]int{}
	for _, m := range cardToken.FindAllSubmatch(b, -1) {
		card, err := table.ParseCard(string(m[1]))
		if err != nil {
			c.fail("%s: %v", what, err)
			return
		}
		seen[card]++
	}
	for card, n := range seen {
		if n > allowed[card] {
			c.fail("%s names %v %d times, but only %d are face up: %s", what, card, n, allowed[card], b)
		}
	}
}

func (c *leakChecker) fail(format string, args ...any) {
	if !c.failed {
		c.t.Errorf(format, args...)
	}
	c.failed = true
}

// TestNoUnrevealedCardReachesPlayers plays a single-deck table (every card
// unique until the shoe is extended) with four bots for 100 rounds, taking
// insurance at random and letting decisions time out, and checks every
// message against the secrets at the time it was sent.
func TestNoUnrevealedCardReachesPlayers(t *testing.T) {
	r := newRig(17)
	var svc *table.Service
	lc := &leakChecker{t: t, store: r.store, svc: func() *table.Service { return svc }}
	r.pub = lc
	svc = r.service(t, "n1")
	tc := table.DefaultTableConfig()
	tc.Rules.Decks = 1
	ctx := context.Background()
	if err := svc.Open(ctx, "bj", tc); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		p := fmt.Sprintf("p%d", i)
		r.wallet.fund(p, 10_000_000)
		sit(t, svc, "bj", p, i+1)
	}
	rng := rand.New(rand.NewPCG(17, 17))
	for i := 0; i < 100 && !t.Failed(); i++ {
		playRound(t, svc, r.clock, "bj", tc, rng, 8)
	}
	checkLog(t, svc, "bj")
	lc.mu.Lock() // the last round's payouts publish from the table's payer
	defer lc.mu.Unlock()
	if lc.checked < 1000 || lc.holes < 100 {
		t.Fatalf("checked %d messages over %d hidden-hole batches; the test did not exercise enough", lc.checked, lc.holes)
	}
}
