package wallettest

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// MemStore is an in-memory wallet.Store. One mutex serializes transactions,
// so every transaction is trivially serializable; an error from fn undoes
// every change it made.
type MemStore struct {
	mu       sync.Mutex
	keys     map[[2]string]wallet.KeyRecord
	accounts map[string]wallet.Account
	postings []memPosting
	effects  map[string]int
	bets     map[string]*wallet.Bet     // bet ID -> private copy
	byMarket map[string]map[string]bool // market -> bet IDs
	byPlayer map[string]map[string]bool // player -> bet IDs
	results  map[string][]byte          // market -> JSON
	undo     []func()
}

type memPosting struct {
	account string
	owner   string
	amount  buzzer.Amount
	txn     *wallet.Transaction
}

var _ wallet.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{keys: map[[2]string]wallet.KeyRecord{}, accounts: map[string]wallet.Account{},
		effects: map[string]int{}, bets: map[string]*wallet.Bet{},
		byMarket: map[string]map[string]bool{}, byPlayer: map[string]map[string]bool{}, results: map[string][]byte{}}
}

// InTx runs fn with the store locked and undoes its changes if it fails.
func (m *MemStore) InTx(ctx context.Context, fn func(wallet.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "The operation did not finish in time.")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.undo = m.undo[:0]
	if err := fn(memTx{m}); err != nil {
		for i := len(m.undo) - 1; i >= 0; i-- {
			m.undo[i]()
		}
		return err
	}
	return nil
}

type memTx struct{ m *MemStore }

func (t memTx) InsertKey(_ context.Context, k *wallet.KeyRecord) (bool, error) {
	id := [2]string{k.Player, k.Key}
	if _, ok := t.m.keys[id]; ok {
		return false, nil
	}
	t.setKey(id, k)
	return true, nil
}

func (t memTx) setKey(id [2]string, k *wallet.KeyRecord) {
	old, had := t.m.keys[id]
	c := *k
	c.Body = append([]byte(nil), k.Body...)
	t.m.keys[id] = c
	t.m.undo = append(t.m.undo, func() {
		if had {
			t.m.keys[id] = old
		} else {
			delete(t.m.keys, id)
		}
	})
}

func (t memTx) delKey(id [2]string) {
	old, had := t.m.keys[id]
	if !had {
		return
	}
	delete(t.m.keys, id)
	t.m.undo = append(t.m.undo, func() { t.m.keys[id] = old })
}

func (t memTx) GetKey(_ context.Context, player, key string) (*wallet.KeyRecord, error) {
	k, ok := t.m.keys[[2]string{player, key}]
	if !ok {
		return nil, nil
	}
	k.Body = append([]byte(nil), k.Body...)
	return &k, nil
}

func (t memTx) UpdateKey(_ context.Context, k *wallet.KeyRecord) error {
	id := [2]string{k.Player, k.Key}
	if _, ok := t.m.keys[id]; !ok {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no such idempotency key")
	}
	t.setKey(id, k)
	return nil
}

func (t memTx) DeleteKey(_ context.Context, player, key, owner string) error {
	id := [2]string{player, key}
	if k, ok := t.m.keys[id]; ok && k.Owner == owner {
		t.delKey(id)
	}
	return nil
}

func (t memTx) PurgeKeys(_ context.Context, before time.Time, limit int) (int, error) {
	var ids [][2]string
	for id, k := range t.m.keys {
		if k.ExpiresAt.Before(before) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i][0]+ids[i][1] < ids[j][0]+ids[j][1] })
	if len(ids) > limit {
		ids = ids[:limit]
	}
	for _, id := range ids {
		t.delKey(id)
	}
	return len(ids), nil
}

// LockAccounts does nothing: the memory store runs one transaction at a time.
func (t memTx) LockAccounts(context.Context, []wallet.AccountKey) error { return nil }

func (t memTx) ApplyTransaction(_ context.Context, txn *wallet.Transaction) ([]buzzer.Amount, error) {
	c := *txn
	c.Postings = append([]wallet.Posting(nil), txn.Postings...)
	out := make([]buzzer.Amount, len(c.Postings))
	n := len(t.m.postings)
	t.m.undo = append(t.m.undo, func() { t.m.postings = t.m.postings[:n] })
	for i, p := range c.Postings {
		id := p.Account.ID()
		old, had := t.m.accounts[id]
		a := old
		if !had {
			a = wallet.Account{AccountKey: p.Account}
		}
		a.Balance += p.Amount
		t.m.accounts[id] = a
		t.m.undo = append(t.m.undo, func() {
			if had {
				t.m.accounts[id] = old
			} else {
				delete(t.m.accounts, id)
			}
		})
		t.m.postings = append(t.m.postings, memPosting{account: id, owner: p.Account.Owner, amount: p.Amount, txn: &c})
		out[i] = a.Balance
	}
	ek := c.EffectKey
	t.m.effects[ek]++
	t.m.undo = append(t.m.undo, func() {
		if t.m.effects[ek]--; t.m.effects[ek] == 0 {
			delete(t.m.effects, ek)
		}
	})
	return out, nil
}

func (t memTx) Balance(_ context.Context, k wallet.AccountKey) (buzzer.Amount, error) {
	return t.m.accounts[k.ID()].Balance, nil
}

func (t memTx) Accounts(_ context.Context, owner string) ([]wallet.Account, error) {
	var out []wallet.Account
	for _, a := range t.m.accounts {
		if a.Owner == owner {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

func (t memTx) Entries(_ context.Context, owner string, before wallet.EntryCursor, limit int) ([]wallet.Entry, error) {
	var out []wallet.Entry
	for _, p := range t.m.postings {
		if p.owner != owner {
			continue
		}
		at := p.txn.CreatedAt
		if before.TransactionID != "" && !(at.Before(before.CreatedAt) || at.Equal(before.CreatedAt) && p.txn.ID < before.TransactionID) {
			continue
		}
		k, _ := wallet.ParseAccountID(p.account)
		out = append(out, wallet.Entry{TransactionID: p.txn.ID, Kind: p.txn.Kind, Account: k.Kind, Amount: p.amount,
			Currency: k.Currency, Reference: p.txn.Reference, CreatedAt: at, Decision: copyDecision(p.txn.Decision)})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.After(out[j].CreatedAt)
		}
		return out[i].TransactionID > out[j].TransactionID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func copyBet(b *wallet.Bet) *wallet.Bet {
	c := *b
	c.Legs = append([]wallet.Leg(nil), b.Legs...)
	if b.SettledAt != nil {
		at := *b.SettledAt
		c.SettledAt = &at
	}
	return &c
}

func index(m map[string]map[string]bool, k, id string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][id] = true
}

func (t memTx) putBet(b *wallet.Bet) {
	old, had := t.m.bets[b.ID]
	t.m.bets[b.ID] = copyBet(b)
	index(t.m.byPlayer, b.Player, b.ID)
	for _, l := range b.Legs {
		index(t.m.byMarket, l.MarketID, b.ID)
	}
	t.m.undo = append(t.m.undo, func() {
		if had {
			t.m.bets[b.ID] = old
			return
		}
		delete(t.m.bets, b.ID)
		delete(t.m.byPlayer[b.Player], b.ID)
		for _, l := range b.Legs {
			delete(t.m.byMarket[l.MarketID], b.ID)
		}
	})
}

func (t memTx) InsertBet(_ context.Context, b *wallet.Bet) error {
	if _, ok := t.m.bets[b.ID]; ok {
		return buzzer.Errorf(buzzer.ECONFLICT, "bet %s exists", b.ID)
	}
	t.putBet(b)
	return nil
}

func (t memTx) GetBet(_ context.Context, player, id string) (*wallet.Bet, error) {
	b, ok := t.m.bets[id]
	if !ok || b.Player != player {
		return nil, nil
	}
	return copyBet(b), nil
}

func (t memTx) UpdateBet(_ context.Context, b *wallet.Bet) error {
	if _, ok := t.m.bets[b.ID]; !ok {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no bet %s", b.ID)
	}
	t.putBet(b)
	return nil
}

func (t memTx) ListBets(_ context.Context, player string, status wallet.BetStatus, before wallet.BetCursor, limit int) ([]*wallet.Bet, error) {
	var out []*wallet.Bet
	for id := range t.m.byPlayer[player] {
		b := t.m.bets[id]
		if status != "" && b.Status != status {
			continue
		}
		if before.ID != "" && !(b.PlacedAt.Before(before.PlacedAt) || b.PlacedAt.Equal(before.PlacedAt) && b.ID < before.ID) {
			continue
		}
		out = append(out, copyBet(b))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].PlacedAt.Equal(out[j].PlacedAt) {
			return out[i].PlacedAt.After(out[j].PlacedAt)
		}
		return out[i].ID > out[j].ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (t memTx) PendingBets(_ context.Context, market string, version int64, limit int) ([]wallet.BetRef, error) {
	ids := make([]string, 0, len(t.m.byMarket[market]))
	for id := range t.m.byMarket[market] {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []wallet.BetRef
	for _, id := range ids {
		b := t.m.bets[id]
		for _, l := range b.Legs {
			if l.MarketID == market && l.ResultVersion < version {
				out = append(out, wallet.BetRef{Player: b.Player, BetID: b.ID})
				break
			}
		}
		if len(out) == limit {
			break
		}
	}
	return out, nil
}

func (t memTx) GetMarketResult(_ context.Context, market string) (*wallet.MarketResult, error) {
	data, ok := t.m.results[market]
	if !ok {
		return nil, nil
	}
	var r wallet.MarketResult
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

func (t memTx) PutMarketResult(_ context.Context, r *wallet.MarketResult) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	old, had := t.m.results[r.MarketID]
	t.m.results[r.MarketID] = data
	t.m.undo = append(t.m.undo, func() {
		if had {
			t.m.results[r.MarketID] = old
		} else {
			delete(t.m.results, r.MarketID)
		}
	})
	return nil
}

func (t memTx) UnfinishedMarketResults(ctx context.Context, limit int) ([]string, error) {
	var out []string
	for m := range t.m.results {
		r, err := t.GetMarketResult(ctx, m)
		if err != nil {
			return nil, err
		}
		if !r.Done {
			out = append(out, m)
		}
	}
	sort.Strings(out)
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (t memTx) ScanAccounts(_ context.Context, fn func(wallet.Account) error) error {
	for _, a := range t.m.accounts {
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}

func (t memTx) PostingSums(context.Context) (map[string]buzzer.Amount, error) {
	out := map[string]buzzer.Amount{}
	for _, p := range t.m.postings {
		out[p.account] += p.amount
	}
	return out, nil
}

func (t memTx) DuplicateEffects(context.Context) (map[string]int, error) {
	out := map[string]int{}
	for k, n := range t.m.effects {
		if n > 1 {
			out[k] = n
		}
	}
	return out, nil
}

func (t memTx) ScanBets(_ context.Context, fn func(*wallet.Bet) error) error {
	for _, b := range t.m.bets {
		if err := fn(copyBet(b)); err != nil {
			return err
		}
	}
	return nil
}

func copyDecision(d *wallet.Decision) *wallet.Decision {
	if d == nil {
		return nil
	}
	c := *d
	return &c
}

func (t memTx) ClaimKeys(ctx context.Context, recs []*wallet.KeyRecord) ([]*wallet.KeyRecord, error) {
	out := make([]*wallet.KeyRecord, len(recs))
	for i, k := range recs {
		ok, err := t.InsertKey(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out[i] = k
			continue
		}
		if out[i], err = t.GetKey(ctx, k.Player, k.Key); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (t memTx) MarketResults(ctx context.Context, markets []string) (map[string]*wallet.MarketResult, error) {
	out := map[string]*wallet.MarketResult{}
	for _, m := range markets {
		r, err := t.GetMarketResult(ctx, m)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out[m] = r
		}
	}
	return out, nil
}

func (t memTx) LockBalances(_ context.Context, keys []wallet.AccountKey) (map[string]buzzer.Amount, error) {
	out := map[string]buzzer.Amount{}
	for _, k := range keys {
		if a, ok := t.m.accounts[k.ID()]; ok {
			out[k.ID()] = a.Balance
		}
	}
	return out, nil
}

func (t memTx) ApplyBatch(ctx context.Context, txns []*wallet.Transaction, bets []*wallet.Bet, keys []*wallet.KeyRecord) error {
	for _, txn := range txns {
		if _, err := t.ApplyTransaction(ctx, txn); err != nil {
			return err
		}
	}
	for _, b := range bets {
		if err := t.InsertBet(ctx, b); err != nil {
			return err
		}
	}
	for _, k := range keys {
		if err := t.UpdateKey(ctx, k); err != nil {
			return err
		}
	}
	return nil
}
