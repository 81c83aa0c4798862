package wallet

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/buzzer-bet/buzzer"
)

// AccountKind says what an account holds and whether it may go negative.
type AccountKind string

// Player-side kinds lead with the player's ID in every key; house-side kinds
// are split into buckets so concurrent transactions rarely touch one row.
const (
	// KindCash is a player's withdrawable balance. Never negative.
	KindCash AccountKind = "cash"
	// KindReceivable is what a player owes the house after a resettlement took
	// back more than the cash balance held. Zero or negative.
	KindReceivable AccountKind = "receivable"

	// KindStakesHeld holds the stakes of open bets. Never negative: a bet's
	// stake leaves through the same bucket it entered.
	KindStakesHeld AccountKind = "stakes_held"
	// KindRevenue receives the stakes of settled bets.
	KindRevenue AccountKind = "revenue"
	// KindPayouts pays settled bets' returns; it runs negative.
	KindPayouts AccountKind = "payouts"
	// KindDepositsClearing is the counterpart of deposits; it runs negative
	// (money that came in from outside the ledger).
	KindDepositsClearing AccountKind = "deposits_clearing"
	// KindWithdrawalsClearing is the counterpart of withdrawals (money owed
	// to the outside, paid out by the payments side).
	KindWithdrawalsClearing AccountKind = "withdrawals_clearing"
)

// HouseOwner is the owner of every house-side account.
const HouseOwner = "~house"

// AllowsNegative reports whether a balance of kind k may go below zero.
func (k AccountKind) AllowsNegative() bool {
	switch k {
	case KindCash, KindStakesHeld, KindWithdrawalsClearing:
		return false
	default:
		return true
	}
}

// AllowsPositive reports whether a balance of kind k may go above zero.
func (k AccountKind) AllowsPositive() bool { return k != KindReceivable }

// IsHouse reports whether k is a house-side (bucketed) kind.
func (k AccountKind) IsHouse() bool {
	switch k {
	case KindStakesHeld, KindRevenue, KindPayouts, KindDepositsClearing, KindWithdrawalsClearing:
		return true
	default:
		return false
	}
}

// Valid reports whether k is a known kind.
func (k AccountKind) Valid() bool {
	switch k {
	case KindCash, KindReceivable, KindStakesHeld, KindRevenue, KindPayouts, KindDepositsClearing, KindWithdrawalsClearing:
		return true
	default:
		return false
	}
}

// AccountKey names an account: player accounts by (player, jurisdiction,
// currency, kind), house accounts by (jurisdiction, currency, kind, bucket).
type AccountKey struct {
	Owner        string // player ID, or HouseOwner
	Jurisdiction string
	Currency     buzzer.Currency
	Kind         AccountKind
	Bucket       int // 0 for player accounts
}

// ID is the account's stable storage key. It leads with the owner so one
// player's rows sit together and house rows are spread by bucket.
func (k AccountKey) ID() string {
	return k.Owner + "|" + k.Jurisdiction + "|" + string(k.Currency) + "|" + string(k.Kind) + "|" + strconv.Itoa(k.Bucket)
}

// ParseAccountID is the inverse of AccountKey.ID.
func ParseAccountID(id string) (AccountKey, error) {
	p := strings.Split(id, "|")
	if len(p) != 5 {
		return AccountKey{}, buzzer.Errorf(buzzer.EINVALID, "account id %q is malformed", id)
	}
	b, err := strconv.Atoi(p[4])
	if err != nil || b < 0 {
		return AccountKey{}, buzzer.Errorf(buzzer.EINVALID, "account id %q has a bad bucket", id)
	}
	k := AccountKey{Owner: p[0], Jurisdiction: p[1], Currency: buzzer.Currency(p[2]), Kind: AccountKind(p[3]), Bucket: b}
	if !k.Kind.Valid() {
		return AccountKey{}, buzzer.Errorf(buzzer.EINVALID, "account id %q has an unknown kind", id)
	}
	return k, nil
}

// Account is an account with its stored balance.
type Account struct {
	AccountKey
	Balance buzzer.Amount
}

// Posting moves Amount (signed) into one account.
type Posting struct {
	Account AccountKey
	Amount  buzzer.Amount
}

// TxnKind classifies ledger transactions.
type TxnKind string

const (
	TxnDeposit    TxnKind = "deposit"
	TxnWithdrawal TxnKind = "withdrawal"
	TxnBetPlaced  TxnKind = "bet_placed"
	TxnBetSettled TxnKind = "bet_settled"
)

// Transaction is a balanced set of postings, applied atomically.
type Transaction struct {
	ID        string
	Kind      TxnKind
	Player    string // the player whose money moved ("" for house-only)
	Reference string // bet ID, etc.
	// EffectKey names the request that caused this transaction (the
	// idempotency key scoped by player, or a settlement's market/version/bet).
	// One effect key never has two transactions: the checker verifies it.
	EffectKey string
	CreatedAt time.Time
	// Decision is the compliance decision that authorized a deposit,
	// withdrawal or bet (nil for settlements and table money).
	Decision *Decision
	Postings []Posting
}

// Validate checks the double-entry rules: at least two postings, no zero
// posting, one posting per account, and a zero sum per currency.
func (t *Transaction) Validate() error {
	if t.ID == "" || t.Kind == "" || t.EffectKey == "" {
		return buzzer.Errorf(buzzer.EINTERNAL, "transaction lacks id, kind or effect key")
	}
	if len(t.Postings) < 2 {
		return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s has %d postings; at least two are needed", t.ID, len(t.Postings))
	}
	sums := map[buzzer.Currency]int64{}
	seen := map[string]bool{}
	for _, p := range t.Postings {
		if p.Amount == 0 {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s has a zero posting", t.ID)
		}
		if !p.Account.Kind.Valid() {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s posts to unknown kind %q", t.ID, p.Account.Kind)
		}
		id := p.Account.ID()
		if seen[id] {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s posts twice to %s", t.ID, id)
		}
		seen[id] = true
		s, ok := addChecked(sums[p.Account.Currency], int64(p.Amount))
		if !ok {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s overflows", t.ID)
		}
		sums[p.Account.Currency] = s
	}
	for c, s := range sums {
		if s != 0 {
			return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s does not balance in %s (sum %d)", t.ID, c, s)
		}
	}
	return nil
}

func addChecked(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

// netPostings merges postings to the same account and drops zeros, in a
// stable order (by account ID), so a transaction built from several parts
// has one posting per account.
func netPostings(ps []Posting) []Posting {
	sum := map[string]buzzer.Amount{}
	key := map[string]AccountKey{}
	for _, p := range ps {
		id := p.Account.ID()
		sum[id] += p.Amount
		key[id] = p.Account
	}
	ids := make([]string, 0, len(sum))
	for id, a := range sum {
		if a != 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	out := make([]Posting, 0, len(ids))
	for _, id := range ids {
		out = append(out, Posting{Account: key[id], Amount: sum[id]})
	}
	return out
}

// checkBalances enforces the sign rules on the balances a transaction left.
func checkBalances(t *Transaction, after []buzzer.Amount) error {
	if len(after) != len(t.Postings) {
		return buzzer.Errorf(buzzer.EINTERNAL, "store returned %d balances for %d postings", len(after), len(t.Postings))
	}
	for i, p := range t.Postings {
		if after[i] < 0 && !p.Account.Kind.AllowsNegative() {
			if p.Account.Kind == KindCash {
				return buzzer.Errorf(buzzer.EUNPROCESSABLE, "Insufficient funds.").WithReason("insufficient_funds")
			}
			return buzzer.Errorf(buzzer.EINTERNAL, "account %s would go negative", p.Account.ID())
		}
		if after[i] > 0 && !p.Account.Kind.AllowsPositive() {
			return buzzer.Errorf(buzzer.EINTERNAL, "account %s would go positive", p.Account.ID())
		}
	}
	return nil
}

// Entry is one posting as a player sees it in their history.
type Entry struct {
	TransactionID string          `json:"transaction_id"`
	Kind          TxnKind         `json:"kind"`
	Account       AccountKind     `json:"account"`
	Amount        buzzer.Amount   `json:"amount"`
	Currency      buzzer.Currency `json:"currency"`
	Reference     string          `json:"reference,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	// Decision is the compliance decision stored with the entry's
	// transaction, if it had one.
	Decision *Decision `json:"decision,omitempty"`
}

// EntryCursor pages a player's entries newest first.
type EntryCursor struct {
	CreatedAt     time.Time
	TransactionID string
}

// String encodes the cursor opaquely for clients.
func (c EntryCursor) String() string {
	if c.TransactionID == "" {
		return ""
	}
	return fmt.Sprintf("%d.%s", c.CreatedAt.UnixNano(), c.TransactionID)
}

// ParseEntryCursor decodes EntryCursor.String; "" is the first page.
func ParseEntryCursor(s string) (EntryCursor, error) {
	if s == "" {
		return EntryCursor{}, nil
	}
	ns, id, ok := strings.Cut(s, ".")
	n, err := strconv.ParseInt(ns, 10, 64)
	if !ok || err != nil || id == "" || len(id) > 64 {
		return EntryCursor{}, buzzer.Errorf(buzzer.EINVALID, "cursor is malformed")
	}
	return EntryCursor{CreatedAt: time.Unix(0, n).UTC(), TransactionID: id}, nil
}
