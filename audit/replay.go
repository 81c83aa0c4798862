package audit

import (
	"context"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer"
)

// BetState is a bet as the archive says it is.
type BetState struct {
	Player   string
	Currency buzzer.Currency
	Stake    buzzer.Amount
	Status   string // "open" until settled, then the last settlement's status
	Payout   buzzer.Amount
	Revision uint64 // settlements applied (0: never settled)
}

// State is what replaying an archive rebuilds. Balances are keyed by account
// ID (the wallet's AccountKey.ID()), bets by bet ID, market results by market
// ID, RNG log sizes by log name and table sequence numbers by table ID.
type State struct {
	Records      uint64
	Transactions uint64
	Balances     map[string]buzzer.Amount
	Bets         map[string]BetState
	Markets      map[string]int64
	RNGLogs      map[string]uint64
	// RNGRoots is each RNG log's Merkle root (hex) folded from its draws'
	// leaf hashes; a log with a draw archived without one has no root.
	RNGRoots map[string]string
	Tables   map[string]uint64
	// Other counts records of types replay does not interpret.
	Other map[string]uint64

	txIDs    map[string]struct{}
	currency map[string]buzzer.Currency
	rngTrees map[string]*rngTree // nil entry: a draw had no leaf hash
}

// NewState returns an empty state ready for Apply.
func NewState() State {
	var s State
	s.ensure()
	return s
}

// Apply folds one record into the state, checking the payload contract in
// doc.go. Records must come in archive order (per stream key, Seq order).
// An error means the archive holds something the contract forbids; the
// state is then unspecified.
func (s *State) Apply(r *Record) error {
	s.ensure()
	s.Records++
	bad := func(format string, args ...any) error {
		return invalid("record %s (%s): %s", r.ID, r.Type, fmt.Sprintf(format, args...))
	}
	switch r.Type {
	case TypeLedgerTransaction:
		var p LedgerTransaction
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		if r.Component != ComponentWallet {
			return bad("component %q, want wallet", r.Component)
		}
		if p.TxID == "" || p.EffectKey == "" || len(p.Postings) < 2 {
			return bad("needs tx_id, effect_key and at least two postings")
		}
		if _, dup := s.txIDs[p.TxID]; dup {
			return bad("transaction %s archived twice", p.TxID)
		}
		want := p.Player
		if want == "" {
			want = p.Postings[0].Account
		}
		if r.Key != want {
			return bad("key %q, want the player (or first account) %q", r.Key, want)
		}
		sums := map[buzzer.Currency]buzzer.Amount{}
		seen := map[string]bool{}
		for _, q := range p.Postings {
			if err := q.Currency.Validate(); err != nil || q.Account == "" || q.Amount == 0 || seen[q.Account] {
				return bad("posting %+v is malformed, zero or repeated", q)
			}
			seen[q.Account] = true
			if c, ok := s.currency[q.Account]; ok && c != q.Currency {
				return bad("account %s is in %s, posting says %s", q.Account, c, q.Currency)
			}
			sum, ok := addAmounts(sums[q.Currency], q.Amount)
			if !ok {
				return bad("postings overflow")
			}
			sums[q.Currency] = sum
		}
		for c, sum := range sums {
			if sum != 0 {
				return bad("postings in %s sum to %d, not zero", c, sum)
			}
		}
		for _, q := range p.Postings {
			b, ok := addAmounts(s.Balances[q.Account], q.Amount)
			if !ok {
				return bad("balance of %s overflows", q.Account)
			}
			s.Balances[q.Account] = b
			s.currency[q.Account] = q.Currency
		}
		s.txIDs[p.TxID] = struct{}{}
		s.Transactions++
	case TypeBetPlaced:
		var p BetPlaced
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		switch {
		case r.Component != ComponentBet || r.Key != p.BetID || r.Seq != 1:
			return bad("must be the first record (seq 1) of key bet/%s, is %s/%s seq %d", p.BetID, r.Component, r.Key, r.Seq)
		case p.Stake <= 0 || p.Player == "" || len(p.Legs) == 0 || p.Currency.Validate() != nil:
			return bad("needs a player, a currency, a positive stake and legs")
		}
		if _, dup := s.Bets[p.BetID]; dup {
			return bad("bet %s placed twice", p.BetID)
		}
		s.Bets[p.BetID] = BetState{Player: p.Player, Currency: p.Currency, Stake: p.Stake, Status: "open"}
	case TypeBetSettled:
		var p BetSettled
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		b, ok := s.Bets[p.BetID]
		switch {
		case r.Component != ComponentBet || r.Key != p.BetID:
			return bad("must be keyed bet/%s, is %s/%s", p.BetID, r.Component, r.Key)
		case !ok:
			return bad("bet %s was never placed", p.BetID)
		case p.Revision != b.Revision+1:
			return bad("settles bet %s at revision %d after revision %d", p.BetID, p.Revision, b.Revision)
		case p.Status == "" || p.Payout < 0:
			return bad("needs a status and a payout >= 0")
		}
		b.Status, b.Payout, b.Revision = p.Status, p.Payout, p.Revision
		s.Bets[p.BetID] = b
	case TypeMarketSettled:
		var p MarketSettled
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		if r.Component != ComponentSettlement || r.Key != p.MarketID {
			return bad("must be keyed settlement/%s, is %s/%s", p.MarketID, r.Component, r.Key)
		}
		if p.ResultVersion <= s.Markets[p.MarketID] {
			return bad("market %s result version %d does not follow %d", p.MarketID, p.ResultVersion, s.Markets[p.MarketID])
		}
		s.Markets[p.MarketID] = p.ResultVersion
	case TypeRNGDraw:
		var p RNGDraw
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		switch {
		case r.Component != ComponentRNG || r.Key != p.Log || r.Seq != p.Index+1:
			return bad("must be keyed rng/%s with seq = index+1, is %s/%s seq %d", p.Log, r.Component, r.Key, r.Seq)
		case p.DrawID == "" || p.Index != s.RNGLogs[p.Log]:
			return bad("draw at index %d of log %s, which holds %d", p.Index, p.Log, s.RNGLogs[p.Log])
		}
		tree, seen := s.rngTrees[p.Log]
		if !seen && p.Index == 0 {
			tree = &rngTree{}
		}
		if tree != nil {
			leaf, err := hex.DecodeString(p.LeafHash)
			if err == nil && len(leaf) == tlog.HashSize {
				tree.add(tlog.Hash(leaf))
			} else if p.LeafHash != "" {
				return bad("leaf_hash %q is not %d bytes of hex", p.LeafHash, tlog.HashSize)
			} else {
				tree = nil
			}
		}
		s.rngTrees[p.Log] = tree
		if tree != nil {
			r := tree.root()
			s.RNGRoots[p.Log] = hex.EncodeToString(r[:])
		} else {
			delete(s.RNGRoots, p.Log)
		}
		s.RNGLogs[p.Log] = p.Index + 1
	case TypeTableEvent:
		var p TableEvent
		if err := decodePayload(r.Payload, &p); err != nil {
			return bad("payload: %v", err)
		}
		switch {
		case r.Component != ComponentTable || r.Key != p.TableID || r.Seq != p.TableSeq:
			return bad("must be keyed table/%s with seq = table_seq, is %s/%s seq %d", p.TableID, r.Component, r.Key, r.Seq)
		case p.Action == "" || p.TableSeq != s.Tables[p.TableID]+1:
			return bad("table %s event %d after %d", p.TableID, p.TableSeq, s.Tables[p.TableID])
		}
		s.Tables[p.TableID] = p.TableSeq
	default:
		s.Other[r.Type]++
	}
	return nil
}

// ensure makes every nil map, so a zero State can be applied to.
func (s *State) ensure() {
	if s.Balances == nil {
		s.Balances = map[string]buzzer.Amount{}
	}
	if s.Bets == nil {
		s.Bets = map[string]BetState{}
	}
	if s.Markets == nil {
		s.Markets = map[string]int64{}
	}
	if s.RNGLogs == nil {
		s.RNGLogs = map[string]uint64{}
	}
	if s.RNGRoots == nil {
		s.RNGRoots = map[string]string{}
	}
	if s.rngTrees == nil {
		s.rngTrees = map[string]*rngTree{}
	}
	if s.Tables == nil {
		s.Tables = map[string]uint64{}
	}
	if s.Other == nil {
		s.Other = map[string]uint64{}
	}
	if s.txIDs == nil {
		s.txIDs = map[string]struct{}{}
	}
	if s.currency == nil {
		s.currency = map[string]buzzer.Currency{}
	}
}

func addAmounts(a, b buzzer.Amount) (buzzer.Amount, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// Replay rebuilds the state from archived records alone (for an archive
// directory: archive.Records). The records' integrity is checked on the
// way by recs; Replay fails on the first record that is not canonical or
// breaks the payload contract, and recs names where it is.
func Replay(recs Records) (State, error) {
	s := NewState()
	err := recs.Walk(func(b []byte) error {
		r, err := DecodeCanonical(b)
		if err != nil {
			return err
		}
		return s.Apply(r)
	})
	if err != nil {
		return State{}, err
	}
	return s, nil
}

// StateReader reads the same state from a live store; engine packages
// implement it. A nil map in the returned State means the store does not
// hold that part (an RNG log kept elsewhere, say) and it is not compared.
type StateReader interface {
	ReadState(ctx context.Context) (State, error)
}

// Difference is one way the archive and a store disagree.
type Difference struct {
	Kind    string // "balance", "bet", "market", "rng_log", "rng_root" or "table"
	Key     string
	Archive string // the archive's value ("absent" if none)
	Store   string // the store's value ("absent" if none)
}

func (d Difference) String() string {
	return fmt.Sprintf("%s %s: archive %s, store %s", d.Kind, d.Key, d.Archive, d.Store)
}

// Compare reads the store's state and diffs it against the replayed one.
func Compare(ctx context.Context, replayed State, store StateReader) ([]Difference, error) {
	st, err := store.ReadState(ctx)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.ErrorCode(err), "cannot read the store's state to compare with the audit archive")
	}
	return Diff(replayed, st), nil
}

// Diff lists every difference between the replayed state and a store's,
// sorted by kind and key. An absent balance equals zero; a nil map in store
// is not compared. Bet revisions are compared only when the store reports
// one.
func Diff(replayed, store State) []Difference {
	var out []Difference
	if store.Balances != nil {
		for _, k := range keys(replayed.Balances, store.Balances) {
			if a, b := replayed.Balances[k], store.Balances[k]; a != b {
				out = append(out, Difference{"balance", k, strconv.FormatInt(int64(a), 10), strconv.FormatInt(int64(b), 10)})
			}
		}
	}
	if store.Bets != nil {
		for _, k := range keys(replayed.Bets, store.Bets) {
			a, aok := replayed.Bets[k]
			b, bok := store.Bets[k]
			if bok && b.Revision == 0 {
				a.Revision = 0
			}
			if aok != bok || a != b {
				out = append(out, Difference{"bet", k, betString(a, aok), betString(b, bok)})
			}
		}
	}
	out = diffCounts(out, "market", replayed.Markets, store.Markets)
	out = diffCounts(out, "rng_log", replayed.RNGLogs, store.RNGLogs)
	out = diffCounts(out, "rng_root", replayed.RNGRoots, store.RNGRoots)
	out = diffCounts(out, "table", replayed.Tables, store.Tables)
	return out
}

func betString(b BetState, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("%s %s stake %d %s payout %d rev %d", b.Player, b.Currency, b.Stake, b.Status, b.Payout, b.Revision)
}

func diffCounts[V int64 | uint64 | string](out []Difference, kind string, a, b map[string]V) []Difference {
	if b == nil {
		return out
	}
	for _, k := range keys(a, b) {
		av, aok := a[k]
		bv, bok := b[k]
		if aok != bok || av != bv {
			out = append(out, Difference{kind, k, countString(av, aok), countString(bv, bok)})
		}
	}
	return out
}

func countString[V int64 | uint64 | string](v V, ok bool) string {
	if !ok {
		return "absent"
	}
	return fmt.Sprint(v)
}

func keys[V any](a, b map[string]V) []string {
	seen := make(map[string]struct{}, len(a)+len(b))
	for k := range a {
		seen[k] = struct{}{}
	}
	for k := range b {
		seen[k] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
