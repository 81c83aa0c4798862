package table

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// TableConfig is one table's game: its rules, seats, limits and timers. It is
// stored with the table, so a node taking a table over plays the same game.
type TableConfig struct {
	Rules         Rules           `json:"rules"`
	Seats         int             `json:"seats"`   // seat numbers 1..Seats
	MinBet        buzzer.Amount   `json:"min_bet"` // minor units
	MaxBet        buzzer.Amount   `json:"max_bet"`
	Currency      buzzer.Currency `json:"currency"`
	BettingWindow time.Duration   `json:"betting_window"` // from the round's first bet to the deal
	ActionTimeout time.Duration   `json:"action_timeout"` // per decision; on expiry the table stands (or declines insurance)
}

// DefaultTableConfig is DefaultRules at a seven-seat USD table with bets of
// 1.00 to 500.00 (even minimum, so 3:2 pays exactly), a 15 s betting window
// and a 20 s action timeout.
func DefaultTableConfig() TableConfig {
	return TableConfig{
		Rules:         DefaultRules(),
		Seats:         7,
		MinBet:        100,
		MaxBet:        50_000,
		Currency:      "USD",
		BettingWindow: 15 * time.Second,
		ActionTimeout: 20 * time.Second,
	}
}

// Validate reports the first invalid setting.
func (c TableConfig) Validate() error {
	if err := c.Rules.Validate(); err != nil {
		return err
	}
	if err := c.Currency.Validate(); err != nil {
		return err
	}
	switch {
	case c.Seats < 1 || c.Seats > 7:
		return buzzer.Errorf(buzzer.EINVALID, "seats must be 1..7, got %d", c.Seats)
	case c.MinBet < 1 || c.MaxBet < c.MinBet:
		return buzzer.Errorf(buzzer.EINVALID, "bet limits must satisfy 1 <= min <= max")
	case c.BettingWindow < time.Second || c.ActionTimeout < time.Second:
		return buzzer.Errorf(buzzer.EINVALID, "betting window and action timeout must be at least 1s")
	}
	return nil
}

// Config configures the table service on one node.
type Config struct {
	// Node names this node as a lease owner; it must be unique per process.
	Node string
	// LeaseTTL is how long a lease lasts without renewal; Tick renews it
	// once half has passed. Default 10s.
	LeaseTTL time.Duration
	// MaxEvents caps one Events answer. Default 1000.
	MaxEvents int
}

func (c Config) withDefaults() (Config, error) {
	if c.Node == "" {
		return c, buzzer.Errorf(buzzer.EINVALID, "table service needs a node name")
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.MaxEvents == 0 {
		c.MaxEvents = 1000
	}
	if c.LeaseTTL < 100*time.Millisecond || c.MaxEvents < 1 {
		return c, buzzer.Errorf(buzzer.EINVALID, "lease TTL must be at least 100ms and max events positive")
	}
	return c, nil
}

// Deps are what the service runs on. Publisher may be nil.
type Deps struct {
	Store     Store
	Wallet    Wallet
	Shuffler  Shuffler
	Clock     buzzer.Clock
	Publisher Publisher
}

// Request is a player's decision: a bet during the betting window, or an
// action on their turn. Round and Seq, when non-zero, must match the table's
// current round and last sequence number, so a decision made on a stale view
// is refused (ECONFLICT, reason stale_seq) instead of applied to a newer state.
type Request struct {
	Player string        `json:"player"`
	Seat   int           `json:"seat"`
	Round  int64         `json:"round"`
	Seq    int64         `json:"seq"`
	Action Action        `json:"action"`
	Amount buzzer.Amount `json:"amount"`
}

// Reasons refining the service's errors.
const (
	ReasonNotOwner    = "not_owner" // this node does not hold the table's lease
	ReasonStaleSeq    = "stale_seq" // the request was made on an older state
	ReasonNotYourTurn = "not_your_turn"
	ReasonInFlight    = "in_flight" // a wallet call for the table is unresolved
)

// Service runs the tables whose leases this node holds.
//
// Lock order, per table: mu (the table lock), then renewMu, then leaseMu,
// then Service.mu; each may be skipped, none is taken in reverse, and only
// Close takes renewMu under mu. The table lock is held across a state
// change, including its wallet and store calls, which is what makes this
// node the table's single writer; the one exception is a bet's debit, made
// between two locked changes (its stored intent, then the bet), so that a
// table's seats bet at once. A settled round's payouts are such a change
// too, made by the table's payer once the request that settled the round
// has released the lock (payInBackground). renewMu serializes lease renewals across
// the store's Renew or Acquire; a renewal never takes the table lock, so it
// never waits behind a wallet call (a wallet slower than half the lease TTL
// would otherwise cost the node its lease under load). leaseMu guards only
// the lease fields and is never held across I/O or while taking Service.mu.
type Service struct {
	cfg Config
	d   Deps

	mu     sync.Mutex
	tables map[string]*handle
}

type handle struct {
	id string

	mu     sync.Mutex // the table lock; see Service for the lock order
	stored Stored
	st     *state // stored.State decoded; never mutated, load hands out copies
	// view is st, published for readers that must not wait for the table
	// lock (Snapshot): a committed state, never mutated.
	view atomic.Pointer[state]
	// changed is closed, and cleared, when view next moves on; whoever
	// waits for the table's next change (WaitSnapshot) makes it.
	changeMu sync.Mutex
	changed  chan struct{}

	renewMu sync.Mutex // serializes renewals; never held with mu

	paying atomic.Bool // a payInBackground runs for this table

	// debiting holds the keys of the bet debits this node's requests are
	// making outside the table lock (guarded by mu): recovery leaves them
	// to their requests.
	debiting map[string]bool

	leaseMu sync.Mutex // guards the fields below; no I/O under it
	lease   Lease
	lost    bool
	// reload is set when the lease was taken again under a new epoch after
	// it lapsed: another node may have written in between, so the next
	// change adopts the stored state first.
	reload bool
}

// currentLease returns the lease to write under, or a not-owner error.
func (h *handle) currentLease() (Lease, error) {
	h.leaseMu.Lock()
	defer h.leaseMu.Unlock()
	if h.lost {
		return Lease{}, buzzer.Errorf(buzzer.EUNAVAILABLE, "table %s moved to another node", h.id).WithReason(ReasonNotOwner)
	}
	return h.lease, nil
}

// state is a table's internal, hidden-information-bearing state; only View
// projections of it leave the service.
type state struct {
	Table         string        `json:"table"`
	Config        TableConfig   `json:"config"`
	Seq           int64         `json:"seq"`
	Round         int64         `json:"round"`
	Seats         []seatState   `json:"seats"`
	BettingCloses time.Time     `json:"betting_closes,omitzero"`
	TurnDeadline  time.Time     `json:"turn_deadline,omitzero"`
	Game          *Round        `json:"game,omitempty"`
	Shoe          *Shoe         `json:"shoe,omitempty"`
	Pending       *pendingDebit `json:"pending,omitempty"`
	// Bets are bet stakes whose debits were started and not yet applied:
	// a table's seats bet at once, each debit outside the table lock.
	Bets    []pendingDebit `json:"pending_bets,omitempty"`
	Credits []WalletOp     `json:"credits,omitempty"`
	// LastNonBet is the sequence number of the table's last event that was
	// not a bet (0: not known, as in a state stored before it was kept). A
	// bet made on a view no older than it differs from the table only by
	// other seats' bets of the same round, which do not change what it
	// means, so it is not refused as stale.
	LastNonBet int64 `json:"last_non_bet,omitempty"`
}

type seatState struct {
	Seat    int           `json:"seat"`
	Player  string        `json:"player"`
	Bet     buzzer.Amount `json:"bet,omitempty"`
	Leaving bool          `json:"leaving,omitempty"`
}

// pendingDebit is a stake whose wallet debit was started but whose action is
// not yet applied: written before the debit, so whichever node holds the
// table next finishes it with the same idempotency key.
type pendingDebit struct {
	Op  WalletOp `json:"op"`
	Req Request  `json:"req"`
}

// NewService returns a service with no tables open.
func NewService(cfg Config, d Deps) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if d.Store == nil || d.Wallet == nil || d.Shuffler == nil || d.Clock == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "table service needs a store, a wallet, a shuffler and a clock")
	}
	return &Service{cfg: cfg, d: d, tables: map[string]*handle{}}, nil
}

// Open takes the table's lease and loads it (a no-op if this node already
// holds it), creating it with tc if it has
// never been stored (tc is ignored for an existing table: its stored config
// wins). Work a previous owner left unfinished — a stake debit in flight,
// settlement payouts not yet made — is finished before Open returns, or on a
// later Tick if the wallet is unavailable.
func (s *Service) Open(ctx context.Context, id string, tc TableConfig) error {
	if id == "" {
		return buzzer.Errorf(buzzer.EINVALID, "table id is required")
	}
	if err := tc.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	_, open := s.tables[id]
	s.mu.Unlock()
	if open {
		return nil
	}
	lease, err := s.d.Store.Acquire(ctx, id, s.cfg.Node, s.cfg.LeaseTTL)
	if err != nil {
		return err
	}
	h := &handle{id: id, lease: lease}
	h.mu.Lock()
	defer h.mu.Unlock()
	stored, err := s.d.Store.Load(ctx, id)
	switch buzzer.ErrorCode(err) {
	case "":
		if err := h.setStored(stored); err != nil {
			return err
		}
	case buzzer.ENOTFOUND:
		st := &state{Table: id, Config: tc, Round: 1}
		if err := s.commit(ctx, h, st, nil); err != nil {
			return err
		}
	default:
		return err
	}
	s.mu.Lock()
	s.tables[id] = h
	s.mu.Unlock()
	if err := s.recover(ctx, h); err != nil && buzzer.ErrorCode(err) != buzzer.EUNAVAILABLE {
		return err
	}
	return nil
}

// Close releases the table's lease so another node can take it at once.
func (s *Service) Close(ctx context.Context, id string) error {
	h, err := s.handle(id)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.renewMu.Lock() // no renewal may re-acquire what is being released
	defer h.renewMu.Unlock()
	l, err := h.currentLease()
	if err != nil {
		return err
	}
	s.drop(h)
	return s.d.Store.Release(ctx, l)
}

// Owned lists the tables this node currently holds.
func (s *Service) Owned() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.tables))
	for id := range s.tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (s *Service) handle(id string) (*handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.tables[id]
	if h == nil {
		return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "table %s is not served by this node", id).WithReason(ReasonNotOwner)
	}
	return h, nil
}

func (s *Service) drop(h *handle) {
	h.leaseMu.Lock()
	h.lost = true
	h.leaseMu.Unlock()
	s.mu.Lock()
	if s.tables[h.id] == h {
		delete(s.tables, h.id)
	}
	s.mu.Unlock()
}

// load returns a private copy of the committed state to change.
func (h *handle) load() *state { return h.st.clone() }

// setStored adopts a state read from the store.
func (h *handle) setStored(stored Stored) error {
	st := &state{}
	if err := json.Unmarshal(stored.State, st); err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "decode table state")
	}
	h.stored, h.st = stored, st
	h.publishView(st)
	return nil
}

// publishView makes st the state readers see and wakes whoever waits for
// the table to change.
func (h *handle) publishView(st *state) {
	h.view.Store(st)
	h.changeMu.Lock()
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	h.changeMu.Unlock()
}

// changes returns a channel closed at the view's next change. Taken
// before reading the view, it cannot miss a change made after that read.
func (h *handle) changes() <-chan struct{} {
	h.changeMu.Lock()
	defer h.changeMu.Unlock()
	if h.changed == nil {
		h.changed = make(chan struct{})
	}
	return h.changed
}

func (st *state) clone() *state {
	c := *st
	c.Seats = slices.Clone(st.Seats)
	c.Credits = slices.Clone(st.Credits)
	c.Bets = slices.Clone(st.Bets)
	c.Shoe = cloneShoe(st.Shoe)
	if st.Pending != nil {
		p := *st.Pending
		c.Pending = &p
	}
	if st.Game != nil {
		g := *st.Game
		g.Dealer = slices.Clone(g.Dealer)
		g.Seats = slices.Clone(g.Seats)
		for i := range g.Seats {
			g.Seats[i].Hands = slices.Clone(g.Seats[i].Hands)
			for j := range g.Seats[i].Hands {
				g.Seats[i].Hands[j].Cards = slices.Clone(g.Seats[i].Hands[j].Cards)
			}
		}
		c.Game = &g
	}
	return &c
}

// commit writes st with events, fenced by the handle's lease. On a fencing or
// version refusal the node has lost the table and forgets it.
func (s *Service) commit(ctx context.Context, h *handle, st *state, events []Event) error {
	lease, err := h.currentLease()
	if err != nil {
		return err
	}
	now := s.d.Clock.Now()
	for i := range events {
		st.Seq++
		events[i].Seq, events[i].Table, events[i].Round, events[i].At = st.Seq, st.Table, st.Round, now
		if events[i].Kind != EventBet {
			st.LastNonBet = st.Seq
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "encode table state")
	}
	v, err := s.d.Store.Write(ctx, Write{Lease: lease, Version: h.stored.Version, State: b, Events: events})
	if err != nil {
		if buzzer.ErrorCode(err) == buzzer.ECONFLICT {
			s.drop(h)
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "table %s moved to another node", h.id).WithReason(ReasonNotOwner)
		}
		return err
	}
	h.stored, h.st = Stored{State: b, Version: v, Seq: st.Seq, Epoch: lease.Epoch}, st.clone()
	h.publishView(h.st)
	if s.d.Publisher != nil && len(events) > 0 {
		s.d.Publisher.Publish(st.Table, events)
	}
	return nil
}

// recover finishes unresolved wallet work: a pending stake, the bet stakes
// no request of this node is debiting, then payouts.
func (s *Service) recover(ctx context.Context, h *handle) error {
	if err := s.resolvePending(ctx, h); err != nil {
		return err
	}
	for _, p := range h.st.Bets {
		if h.debiting[p.Op.Key] {
			continue
		}
		if err := s.finishBet(ctx, h, p.Op.Key, s.d.Wallet.Debit(ctx, p.Op)); err != nil {
			return err
		}
	}
	return s.payCredits(ctx, h)
}

// Sit seats a player. A seat taken mid-round plays from the next round.
func (s *Service) Sit(ctx context.Context, table, player string, seat int) (View, error) {
	return s.do(ctx, table, func(st *state, now time.Time) ([]Event, error) {
		if player == "" {
			return nil, buzzer.Errorf(buzzer.EINVALID, "player is required")
		}
		if seat < 1 || seat > st.Config.Seats {
			return nil, buzzer.Errorf(buzzer.EINVALID, "seat must be 1..%d", st.Config.Seats)
		}
		if st.seat(seat) != nil {
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "seat %d is taken", seat)
		}
		st.Seats = append(st.Seats, seatState{Seat: seat, Player: player})
		slices.SortFunc(st.Seats, func(a, b seatState) int { return a.Seat - b.Seat })
		return []Event{{Kind: EventSeatTaken, Seat: seat, Player: player}}, nil
	})
}

// Leave frees a seat; a seat in play leaves when the round is settled. A seat
// whose bet is placed for the coming deal must play the round.
func (s *Service) Leave(ctx context.Context, table, player string, seat int) (View, error) {
	return s.do(ctx, table, func(st *state, now time.Time) ([]Event, error) {
		ss := st.seat(seat)
		if ss == nil || ss.Player != player {
			return nil, buzzer.Errorf(buzzer.ENOTFOUND, "you are not in seat %d", seat)
		}
		if st.betPending(seat) {
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "your bet is being placed; the seat leaves after this round")
		}
		if ss.Bet > 0 {
			if st.Game == nil {
				return nil, buzzer.Errorf(buzzer.ECONFLICT, "your bet is placed; the seat leaves after this round")
			}
			if ss.Leaving {
				return nil, nil
			}
			ss.Leaving = true
			return []Event{{Kind: EventSeatLeaving, Seat: seat}}, nil
		}
		st.Seats = slices.DeleteFunc(st.Seats, func(x seatState) bool { return x.Seat == seat })
		return []Event{{Kind: EventSeatLeft, Seat: seat, Player: player}}, nil
	})
}

func (st *state) seat(n int) *seatState {
	for i := range st.Seats {
		if st.Seats[i].Seat == n {
			return &st.Seats[i]
		}
	}
	return nil
}

// do runs a state change that moves no money.
func (s *Service) do(ctx context.Context, table string, f func(*state, time.Time) ([]Event, error)) (View, error) {
	h, err := s.handle(table)
	if err != nil {
		return View{}, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := s.sync(ctx, h); err != nil {
		return View{}, err
	}
	st := h.load()
	events, err := f(st, s.d.Clock.Now())
	if err != nil {
		return View{}, err
	}
	if len(events) > 0 {
		if err := s.commit(ctx, h, st, events); err != nil {
			return View{}, err
		}
	}
	return h.st.view(), nil
}

// Act applies a player's bet or decision. Stakes (bet, double, split,
// insurance) are debited from the wallet before the action is applied; the
// intent is stored first, so a crash between the debit and the state write is
// finished by whichever node holds the table next, with the same key.
func (s *Service) Act(ctx context.Context, table string, req Request) (View, error) {
	h, err := s.handle(table)
	if err != nil {
		return View{}, err
	}
	if req.Action == PlaceBet {
		return s.bet(ctx, h, req)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := s.sync(ctx, h); err != nil {
		return View{}, err
	}
	if err := s.recover(ctx, h); err != nil {
		return View{}, err
	}
	st := h.load()
	if (req.Round != 0 && req.Round != st.Round) || (req.Seq != 0 && req.Seq != st.Seq) {
		return View{}, buzzer.Errorf(buzzer.ECONFLICT, "the table has moved on (round %d, seq %d)", st.Round, st.Seq).WithReason(ReasonStaleSeq)
	}
	now := s.d.Clock.Now()
	if req.Action != PlaceBet && st.Game != nil {
		if err := s.ensureCards(ctx, st); err != nil {
			return View{}, err
		}
	}
	// Validate on a scratch copy and learn the stake, if any.
	scratch := h.load()
	scratch.Shoe = cloneShoe(st.Shoe)
	op, err := s.stakeOf(scratch, req)
	if err != nil {
		return View{}, err
	}
	events, err := s.apply(scratch, req, now, false)
	if err != nil {
		return View{}, err
	}
	if op == nil {
		// Nothing to pay for: the scratch copy is the new state.
		if err := s.commit(ctx, h, scratch, events); err != nil {
			return View{}, err
		}
	} else {
		st.Pending = &pendingDebit{Op: *op, Req: req}
		if err := s.commit(ctx, h, st, nil); err != nil {
			return View{}, err
		}
		if err := s.resolvePending(ctx, h); err != nil {
			return View{}, err
		}
	}
	// The decision is committed; a round it settled is paid after the
	// answer (see payInBackground).
	s.payInBackground(h)
	return h.st.view(), nil
}

// payInBackground pays what a committed change left owed (a settled
// round's returns) and opens the next round, under the table lock but
// after the request that settled the round has its answer: the player
// whose decision ended the round does not wait for every seat's payout.
// The returns are stored with the state before the answer, so a node that
// dies first leaves them to whichever node holds the table next (recover),
// with the same idempotency keys; a payout that fails here is retried by
// the next request or Tick the same way. One payer runs per table.
func (s *Service) payInBackground(h *handle) {
	if st := h.st; len(st.Credits) == 0 && (st.Game == nil || st.Game.Phase != PhaseSettled) {
		return
	}
	if !h.paying.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.paying.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.LeaseTTL)
		defer cancel()
		h.mu.Lock()
		defer h.mu.Unlock()
		if err := s.sync(ctx, h); err != nil {
			return
		}
		_ = s.payCredits(ctx, h)
	}()
}

// bet places a bet. Its stake intent is stored under the table lock, the
// debit is made outside it, so that the seats of a table bet at once (each
// waits for its own debit, not for the others'), and the bet is applied
// under the lock again. A node dying between the debit and the apply
// leaves the intent stored: whichever node holds the table next finishes
// it with the same key, as for any stake.
func (s *Service) bet(ctx context.Context, h *handle, req Request) (View, error) {
	h.mu.Lock()
	locked := true
	defer func() {
		if locked {
			h.mu.Unlock()
		}
	}()
	if err := s.sync(ctx, h); err != nil {
		return View{}, err
	}
	if err := s.recover(ctx, h); err != nil {
		return View{}, err
	}
	st := h.load()
	if (req.Round != 0 && req.Round != st.Round) || (req.Seq != 0 && req.Seq != st.Seq && !st.betStillOpen(req)) {
		return View{}, buzzer.Errorf(buzzer.ECONFLICT, "the table has moved on (round %d, seq %d)", st.Round, st.Seq).WithReason(ReasonStaleSeq)
	}
	if st.betPending(req.Seat) {
		return View{}, buzzer.Errorf(buzzer.ECONFLICT, "seat %d has already bet this round", req.Seat)
	}
	// Validate on a scratch copy and learn the stake.
	scratch := h.load()
	op, err := s.stakeOf(scratch, req)
	if err != nil {
		return View{}, err
	}
	if _, err := s.apply(scratch, req, s.d.Clock.Now(), false); err != nil {
		return View{}, err
	}
	st.Bets = append(st.Bets, pendingDebit{Op: *op, Req: req})
	if err := s.commit(ctx, h, st, nil); err != nil {
		return View{}, err
	}
	if h.debiting == nil {
		h.debiting = map[string]bool{}
	}
	h.debiting[op.Key] = true
	h.mu.Unlock()
	locked = false
	derr := s.d.Wallet.Debit(ctx, *op)
	h.mu.Lock()
	locked = true
	delete(h.debiting, op.Key)
	if err := s.sync(ctx, h); err != nil {
		return View{}, err
	}
	if err := s.finishBet(ctx, h, op.Key, derr); err != nil {
		return View{}, err
	}
	if err := s.payCredits(ctx, h); err != nil {
		return View{}, err
	}
	return h.st.view(), nil
}

// finishBet applies the bet whose stake intent has key, given its debit's
// outcome derr: an unknown outcome keeps the intent (a later request or
// Tick tries again), a refusal drops it. Caller holds h.mu.
func (s *Service) finishBet(ctx context.Context, h *handle, key string, derr error) error {
	st := h.load()
	i := slices.IndexFunc(st.Bets, func(p pendingDebit) bool { return p.Op.Key == key })
	if i < 0 {
		return nil // finished already (by recovery)
	}
	p := st.Bets[i]
	if derr != nil && uncertain(derr) {
		return buzzer.Wrap(derr, buzzer.EUNAVAILABLE, "the wallet did not confirm the stake; it will be retried").WithReason(ReasonInFlight)
	}
	st.Bets = slices.Delete(st.Bets, i, i+1)
	if derr != nil {
		if err := s.commit(ctx, h, st, nil); err != nil {
			return err
		}
		return derr
	}
	events, err := s.apply(st, p.Req, s.d.Clock.Now(), false)
	if err != nil {
		// Nothing a pending bet's seat can do changes its bet, and the deal
		// waits for pending bets, so this is a bug: give the stake back.
		refund := refundOf(p.Op)
		st = h.load()
		st.Bets = slices.DeleteFunc(st.Bets, func(q pendingDebit) bool { return q.Op.Key == key })
		st.Credits = append(st.Credits, refund)
		if cerr := s.commit(ctx, h, st, nil); cerr != nil {
			return cerr
		}
		return buzzer.Wrap(err, buzzer.EINTERNAL, "the stake was taken but the bet no longer applies; it is refunded")
	}
	return s.commit(ctx, h, st, events)
}

// betPending reports whether a bet of seat is being debited.
func (st *state) betPending(seat int) bool {
	return slices.ContainsFunc(st.Bets, func(p pendingDebit) bool { return p.Req.Seat == seat })
}

// betStillOpen reports whether a bet made on the view of req.Seq, older than
// the table, means the same now: the same round, still betting, only other
// seats' bets happened since (see state.LastNonBet), and this seat has no
// bet. A seat that has bet since is refused as stale, not as a second bet,
// so that a resend of a bet that was taken is recognised as one (httpapi
// replays it).
func (st *state) betStillOpen(req Request) bool {
	if req.Round != st.Round || st.Game != nil || st.LastNonBet == 0 || req.Seq < st.LastNonBet || req.Seq >= st.Seq {
		return false
	}
	ss := st.seat(req.Seat)
	return ss != nil && ss.Bet == 0 && !st.betPending(req.Seat)
}

// cloneShoe copies a shoe for a state clone. A shoe's cards and extra
// references are never changed in place, only extended (ensureCards), so
// the copy shares them, capped so that extending the copy reallocates and
// extending the original writes past what the copy sees: a clone per
// action no longer copies the shoe's 300-odd cards.
func cloneShoe(sh *Shoe) *Shoe {
	if sh == nil {
		return nil
	}
	c := *sh
	c.Cards = sh.Cards[:len(sh.Cards):len(sh.Cards)]
	c.Extra = sh.Extra[:len(sh.Extra):len(sh.Extra)]
	return &c
}

// stakeOf returns the wallet debit a request needs, or nil.
func (s *Service) stakeOf(st *state, req Request) (*WalletOp, error) {
	ss := st.seat(req.Seat)
	if ss == nil || ss.Player != req.Player {
		return nil, buzzer.Errorf(buzzer.ENOTFOUND, "you are not in seat %d", req.Seat)
	}
	op := &WalletOp{Table: st.Table, Round: st.Round, Seat: req.Seat, Player: req.Player, Currency: st.Config.Currency}
	switch req.Action {
	case PlaceBet:
		op.Action, op.Amount = "bet", req.Amount
	case DoubleDown, Split, Insure:
		if st.Game == nil {
			return nil, nil // apply refuses it
		}
		g := st.Game
		seat, hand, ok := g.Turn()
		if !ok || seat != req.Seat {
			return nil, nil
		}
		gs := &g.Seats[g.Cur]
		op.Action = req.Action.String() + "#" + strconv.Itoa(gs.Acts)
		if req.Action == Insure {
			op.Amount = req.Amount
		} else {
			op.Amount = gs.Hands[hand].Stake
		}
	default:
		return nil, nil
	}
	op.Key = WalletKey(op.Table, op.Round, op.Seat, op.Action)
	return op, nil
}

// resolvePending finishes a stake whose debit was started.
func (s *Service) resolvePending(ctx context.Context, h *handle) error {
	st := h.load()
	p := st.Pending
	if p == nil {
		return nil
	}
	if err := s.d.Wallet.Debit(ctx, p.Op); err != nil {
		if uncertain(err) {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the wallet did not confirm the stake; it will be retried").WithReason(ReasonInFlight)
		}
		st.Pending = nil
		if cerr := s.commit(ctx, h, st, nil); cerr != nil {
			return cerr
		}
		return err
	}
	st.Pending = nil
	if p.Req.Action != PlaceBet {
		if err := s.ensureCards(ctx, st); err != nil {
			return err
		}
	}
	events, err := s.apply(st, p.Req, s.d.Clock.Now(), false)
	if err != nil {
		// The state has not moved since the intent was written, so this is a
		// bug; give the stake back rather than keep it for nothing.
		refund := refundOf(p.Op)
		st = h.load()
		st.Pending = nil
		st.Credits = append(st.Credits, refund)
		if cerr := s.commit(ctx, h, st, nil); cerr != nil {
			return cerr
		}
		return buzzer.Wrap(err, buzzer.EINTERNAL, "the stake was taken but the action no longer applies; it is refunded")
	}
	return s.commit(ctx, h, st, events)
}

// payCredits pays settlement returns and opens the next round.
func (s *Service) payCredits(ctx context.Context, h *handle) error {
	st := h.load()
	if st.Game == nil || st.Game.Phase != PhaseSettled {
		if len(st.Credits) == 0 {
			return nil
		}
	}
	// The payouts are independent and idempotent per key, so they are made
	// at once: a settled round waits for one wallet round trip, not one per
	// seat. If any is unconfirmed, all stay owed and are retried.
	errs := make([]error, len(st.Credits))
	var wg sync.WaitGroup
	for i, op := range st.Credits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.d.Wallet.Credit(ctx, op)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the wallet did not confirm a payout; it will be retried").WithReason(ReasonInFlight)
		}
	}
	st.Credits = nil
	if st.Game == nil || st.Game.Phase != PhaseSettled {
		return s.commit(ctx, h, st, nil)
	}
	var events []Event
	kept := st.Seats[:0]
	for _, ss := range st.Seats {
		if ss.Leaving {
			events = append(events, Event{Kind: EventSeatLeft, Seat: ss.Seat, Player: ss.Player})
			continue
		}
		ss.Bet = 0
		kept = append(kept, ss)
	}
	st.Seats = kept
	st.Game, st.BettingCloses, st.TurnDeadline = nil, time.Time{}, time.Time{}
	st.Round++
	events = append(events, Event{Kind: EventRoundOpened})
	return s.commit(ctx, h, st, events)
}

// ensureCards makes sure the shoe can finish any round: it starts a new shoe
// past the cut card before a deal, and mid-round it appends a fresh shoe when
// fewer cards remain than one action and the dealer's play could need.
func (s *Service) ensureCards(ctx context.Context, st *state) error {
	const reserve = 24 // one split (2) plus a dealer drawing from 2 cards to 17 (at most 9 more), with margin
	need := reserve
	fresh := false
	if st.Game == nil {
		need += 2 * (len(st.Seats) + 1)
		fresh = st.Shoe == nil || st.Shoe.Pos*100 >= len(st.Shoe.Cards)*st.Config.Rules.Penetration
	}
	if !fresh && st.Shoe != nil && st.Shoe.Remaining() >= need {
		return nil
	}
	var number int64 = 1
	if st.Shoe != nil {
		number = st.Shoe.Number + 1
	}
	decks := st.Config.Rules.Decks
	sh, err := s.d.Shuffler.Shuffle(ctx, ShoeRequest{Table: st.Table, Shoe: number, Decks: decks})
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "no shoe from the RNG service")
	}
	if err := CheckShoe(sh.Cards, decks); err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "the RNG service returned a bad shoe")
	}
	if fresh || st.Shoe == nil {
		st.Shoe = &Shoe{Number: number, Ref: sh.Ref, Cards: sh.Cards}
		return nil
	}
	st.Shoe.Number = number
	st.Shoe.Extra = append(st.Shoe.Extra, sh.Ref)
	st.Shoe.Cards = append(st.Shoe.Cards[:len(st.Shoe.Cards):len(st.Shoe.Cards)], sh.Cards...)
	return nil
}

// apply changes st by a request (already paid for, if it costs money) and
// returns the events. timeout marks a decision the table made for a player.
func (s *Service) apply(st *state, req Request, now time.Time, timeout bool) ([]Event, error) {
	ss := st.seat(req.Seat)
	if ss == nil || (!timeout && ss.Player != req.Player) {
		return nil, buzzer.Errorf(buzzer.ENOTFOUND, "you are not in seat %d", req.Seat)
	}
	if req.Action == PlaceBet {
		switch {
		case st.Game != nil:
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "betting is closed for round %d", st.Round)
		case ss.Bet > 0:
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "seat %d has already bet this round", req.Seat)
		case ss.Leaving:
			return nil, buzzer.Errorf(buzzer.ECONFLICT, "seat %d is leaving", req.Seat)
		case req.Amount < st.Config.MinBet || req.Amount > st.Config.MaxBet:
			return nil, buzzer.Errorf(buzzer.EINVALID, "bet must be between %d and %d", st.Config.MinBet, st.Config.MaxBet)
		}
		ss.Bet = req.Amount
		if st.BettingCloses.IsZero() {
			st.BettingCloses = now.Add(st.Config.BettingWindow)
		}
		return []Event{{Kind: EventBet, Seat: req.Seat, Amount: req.Amount, Deadline: st.BettingCloses}}, nil
	}
	g := st.Game
	if g == nil || g.Phase == PhaseSettled {
		return nil, buzzer.Errorf(buzzer.ECONFLICT, "no decision is due now").WithReason(ReasonNotYourTurn)
	}
	seat, hand, _ := g.Turn()
	if seat != req.Seat {
		return nil, buzzer.Errorf(buzzer.ECONFLICT, "it is seat %d's turn", seat).WithReason(ReasonNotYourTurn)
	}
	gs := &g.Seats[g.Cur]
	before := len(gs.Hands[hand].Cards)
	if err := g.Act(st.Shoe, req.Action, req.Amount); err != nil {
		return nil, err
	}
	e := Event{Kind: EventAction, Seat: seat, Hand: hand, Action: req.Action, Timeout: timeout}
	switch req.Action {
	case Insure:
		e.Amount = req.Amount
	case Hit, DoubleDown:
		e.Cards = slices.Clone(gs.Hands[hand].Cards[before:])
	case Split:
		e.Cards = []Card{gs.Hands[hand].Cards[1], gs.Hands[hand+1].Cards[1]}
	}
	return append([]Event{e}, s.progress(st, now)...), nil
}

// progress reports where the round stands after the engine moved: the next
// turn, or the dealer's reveal and the settlement (queueing the payouts).
func (s *Service) progress(st *state, now time.Time) []Event {
	g := st.Game
	if g.Phase != PhaseSettled {
		seat, hand, _ := g.Turn()
		st.TurnDeadline = now.Add(st.Config.ActionTimeout)
		return []Event{{Kind: EventTurn, Phase: TablePhase(g.Phase), Seat: seat, Hand: hand, Deadline: st.TurnDeadline, Actions: g.Legal().List()}}
	}
	st.TurnDeadline = time.Time{}
	settled := Event{Kind: EventSettled}
	for i := range g.Seats {
		gs := &g.Seats[i]
		r := SeatResult{Seat: gs.Seat, InsuranceReturn: gs.InsuranceReturn}
		for _, h := range gs.Hands {
			r.Hands = append(r.Hands, HandResult{Outcome: h.Outcome, Return: h.Return})
		}
		settled.Results = append(settled.Results, r)
		if ret := gs.Returned(); ret > 0 {
			ss := st.seat(gs.Seat)
			op := WalletOp{Table: st.Table, Round: st.Round, Seat: gs.Seat, Player: ss.Player, Action: "payout", Amount: ret, Currency: st.Config.Currency}
			op.Key = WalletKey(op.Table, op.Round, op.Seat, op.Action)
			st.Credits = append(st.Credits, op)
		}
	}
	return []Event{{Kind: EventReveal, Cards: slices.Clone(g.Dealer)}, settled}
}

// Tick drives a table's clock: it renews the lease, retries unresolved wallet
// work, deals when the betting window closes and applies the default decision
// (stand; decline insurance) when a turn times out. Call it about once a
// second per table (Run does). A decision that arrives after its deadline
// but before the Tick that applies the default is still accepted. The lease
// is renewed before Tick waits for the table lock, so a decision holding the
// table through a slow wallet call does not cost the lease.
func (s *Service) Tick(ctx context.Context, table string) error {
	h, err := s.handle(table)
	if err != nil {
		return err
	}
	if err := s.renew(ctx, h); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := s.sync(ctx, h); err != nil {
		return err
	}
	now := s.d.Clock.Now()
	if err := s.recover(ctx, h); err != nil {
		return err
	}
	st := h.load()
	switch {
	case st.Game == nil && !st.BettingCloses.IsZero() && !now.Before(st.BettingCloses) && len(st.Bets) == 0:
		// (A bet whose debit is still running was taken in the window:
		// the deal waits for it.)
		if err := s.deal(ctx, h, st, now); err != nil {
			return err
		}
	case st.Game != nil && st.Game.Phase != PhaseSettled && !now.Before(st.TurnDeadline):
		seat, _, _ := st.Game.Turn()
		req := Request{Seat: seat, Action: Stand}
		if st.Game.Phase == PhaseInsurance {
			req.Action = NoInsurance
		}
		if err := s.ensureCards(ctx, st); err != nil {
			return err
		}
		events, err := s.apply(st, req, now, true)
		if err != nil {
			return err
		}
		if err := s.commit(ctx, h, st, events); err != nil {
			return err
		}
	default:
		return nil
	}
	return s.payCredits(ctx, h)
}

func (s *Service) deal(ctx context.Context, h *handle, st *state, now time.Time) error {
	var bets []Bet
	for _, ss := range st.Seats {
		if ss.Bet > 0 {
			bets = append(bets, Bet{Seat: ss.Seat, Amount: ss.Bet})
		}
	}
	st.BettingCloses = time.Time{}
	if len(bets) == 0 {
		return s.commit(ctx, h, st, nil)
	}
	if err := s.ensureCards(ctx, st); err != nil {
		return err
	}
	g, err := Deal(st.Config.Rules, st.Shoe, bets)
	if err != nil {
		return err
	}
	st.Game = g
	dealt := Event{Kind: EventDealt, Cards: []Card{g.Up()}, ShoeRef: st.Shoe.Ref}
	for _, gs := range g.Seats {
		dealt.Hands = append(dealt.Hands, SeatCards{Seat: gs.Seat, Cards: slices.Clone(gs.Hands[0].Cards)})
	}
	return s.commit(ctx, h, st, append([]Event{dealt}, s.progress(st, now)...))
}

// renew extends the table's lease once half its TTL has passed. It never
// takes the table lock (see Service), so it is not held up by a change
// waiting on the wallet; the store fences writes by epoch, so extending the
// lease under a change in flight is safe.
func (s *Service) renew(ctx context.Context, h *handle) error {
	h.renewMu.Lock()
	defer h.renewMu.Unlock()
	l, err := h.currentLease()
	if err != nil {
		return err
	}
	if s.d.Clock.Now().Before(l.Expires.Add(-s.cfg.LeaseTTL / 2)) {
		return nil
	}
	nl, err := s.d.Store.Renew(ctx, l, s.cfg.LeaseTTL)
	reacquired := false
	if buzzer.ErrorReason(err) == ReasonLeaseExpired {
		// The lease lapsed (a pause longer than half the TTL) but may still
		// be free: take it again under a new epoch; the next change reloads
		// the state, in case another node held the table in between.
		nl, err = s.d.Store.Acquire(ctx, h.id, s.cfg.Node, s.cfg.LeaseTTL)
		reacquired = err == nil
	}
	if err != nil {
		if buzzer.ErrorCode(err) == buzzer.ECONFLICT {
			s.drop(h)
		}
		return err
	}
	h.leaseMu.Lock()
	h.lease = nl
	h.reload = h.reload || reacquired
	h.leaseMu.Unlock()
	return nil
}

// sync adopts the stored state if the lease was re-acquired since the last
// change. Caller holds h.mu.
func (s *Service) sync(ctx context.Context, h *handle) error {
	h.leaseMu.Lock()
	reload := h.reload
	h.leaseMu.Unlock()
	if !reload {
		return nil
	}
	stored, err := s.d.Store.Load(ctx, h.id)
	if err != nil {
		return err
	}
	if err := h.setStored(stored); err != nil {
		return err
	}
	h.leaseMu.Lock()
	h.reload = false
	h.leaseMu.Unlock()
	return nil
}

// renewWorkers bounds the renewals RenewLeases has in flight at once.
const renewWorkers = 16

// RenewLeases renews every held lease that is due, a few at a time and
// without waiting for any table lock, and returns the first error.
func (s *Service) RenewLeases(ctx context.Context) error {
	hs := s.handles()
	errs := make([]error, len(hs))
	sem := make(chan struct{}, renewWorkers)
	var wg sync.WaitGroup
	for i, h := range hs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs[i] = s.renew(ctx, h)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) handles() []*handle {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]*handle, 0, len(s.tables))
	for _, h := range s.tables {
		hs = append(hs, h)
	}
	return hs
}

// TickAll ticks every table this node holds, one after another, and returns
// the first error. It is for tests and tools that drive an injected clock;
// Run is the production driver.
func (s *Service) TickAll(ctx context.Context) error {
	var first error
	for _, id := range s.Owned() {
		if err := s.Tick(ctx, id); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// RunWorkers bounds the ticks Run has in flight at once.
const RunWorkers = 64

// Run drives the held tables until ctx ends, then waits for its ticks to
// return. Each interval it renews the due leases on a loop of its own, and
// ticks every held table on a bounded pool of workers: a table whose tick
// waits (its lock held by a decision waiting on the wallet) holds up no
// other table's deal, timeout or lease renewal. A table is never ticked
// twice at once; a busy one is skipped until its tick returns. Errors are
// left to the next tick: a table this node lost is simply no longer ticked.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = s.RenewLeases(ctx)
			}
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	sem := make(chan struct{}, RunWorkers)
	var busyMu sync.Mutex
	busy := map[*handle]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, h := range s.handles() {
			busyMu.Lock()
			skip := busy[h]
			busy[h] = true
			busyMu.Unlock()
			if skip {
				continue
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = s.Tick(ctx, h.id)
				<-sem
				busyMu.Lock()
				delete(busy, h)
				busyMu.Unlock()
			}()
		}
	}
}

// Snapshot returns the table's player-visible view: from memory if this
// node holds the table (its last committed state, without waiting for the
// table lock), else from the store, so any node can serve it.
func (s *Service) Snapshot(ctx context.Context, table string) (View, error) {
	s.mu.Lock()
	h := s.tables[table]
	s.mu.Unlock()
	if h != nil {
		if st := h.view.Load(); st != nil {
			return st.view(), nil
		}
	}
	return s.reader().Snapshot(ctx, table)
}

// MaxSnapshotWait bounds WaitSnapshot's wait.
const MaxSnapshotWait = 5 * time.Second

// WaitSnapshot is Snapshot once the table's sequence number is past after,
// waiting up to wait (at most MaxSnapshotWait) for the table to get there:
// a client that has seen the table at after learns of its next change the
// moment it is committed, with one request instead of a poll loop. At the
// end of the wait it answers the snapshot as it is. A table this node does
// not hold is answered at once (its holder may be another node).
func (s *Service) WaitSnapshot(ctx context.Context, table string, after int64, wait time.Duration) (View, error) {
	s.mu.Lock()
	h := s.tables[table]
	s.mu.Unlock()
	if h == nil || wait <= 0 {
		return s.Snapshot(ctx, table)
	}
	t := time.NewTimer(min(wait, MaxSnapshotWait))
	defer t.Stop()
	for {
		changed := h.changes()
		if st := h.view.Load(); st == nil || st.Seq > after {
			return s.Snapshot(ctx, table)
		}
		select {
		case <-changed:
		case <-t.C:
			return s.Snapshot(ctx, table)
		case <-ctx.Done():
			return View{}, buzzer.Wrap(ctx.Err(), buzzer.ETIMEOUT, "The request ended while waiting for the table to change.")
		}
	}
}

// Events returns up to limit (capped by Config.MaxEvents) events after seq.
func (s *Service) Events(ctx context.Context, table string, after int64, limit int) ([]Event, error) {
	return s.reader().Events(ctx, table, after, limit)
}

func (s *Service) reader() *Reader { return &Reader{store: s.d.Store, max: s.cfg.MaxEvents} }

// Reader serves tables' player-visible snapshots and event logs from a
// Store, on any node and without a lease: what a live feed needs, built
// before the Service that publishes to it.
type Reader struct {
	store Store
	max   int
}

// NewReader returns a reader of store answering at most maxEvents events a
// call (default 1000).
func NewReader(store Store, maxEvents int) *Reader {
	if maxEvents <= 0 {
		maxEvents = 1000
	}
	return &Reader{store: store, max: maxEvents}
}

// Snapshot returns the table's player-visible view: no hole card before the
// reveal, no shoe.
func (r *Reader) Snapshot(ctx context.Context, table string) (View, error) {
	stored, err := r.store.Load(ctx, table)
	if err != nil {
		return View{}, err
	}
	st := &state{}
	if err := json.Unmarshal(stored.State, st); err != nil {
		return View{}, buzzer.Wrap(err, buzzer.EINTERNAL, "decode table state")
	}
	return st.view(), nil
}

// Events returns up to limit (capped as NewReader says) events after seq.
func (r *Reader) Events(ctx context.Context, table string, after int64, limit int) ([]Event, error) {
	if limit <= 0 || limit > r.max {
		limit = r.max
	}
	return r.store.Events(ctx, table, after, limit)
}

// view projects the state onto what players may see: no hole card before
// the reveal, no shoe.
func (st *state) view() View {
	v := View{Table: st.Table, Seq: st.Seq, Round: st.Round, Phase: TableBetting, BettingCloses: st.BettingCloses}
	if st.Shoe != nil {
		v.ShoeRef = st.Shoe.Ref
	}
	for _, ss := range st.Seats {
		v.Seats = append(v.Seats, SeatView{Seat: ss.Seat, Player: ss.Player, Leaving: ss.Leaving, Bet: ss.Bet})
	}
	g := st.Game
	if g == nil {
		return v
	}
	v.Phase = TablePhase(g.Phase)
	if g.Revealed {
		v.Dealer = slices.Clone(g.Dealer)
	} else {
		v.Dealer, v.HoleHidden = []Card{g.Up()}, true
	}
	for _, gs := range g.Seats {
		sv := v.seat(gs.Seat)
		sv.Insurance, sv.InsuranceReturn = gs.Insurance, gs.InsuranceReturn
		for _, h := range gs.Hands {
			sv.Hands = append(sv.Hands, HandView{Cards: slices.Clone(h.Cards), Stake: h.Stake, Doubled: h.Doubled, Surrendered: h.Surrendered, Outcome: h.Outcome, Return: h.Return})
		}
	}
	if seat, hand, ok := g.Turn(); ok {
		v.Turn = &Turn{Phase: TablePhase(g.Phase), Seat: seat, Hand: hand, Deadline: st.TurnDeadline, Actions: g.Legal().List()}
	}
	return v
}

// refundOf is the credit that gives op's stake back, under a key of its own
// (so a replay after failover pays it once).
func refundOf(op WalletOp) WalletOp {
	op.Action += "/refund"
	op.Key = WalletKey(op.Table, op.Round, op.Seat, op.Action)
	return op
}
