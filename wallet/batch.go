package wallet

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Group commit. Requests that run at once (deposits, withdrawals, table
// money and bets without an in-play delay) are queued on a lane chosen by
// player and committed together: one SERIALIZABLE transaction claims every
// key of the batch, reads the markets' results, locks the accounts, checks
// every member's balances in order and writes all of it in a few round
// trips, however many members it holds. Each member keeps its own key,
// fingerprint, stored answer and effect key, so a batch is exactly the
// members' transactions run one after another; a member that is refused
// (insufficient funds, market closed) has its refusal stored instead, and a
// member that fails for another reason is dropped and the batch rerun
// without it, so it never takes the others down with it.
//
// Lanes split the work so that concurrent batches rarely touch one row: a
// player's requests always use the same lane (its cash rows and its keys
// are written by one batch at a time), and each lane posts only to its own
// share of the house buckets.

// plan is one request's effect, built outside the store: the ledger
// transaction, the bet it places (nil for money movements), and the answer
// given the balances the transaction leaves (in posting order).
type plan struct {
	txn    *Transaction
	bet    *Bet
	answer func(after []buzzer.Amount) (status int, body []byte, err error)
}

// planFunc builds a request's plan at now. bucket picks the house bucket
// for an ID; results are the result records of the effect's markets.
type planFunc func(ctx context.Context, now time.Time, effectKey string, bucket func(id string) int, results map[string]*MarketResult) (*plan, error)

type jobResult struct {
	resp *Response
	err  error
}

// job is one request waiting in a lane.
type job struct {
	ctx                  context.Context // the request's detached, bounded context
	player, key, fp, tok string
	e                    effect
	done                 chan jobResult // buffered: the lane never blocks on it
	// followers are sends of the same key and payload that arrived while
	// this one was queued; they get its answer as a replay.
	followers []*job
}

// finish answers j and its followers. A follower is a resend of the same
// request: a success reaches it as the replay of the stored response (the
// same status and bytes), anything else as the same error.
func (j *job) finish(r jobResult) {
	j.done <- r
	for _, f := range j.followers {
		fr := r
		if r.resp != nil {
			fr.resp = &Response{Status: r.resp.Status, Body: r.resp.Body, Replayed: true}
		}
		f.done <- fr
	}
}

// lane runs its queued jobs in batches. Its goroutine is started by the
// first job queued on an idle lane and ends as soon as the queue is empty;
// every job's submitter waits for its answer, so the goroutine never
// outlives the requests it serves.
type lane struct {
	s     *Service
	index int

	mu      sync.Mutex
	queue   []*job
	running bool
}

func (l *lane) submit(j *job) {
	l.mu.Lock()
	l.queue = append(l.queue, j)
	start := !l.running
	l.running = true
	l.mu.Unlock()
	if start {
		go l.run()
	}
}

func (l *lane) run() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.running = false
			l.mu.Unlock()
			return
		}
		short := len(l.queue) < max(2, l.s.cfg.BatchMax/8)
		l.mu.Unlock()
		if short && l.s.cfg.BatchLinger > 0 {
			// Little is queued: give more requests a moment to share
			// this group's commit (see Config.BatchLinger).
			time.Sleep(l.s.cfg.BatchLinger)
		}
		l.s.commitBatch(l.index, l.take)
	}
}

// take removes the next batch from the queue. One batch holds one request
// per (player, key): a second send of the same request follows the first
// and shares its answer; a send of another payload under that key waits
// for the next batch, where the stored record answers it (422).
func (l *lane) take() []*job {
	l.mu.Lock()
	defer l.mu.Unlock()
	var batch, rest []*job
	seen := map[[2]string]*job{}
	for _, j := range l.queue {
		k := [2]string{j.player, j.key}
		if lead := seen[k]; lead != nil && lead.fp == j.fp {
			lead.followers = append(lead.followers, j)
			continue
		}
		if seen[k] != nil || len(batch) == l.s.cfg.BatchMax {
			rest = append(rest, j)
			continue
		}
		seen[k] = j
		batch = append(batch, j)
	}
	l.queue = rest
	return batch
}

// Queued counts the requests waiting in the lanes for a group commit.
func (s *Service) Queued() int {
	n := 0
	for _, l := range s.lanes {
		l.mu.Lock()
		n += len(l.queue)
		l.mu.Unlock()
	}
	return n
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// laneBucket is the house bucket lane uses for id: lanes own disjoint sets
// of buckets (lane, lane+n, lane+2n, ...), so their batches never update
// the same house row.
func (s *Service) laneBucket(id string, lane int) int {
	n := len(s.lanes)
	count := (s.cfg.Buckets - lane + n - 1) / n
	return lane + n*int(hash32(id)%uint32(count))
}

// executeBatched queues the request on its player's lane and waits for
// the answer.
func (s *Service) executeBatched(ctx context.Context, player, key, fp string, e effect) (*Response, error) {
	j := &job{ctx: ctx, player: player, key: key, fp: fp, tok: s.newID(), e: e, done: make(chan jobResult, 1)}
	s.lanes[hash32("lane|"+player)%uint32(len(s.lanes))].submit(j)
	r := <-j.done
	return r.resp, r.err
}

// errDropMember rolls a batch back so that it can be rerun without the
// member that failed.
var errDropMember = errors.New("wallet: batch member failed")

// commitBatch commits the batch take gives, as late as it can: take is
// called inside the transaction, once the store has begun it. On SQLite
// that is after the wait for its one writer (behind the table capture and
// the audit relay), so whatever queued during that wait joins this commit
// instead of paying for a commit of its own after it.
func (s *Service) commitBatch(lane int, take func() []*job) {
	var live []*job
	taken := false
	admit := func() {
		if taken {
			return
		}
		taken = true
		for _, j := range take() {
			if err := j.ctx.Err(); err != nil {
				// Not started: nothing was applied, so a resend may run it.
				j.finish(jobResult{err: buzzer.Wrap(err, buzzer.ETIMEOUT, "The operation did not finish in time.")})
				continue
			}
			live = append(live, j)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.EffectTimeout)
	defer cancel()
	bucket := func(id string) int { return s.laneBucket(id, lane) }
	inTx := s.store.InTx
	if gs, ok := s.store.(GroupStore); ok {
		inTx = gs.InGroupTx
	}
	for {
		var (
			out     []jobResult
			failed  int
			failErr error
		)
		err := inTx(ctx, func(tx Tx) error {
			admit()
			out, failed, failErr = make([]jobResult, len(live)), -1, nil
			if len(live) == 0 {
				return nil
			}
			i, err := s.batchTx(ctx, tx, live, bucket, out)
			if err != nil && i >= 0 {
				failed, failErr = i, err
				return errDropMember
			}
			return err
		})
		// A store that failed before the transaction began still answers
		// the batch (with its error) rather than leave it queued.
		admit()
		if errors.Is(err, errDropMember) && failed >= 0 {
			live[failed].finish(jobResult{err: failErr})
			live = append(live[:failed:failed], live[failed+1:]...)
			if len(live) == 0 {
				return
			}
			continue
		}
		for i, j := range live {
			if err != nil {
				j.finish(jobResult{err: err})
			} else {
				j.finish(out[i])
			}
		}
		return
	}
}

// GroupTx is a Tx that runs a group commit in two round trips. ReadGroup
// claims the keys (as ClaimKeys), reads the markets' results (as
// MarketResults) and locks the accounts (as LockBalances) together;
// ApplyGroup then writes what the wallet decided (as ApplyBatch) and
// releases whatever ReadGroup held for members that were not written. The
// group commit plans its members before it knows their keys' fate, so the
// accounts of a member whose key turns out to be a replay are locked too
// (harmless: they are the same player's and the lane's own rows). A Tx
// without it gets the single calls one after another.
type GroupTx interface {
	ReadGroup(ctx context.Context, g *GroupRead) error
	// ApplyGroup is called once after ReadGroup, even with nothing to
	// write, and is the transaction's last step: a store may send the
	// transaction's commit with it (PostgreSQL does, saving a round trip),
	// so nothing is written through the Tx after it.
	ApplyGroup(ctx context.Context, g *GroupRead, txns []*Transaction, bets []*Bet, keys []*KeyRecord) error
}

// GroupStore is a Store that can start a group commit's transaction
// without a round trip of its own: InGroupTx is InTx (SERIALIZABLE, rerun
// on a serialization failure) whose BEGIN goes with the first statements
// fn sends (ReadGroup's).
type GroupStore interface {
	InGroupTx(ctx context.Context, fn func(Tx) error) error
}

// GroupRead is one group commit's reads: the inputs, and what ReadGroup
// fills in.
type GroupRead struct {
	// Claims are the key records to claim; the (Player, Key) pairs are
	// distinct.
	Claims []*KeyRecord
	// Markets are the markets whose results to read (repeats allowed).
	Markets []string
	// Txns and Bets are every planned member's transaction and bet: those
	// ApplyGroup gets are among them. Their postings' accounts are locked.
	Txns []*Transaction
	Bets []*Bet

	// Stored is, in the order of Claims, the record now stored for each.
	Stored []*KeyRecord
	// Results are the result records of those of Markets that have one.
	Results map[string]*MarketResult
	// Balances are the locked accounts' balances (absent means zero).
	Balances map[string]buzzer.Amount
	// Held is the store's own state from ReadGroup to ApplyGroup.
	Held any
}

// planMember builds job j's plan at now and checks its transaction.
func (s *Service) planMember(j *job, now time.Time, bucket func(string) int, results map[string]*MarketResult) (*plan, error) {
	p, err := j.e.plan(j.ctx, now, j.player+"/"+j.key, bucket, results)
	if err != nil {
		return nil, err
	}
	p.txn.CreatedAt = p.txn.CreatedAt.UTC()
	if err := p.txn.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// batchTx runs the batch live inside tx and fills out with each member's
// answer. An error with index i >= 0 is member i's own failure (the batch
// is rerun without it); with i < 0 it is the store's, for everyone.
func (s *Service) batchTx(ctx context.Context, tx Tx, live []*job, bucket func(string) int, out []jobResult) (int, error) {
	now := s.now()
	recs := make([]*KeyRecord, len(live))
	for i, j := range live {
		recs[i] = &KeyRecord{Player: j.player, Key: j.key, Fingerprint: j.fp, State: KeyInFlight, Owner: j.tok,
			LockedUntil: now.Add(s.cfg.KeyLease), CreatedAt: now, ExpiresAt: now.Add(s.cfg.KeyTTL)}
	}
	var (
		stored  []*KeyRecord
		results map[string]*MarketResult
		bal     map[string]buzzer.Amount
		err     error
	)
	// With a GroupTx every member is planned first (without the markets'
	// results, which only refuse a bet: a member whose market has one is
	// planned again below), so that its accounts are locked in the same
	// round trip as the claims and the results are read.
	gtx, grouped := tx.(GroupTx)
	var (
		pre    []*plan
		preErr []error
		g      *GroupRead
	)
	if grouped {
		pre, preErr = make([]*plan, len(live)), make([]error, len(live))
		g = &GroupRead{Claims: recs}
		for i, j := range live {
			g.Markets = append(g.Markets, j.e.markets...)
			if pre[i], preErr[i] = s.planMember(j, now, bucket, nil); preErr[i] != nil {
				continue
			}
			g.Txns = append(g.Txns, pre[i].txn)
			if pre[i].bet != nil {
				g.Bets = append(g.Bets, pre[i].bet)
			}
		}
		if err := gtx.ReadGroup(ctx, g); err != nil {
			return -1, err
		}
		stored, results, bal = g.Stored, g.Results, g.Balances
	} else if stored, err = tx.ClaimKeys(ctx, recs); err != nil {
		return -1, err
	}
	if len(stored) != len(recs) {
		return -1, buzzer.Errorf(buzzer.EINTERNAL, "store returned %d key records for %d", len(stored), len(recs))
	}
	type member struct {
		i       int
		created time.Time
		p       *plan
	}
	var run []member
	for i, j := range live {
		old := stored[i]
		switch {
		case old == nil:
			return -1, buzzer.Errorf(buzzer.EINTERNAL, "store returned no key record for %s", j.key)
		case old.Owner == j.tok && old.State == KeyInFlight:
			run = append(run, member{i: i, created: now}) // claimed now
		case old.Fingerprint != j.fp:
			out[i].err = buzzer.Errorf(buzzer.EUNPROCESSABLE, "This Idempotency-Key was already used for a different request.").WithReason("idempotency_key_reused")
		case old.State == KeyCompleted:
			out[i].resp, out[i].err = replay(old)
		case old.LockedUntil.After(now):
			out[i].err = errInFlight()
		default:
			// Its attempt crashed and the lease ran out: take it over (the
			// completed record written below replaces it).
			run = append(run, member{i: i, created: old.CreatedAt})
		}
	}
	if !grouped {
		var markets []string
		for _, m := range run {
			markets = append(markets, live[m.i].e.markets...)
		}
		results = map[string]*MarketResult{}
		if len(markets) > 0 {
			if results, err = tx.MarketResults(ctx, markets); err != nil {
				return -1, err
			}
		}
	}
	var keys []*KeyRecord
	reject := func(m member, rejected error) (int, error) {
		if !rejection(rejected) || keyError(rejected) {
			return m.i, rejected
		}
		body, err := storedRejectionBody(rejected)
		if err != nil {
			return m.i, err
		}
		j := live[m.i]
		keys = append(keys, &KeyRecord{Player: j.player, Key: j.key, Fingerprint: j.fp, State: KeyCompleted, Owner: j.tok,
			LockedUntil: now, Body: body, CreatedAt: m.created, ExpiresAt: now.Add(s.cfg.KeyTTL)})
		out[m.i].err = rejected
		return -1, nil
	}
	var accounts []AccountKey
	planned := run[:0]
	for _, m := range run {
		j := live[m.i]
		var p *plan
		var err error
		switch {
		case !grouped:
			p, err = s.planMember(j, now, bucket, results)
		case preErr[m.i] != nil:
			err = preErr[m.i]
		case resulted(j.e.markets, results):
			// Planned again with the results, it is refused: a plan that is
			// not was never read by ReadGroup, and fails.
			if p, err = s.planMember(j, now, bucket, results); err == nil {
				return m.i, buzzer.Errorf(buzzer.EINTERNAL, "group commit: %s was planned again with its markets' results and not refused", j.key)
			}
		default:
			p = pre[m.i]
		}
		if err != nil {
			if i, err := reject(m, err); err != nil {
				return i, err
			}
			continue
		}
		m.p = p
		planned = append(planned, m)
		if !grouped {
			for _, q := range p.txn.Postings {
				accounts = append(accounts, q.Account)
			}
		}
	}
	if !grouped && len(accounts) > 0 {
		if bal, err = tx.LockBalances(ctx, accounts); err != nil {
			return -1, err
		}
	}
	var txns []*Transaction
	var bets []*Bet
	for _, m := range planned {
		t := m.p.txn
		after := make([]buzzer.Amount, len(t.Postings))
		for k, q := range t.Postings {
			after[k] = bal[q.Account.ID()] + q.Amount
		}
		if err := checkBalances(t, after); err != nil {
			if i, err := reject(m, err); err != nil {
				return i, err
			}
			continue
		}
		status, body, err := m.p.answer(after)
		if err != nil {
			return m.i, err
		}
		for k, q := range t.Postings {
			bal[q.Account.ID()] = after[k]
		}
		txns = append(txns, t)
		if m.p.bet != nil {
			bets = append(bets, m.p.bet)
		}
		j := live[m.i]
		keys = append(keys, &KeyRecord{Player: j.player, Key: j.key, Fingerprint: j.fp, State: KeyCompleted, Owner: j.tok,
			LockedUntil: now, Status: status, Body: body, EffectID: t.ID, CreatedAt: m.created, ExpiresAt: now.Add(s.cfg.KeyTTL)})
		out[m.i].resp = &Response{Status: status, Body: body}
	}
	if grouped {
		return -1, gtx.ApplyGroup(ctx, g, txns, bets, keys)
	}
	if len(keys) == 0 {
		return -1, nil
	}
	return -1, tx.ApplyBatch(ctx, txns, bets, keys)
}

// resulted reports whether any of markets has a result record.
func resulted(markets []string, results map[string]*MarketResult) bool {
	for _, m := range markets {
		if results[m] != nil {
			return true
		}
	}
	return false
}
