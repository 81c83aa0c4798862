package table

import (
	"context"
	"errors"
	"fmt"

	"github.com/buzzer-bet/buzzer"
)

// WalletOp is one money movement for a table: a stake taken (Debit) or a
// settlement paid (Credit).
type WalletOp struct {
	// Key is the idempotency key, WalletKey(Table, Round, Seat, Action): the
	// same decision always yields the same key, so a retry or a replay on
	// another node after failover moves money once.
	Key      string          `json:"key"`
	Table    string          `json:"table"`
	Round    int64           `json:"round"`
	Seat     int             `json:"seat"`
	Player   string          `json:"player"`
	Action   string          `json:"action"` // "bet", "double#3", "split#1", "insure#0", "payout"
	Amount   buzzer.Amount   `json:"amount"`
	Currency buzzer.Currency `json:"currency"`
}

// WalletKey derives the idempotency key of a table's money movement.
func WalletKey(table string, round int64, seat int, action string) string {
	return fmt.Sprintf("table/%s/round/%d/seat/%d/%s", table, round, seat, action)
}

// Wallet moves table money. Both methods are idempotent on op.Key: a repeat
// with the same key and op has the effect of the first and returns its
// result. An error whose code is EUNAVAILABLE, ETIMEOUT or EINTERNAL (or a
// context error) means the outcome is unknown and the table retries with the
// same key; any other code (e.g. ECONFLICT for insufficient funds) is a
// definite refusal and the action is not taken.
type Wallet interface {
	Debit(ctx context.Context, op WalletOp) error
	Credit(ctx context.Context, op WalletOp) error
}

// ShoeRequest asks for one shuffled shoe for a table.
type ShoeRequest struct {
	Table string `json:"table"`
	Shoe  int64  `json:"shoe"` // the table's shoe counter, 1-based
	Decks int    `json:"decks"`
}

// ShuffledShoe is a shoe from the RNG service: Cards in dealing order and Ref,
// the reference of the logged draw that produced it, so every round can be
// re-derived from the RNG log.
type ShuffledShoe struct {
	Ref   string `json:"ref"`
	Cards []Card `json:"cards"`
}

// Shuffler returns freshly shuffled shoes. The table checks that a shoe holds
// exactly Decks full decks.
type Shuffler interface {
	Shuffle(ctx context.Context, req ShoeRequest) (ShuffledShoe, error)
}

// Publisher pushes committed events to live subscribers (a centrifuge
// channel per table). It must not block: a slow subscriber is dropped and
// resumes from its last sequence through Service.Events.
type Publisher interface {
	Publish(table string, events []Event)
}

// uncertain reports whether a wallet error leaves the outcome unknown.
func uncertain(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch buzzer.ErrorCode(err) {
	case buzzer.EUNAVAILABLE, buzzer.ETIMEOUT, buzzer.EINTERNAL:
		return true
	}
	return false
}
