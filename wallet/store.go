package wallet

import (
	"context"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// Store is the wallet's storage. An engine runs InTx under SERIALIZABLE
// isolation (or an engine's equivalent, such as SQLite's single writer) and
// reruns fn when the attempt loses a serialization race, so fn must keep no
// side effects outside tx and may run more than once. Errors fn returns
// roll the transaction back and come back unchanged.
type Store interface {
	InTx(ctx context.Context, fn func(Tx) error) error
}

// Tx is what the wallet does inside one transaction. Absent rows are
// reported as (nil, nil) by the Get methods, never as errors.
type Tx interface {
	// InsertKey inserts k if no record for (k.Player, k.Key) exists and
	// reports whether it did (the INSERT ... ON CONFLICT DO NOTHING shape).
	InsertKey(ctx context.Context, k *KeyRecord) (bool, error)
	GetKey(ctx context.Context, player, key string) (*KeyRecord, error)
	// UpdateKey overwrites the record for (k.Player, k.Key).
	UpdateKey(ctx context.Context, k *KeyRecord) error
	// DeleteKey removes the record if its owner token is owner.
	DeleteKey(ctx context.Context, player, key, owner string) error
	// PurgeKeys deletes up to limit records whose ExpiresAt is before t.
	PurgeKeys(ctx context.Context, before time.Time, limit int) (int, error)

	// ApplyTransaction stores t and its postings and adds each posting to its
	// account's balance (creating the account at zero first), returning the
	// balances after, in posting order. It enforces no sign rule: the wallet does.
	ApplyTransaction(ctx context.Context, t *Transaction) ([]buzzer.Amount, error)
	// LockAccounts takes the write locks of the given accounts (creating
	// missing ones at zero) in ascending account-ID order, the one order every
	// transaction uses, so a transaction that goes on to post to many
	// accounts cannot deadlock with others. Engines that serialize writers
	// may do nothing.
	LockAccounts(ctx context.Context, keys []AccountKey) error
	// Balance returns an account's balance (zero if it does not exist).
	Balance(ctx context.Context, k AccountKey) (buzzer.Amount, error)
	// Accounts returns every account of owner.
	Accounts(ctx context.Context, owner string) ([]Account, error)
	// Entries returns owner's postings newest first, strictly older than
	// before (zero cursor: from the newest), at most limit.
	Entries(ctx context.Context, owner string, before EntryCursor, limit int) ([]Entry, error)

	InsertBet(ctx context.Context, b *Bet) error
	GetBet(ctx context.Context, player, id string) (*Bet, error)
	// UpdateBet overwrites the bet's mutable fields and its legs' results.
	UpdateBet(ctx context.Context, b *Bet) error
	// ListBets returns player's bets newest first, strictly older than
	// before, optionally only those with status, at most limit.
	ListBets(ctx context.Context, player string, status BetStatus, before BetCursor, limit int) ([]*Bet, error)
	// PendingBets returns up to limit bets with a leg on market whose leg
	// result version is below version.
	PendingBets(ctx context.Context, market string, version int64, limit int) ([]BetRef, error)

	GetMarketResult(ctx context.Context, market string) (*MarketResult, error)
	// PutMarketResult inserts or overwrites the market's result record.
	PutMarketResult(ctx context.Context, r *MarketResult) error
	// UnfinishedMarketResults lists markets whose settlement has not completed.
	UnfinishedMarketResults(ctx context.Context, limit int) ([]string, error)

	// Group commit (batch.go): several requests' effects in one
	// transaction, each step one call for all of them.

	// ClaimKeys inserts every record whose (Player, Key) has none yet (the
	// pairs are distinct) and returns, in order, the record now stored for
	// each: the one given when it was inserted, the existing one otherwise.
	ClaimKeys(ctx context.Context, recs []*KeyRecord) ([]*KeyRecord, error)
	// MarketResults returns the result records of those of markets that
	// have one, by market ID.
	MarketResults(ctx context.Context, markets []string) (map[string]*MarketResult, error)
	// LockBalances takes the write locks of the accounts (creating missing
	// ones at zero) in ascending account-ID order, as LockAccounts does, and
	// returns their balances by account ID (an absent ID means zero).
	LockBalances(ctx context.Context, keys []AccountKey) (map[string]buzzer.Amount, error)
	// ApplyBatch stores txns with their postings and adds the postings to
	// the balances (creating accounts at zero first), inserts bets, and
	// overwrites the key records (which exist), all at once. It enforces no
	// rule: the wallet checked the balances under LockBalances' locks.
	ApplyBatch(ctx context.Context, txns []*Transaction, bets []*Bet, keys []*KeyRecord) error

	// The checker's scans; they read everything and are for audits. The
	// callbacks must not use the Tx.
	ScanAccounts(ctx context.Context, fn func(Account) error) error
	// PostingSums returns Σ postings per account ID.
	PostingSums(ctx context.Context) (map[string]buzzer.Amount, error)
	// DuplicateEffects returns effect keys with more than one transaction,
	// with their transaction counts.
	DuplicateEffects(ctx context.Context) (map[string]int, error)
	// ScanBets calls fn for every bet.
	ScanBets(ctx context.Context, fn func(*Bet) error) error
}

// KeyState is the life cycle of an idempotency key record.
type KeyState string

const (
	KeyInFlight  KeyState = "in_flight"
	KeyCompleted KeyState = "completed"
)

// KeyRecord is a stored idempotency key: who sent it, what request it was
// for, and, once completed, the exact response.
type KeyRecord struct {
	Player      string
	Key         string
	Fingerprint string // hex SHA-256 of method, route and canonical body
	State       KeyState
	// Owner is the token of the attempt executing the request; a new attempt
	// may take the key over only after LockedUntil.
	Owner       string
	LockedUntil time.Time
	Status      int
	Body        []byte
	EffectID    string // the ledger transaction the request caused
	CreatedAt   time.Time
	ExpiresAt   time.Time
}

// BetRef points at a bet from an index.
type BetRef struct {
	Player string
	BetID  string
}

// MarketResult is the durable record of a market's settlement: the result at
// its version, who gave it, and whether every bet on it has been brought to it.
type MarketResult struct {
	MarketID      string
	ResultVersion int64
	Fingerprint   string
	Outcomes      []Outcome
	SettledBy     string
	Done          bool
	UpdatedAt     time.Time
}
