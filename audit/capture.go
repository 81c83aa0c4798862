package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/wallet"
)

// Outbox is the capture as a store offers it inside the transaction that
// makes a change (postgres.NewOutbox(tx), sqlite.NewOutbox(tx)): what is
// written through it commits or rolls back with the change, so a captured
// record can never be missing or extra.
type Outbox interface {
	// LastSeq returns the sequence of the stream key's last captured record
	// (0: none yet).
	LastSeq(ctx context.Context, jurisdiction string, c Component, key string) (uint64, error)
	// Write captures records in order, each the next of its stream key
	// (see Prepare).
	Write(ctx context.Context, recs ...*Record) error
}

// Prepare places a record at seq, the next sequence of its stream key as
// the outbox counts them, and returns its canonical encoding. A record with
// Seq 0 takes seq; one whose Seq is set must equal it (a record whose
// contract fixes its sequence, such as an RNG draw, arriving out of turn is
// a capture bug and fails the transaction). A record without an ID gets one
// derived from its stream key and sequence, so it is unique and the same
// however often the capturing transaction is retried; a record without a
// time gets now.
func Prepare(r *Record, seq uint64, now time.Time) ([]byte, error) {
	if r.Seq == 0 {
		r.Seq = seq
	} else if r.Seq != seq {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "audit capture out of order: %s would be seq %d, the outbox is at %d", r.StreamKey(), r.Seq, seq-1).WithReason("audit_capture_out_of_order")
	}
	if r.ID == "" {
		h := sha256.Sum256([]byte(r.Jurisdiction + "\x00" + string(r.Component) + "\x00" + r.Key + "\x00" + strconv.FormatUint(r.Seq, 10)))
		r.ID = "c-" + hex.EncodeToString(h[:20])
	}
	if r.Time.IsZero() {
		r.Time = now
	}
	r.Time = r.Time.UTC()
	return Encode(r)
}

// The Capture functions turn the wallet's changes into records of the
// payload contract (doc.go) and write them through the outbox of the
// transaction that makes the change. A store that captures calls them from
// its Tx methods, after the change itself succeeded.

// CaptureTransaction captures a ledger transaction (ledger.transaction, keyed
// by the player, or for a house-only transaction by its first account). Call
// it from wallet.Tx.ApplyTransaction.
func CaptureTransaction(ctx context.Context, ob Outbox, t *wallet.Transaction) error {
	if len(t.Postings) == 0 {
		return buzzer.Errorf(buzzer.EINTERNAL, "transaction %s has no postings to capture", t.ID)
	}
	p := LedgerTransaction{TxID: t.ID, Kind: string(t.Kind), Player: t.Player, Reference: t.Reference, EffectKey: t.EffectKey}
	for _, q := range t.Postings {
		p.Postings = append(p.Postings, Posting{Account: q.Account.ID(), Currency: q.Account.Currency, Amount: q.Amount})
	}
	key := p.Player
	if key == "" {
		key = p.Postings[0].Account
	}
	return capture(ctx, ob, t.Postings[0].Account.Jurisdiction, ComponentWallet, key, TypeLedgerTransaction, t.CreatedAt, p)
}

// CaptureBetPlaced captures a new bet (bet.placed, the bet's first record).
// Call it from wallet.Tx.InsertBet.
func CaptureBetPlaced(ctx context.Context, ob Outbox, b *wallet.Bet) error {
	p := BetPlaced{BetID: b.ID, Player: b.Player, Currency: b.Currency, Stake: b.Stake, PotentialPayout: b.PotentialPayout, TxID: b.PlacementTxn}
	for _, l := range b.Legs {
		p.Legs = append(p.Legs, BetLeg{EventID: l.EventID, MarketID: l.MarketID, SelectionID: l.SelectionID, Price: l.Price})
	}
	r := &Record{Jurisdiction: b.Jurisdiction, Component: ComponentBet, Key: b.ID, Seq: 1, Time: b.PlacedAt, Type: TypeBetPlaced}
	if err := r.SetPayload(p); err != nil {
		return err
	}
	return ob.Write(ctx, r)
}

// CaptureBetUpdated captures a settlement or resettlement of a bet
// (bet.settled, revision = the bet's settlements so far + 1), with the bet's
// status and payout after it; an accumulator brought to one market's result
// while other legs are open is captured too, with status "open". Call it
// from wallet.Tx.UpdateBet. The ledger transaction that moved the money is
// captured on its own (CaptureTransaction, reference = the bet ID).
func CaptureBetUpdated(ctx context.Context, ob Outbox, b *wallet.Bet) error {
	last, err := ob.LastSeq(ctx, b.Jurisdiction, ComponentBet, b.ID)
	if err != nil {
		return err
	}
	if last == 0 {
		return buzzer.Errorf(buzzer.EINTERNAL, "bet %s is updated but its placement was never captured", b.ID).WithReason("audit_capture_out_of_order")
	}
	var at time.Time
	if b.SettledAt != nil {
		at = *b.SettledAt
	}
	return capture(ctx, ob, b.Jurisdiction, ComponentBet, b.ID, TypeBetSettled, at,
		BetSettled{BetID: b.ID, Revision: last, Status: string(b.Status), Payout: b.Payout, SettledBy: b.SettledBy})
}

// CaptureMarketResult captures a market's result at a new version
// (market.settled). Call it from wallet.Tx.PutMarketResult: the wallet puts
// a new version with Done false and later marks that version done, which
// is not a new result and is not captured. A market result names no
// jurisdiction: pass the one the wallet's store serves.
func CaptureMarketResult(ctx context.Context, ob Outbox, jurisdiction string, r *wallet.MarketResult) error {
	if r.Done {
		return nil
	}
	outcomes, err := json.Marshal(r.Outcomes)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINTERNAL, "cannot encode the outcomes of market %s", r.MarketID)
	}
	return capture(ctx, ob, jurisdiction, ComponentSettlement, r.MarketID, TypeMarketSettled, r.UpdatedAt,
		MarketSettled{MarketID: r.MarketID, ResultVersion: r.ResultVersion, Outcomes: outcomes, SettledBy: r.SettledBy})
}

func capture(ctx context.Context, ob Outbox, jurisdiction string, c Component, key, typ string, at time.Time, payload any) error {
	r := &Record{Jurisdiction: jurisdiction, Component: c, Key: key, Time: at, Type: typ}
	if err := r.SetPayload(payload); err != nil {
		return err
	}
	return ob.Write(ctx, r)
}
