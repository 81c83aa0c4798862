package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/buzzer-bet/buzzer"
)

// Record types and their payloads: the contract between the capture (wallet,
// RNG, tables) and replay. doc.go says which component and key each uses.
const (
	TypeLedgerTransaction = "ledger.transaction"
	TypeBetPlaced         = "bet.placed"
	TypeBetSettled        = "bet.settled"
	TypeMarketSettled     = "market.settled"
	TypeRNGDraw           = "rng.draw"
	TypeTableEvent        = "table.event"
)

// Posting is one leg of a ledger transaction: Amount (signed) moves into
// Account, whose currency is Currency.
type Posting struct {
	Account  string          `json:"account"`
	Currency buzzer.Currency `json:"currency"`
	Amount   buzzer.Amount   `json:"amount"`
}

// LedgerTransaction is the payload of "ledger.transaction": one balanced,
// atomically applied set of postings.
type LedgerTransaction struct {
	TxID      string    `json:"tx_id"`
	Kind      string    `json:"kind"`
	Player    string    `json:"player,omitempty"`
	Reference string    `json:"reference,omitempty"`
	EffectKey string    `json:"effect_key"`
	Postings  []Posting `json:"postings"`
}

// BetLeg is one selection of a placed bet.
type BetLeg struct {
	EventID     string       `json:"event_id"`
	MarketID    string       `json:"market_id"`
	SelectionID string       `json:"selection_id"`
	Price       buzzer.Price `json:"price"`
}

// BetPlaced is the payload of "bet.placed".
type BetPlaced struct {
	BetID           string          `json:"bet_id"`
	Player          string          `json:"player"`
	Currency        buzzer.Currency `json:"currency"`
	Stake           buzzer.Amount   `json:"stake"`
	PotentialPayout buzzer.Amount   `json:"potential_payout"`
	Legs            []BetLeg        `json:"legs"`
	TxID            string          `json:"tx_id"`
}

// BetSettled is the payload of "bet.settled": the bet's settlement at
// Revision (1 for the first settlement, +1 for each resettlement). Payout is
// the bet's total return at this revision (stake included); TxID is the
// ledger transaction that moved the difference, empty if none moved.
type BetSettled struct {
	BetID     string        `json:"bet_id"`
	Revision  uint64        `json:"revision"`
	Status    string        `json:"status"`
	Payout    buzzer.Amount `json:"payout"`
	TxID      string        `json:"tx_id,omitempty"`
	SettledBy string        `json:"settled_by,omitempty"`
}

// MarketSettled is the payload of "market.settled": a market's result at
// ResultVersion (versions only grow). Outcomes is the result as the wallet
// stores it, kept verbatim.
type MarketSettled struct {
	MarketID      string          `json:"market_id"`
	ResultVersion int64           `json:"result_version"`
	Outcomes      json.RawMessage `json:"outcomes,omitempty"`
	SettledBy     string          `json:"settled_by,omitempty"`
}

// RNGDraw is the payload of "rng.draw": one draw appended to an RNG log at
// Index (0-based leaf index of its Merkle log). LeafHash is the hex tlog
// record hash of the draw's leaf, which commits to everything the log holds
// for it (values included) without copying the values into the archive:
// replay folds the leaf hashes into the log's Merkle root. The capture
// (CaptureRNGAppend) never sets Result.
type RNGDraw struct {
	DrawID    string          `json:"draw_id"`
	Log       string          `json:"log"`
	Index     uint64          `json:"index"`
	Purpose   string          `json:"purpose,omitempty"`
	Ref       string          `json:"ref,omitempty"`
	Requester string          `json:"requester,omitempty"`
	Kind      string          `json:"kind,omitempty"`
	N         int64           `json:"n,omitempty"`
	Count     int             `json:"count,omitempty"`
	LeafHash  string          `json:"leaf_hash,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
}

// TableEvent is the payload of "table.event": one action of a live table at
// its table sequence number.
type TableEvent struct {
	TableID  string          `json:"table_id"`
	TableSeq uint64          `json:"table_seq"`
	Round    string          `json:"round,omitempty"`
	Action   string          `json:"action"`
	Detail   json.RawMessage `json:"detail,omitempty"`
}

// SetPayload marshals v (one of the payload types above, or any value that
// marshals to a JSON object with integer numbers) into r.Payload in
// canonical form. The capture calls it, then Encode, inside the transaction
// that makes the change.
func (r *Record) SetPayload(v any) error {
	if c, ok := canonicalPayload(v); ok {
		r.Payload, r.canon = c, c
		return nil
	}
	js, err := json.Marshal(v)
	if err != nil {
		return invalid("audit record %s: payload does not marshal: %v", r.ID, err)
	}
	c, err := canonicalObject(js)
	if err != nil {
		return invalid("audit record %s: payload: %v", r.ID, err)
	}
	r.Payload, r.canon = c, c
	return nil
}

// decodePayload decodes p strictly: unknown fields are a contract breach.
func decodePayload(p json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// The constructors below build a record of each contract type with its
// component, key and type set by the contract, and its payload canonical.
// Where the contract ties seq to the payload (bet, RNG, table) they set it
// too; otherwise the caller passes the next sequence of the key.

// NewLedgerTransaction builds a ledger.transaction record; seq is the next
// sequence of the player (or, house-only, of the first posting's account).
func NewLedgerTransaction(id, jurisdiction string, seq uint64, at time.Time, p LedgerTransaction) (*Record, error) {
	key := p.Player
	if key == "" && len(p.Postings) > 0 {
		key = p.Postings[0].Account
	}
	return build(id, jurisdiction, ComponentWallet, key, seq, at, TypeLedgerTransaction, p)
}

// NewBetPlaced builds a bet.placed record (seq 1 of the bet).
func NewBetPlaced(id, jurisdiction string, at time.Time, p BetPlaced) (*Record, error) {
	return build(id, jurisdiction, ComponentBet, p.BetID, 1, at, TypeBetPlaced, p)
}

// NewBetSettled builds a bet.settled record (seq revision+1 of the bet).
func NewBetSettled(id, jurisdiction string, at time.Time, p BetSettled) (*Record, error) {
	return build(id, jurisdiction, ComponentBet, p.BetID, p.Revision+1, at, TypeBetSettled, p)
}

// NewMarketSettled builds a market.settled record; seq is the next sequence
// of the market (result versions may skip, sequences may not).
func NewMarketSettled(id, jurisdiction string, seq uint64, at time.Time, p MarketSettled) (*Record, error) {
	return build(id, jurisdiction, ComponentSettlement, p.MarketID, seq, at, TypeMarketSettled, p)
}

// NewRNGDraw builds an rng.draw record (seq index+1 of the log).
func NewRNGDraw(id, jurisdiction string, at time.Time, p RNGDraw) (*Record, error) {
	return build(id, jurisdiction, ComponentRNG, p.Log, p.Index+1, at, TypeRNGDraw, p)
}

// NewTableEvent builds a table.event record (seq table_seq of the table).
func NewTableEvent(id, jurisdiction string, at time.Time, p TableEvent) (*Record, error) {
	return build(id, jurisdiction, ComponentTable, p.TableID, p.TableSeq, at, TypeTableEvent, p)
}

func build(id, jurisdiction string, c Component, key string, seq uint64, at time.Time, typ string, payload any) (*Record, error) {
	r := &Record{ID: id, Jurisdiction: jurisdiction, Component: c, Key: key, Seq: seq, Time: at.UTC(), Type: typ}
	if err := r.SetPayload(payload); err != nil {
		return nil, err
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// canonicalPayload encodes the wallet's two hot payload types (a placement
// captures one of each) straight into canonical form: members in byte
// order of their names, omitempty as encoding/json applies it, strings as
// appendString writes them, the same bytes as canonicalObject(json.Marshal(v))
// (TestCanonicalPayload holds it to that) without a JSON round trip. Any
// other value, or one with a string that is not valid UTF-8 (which
// encoding/json would alter), reports false and takes the general path.
func canonicalPayload(v any) ([]byte, bool) {
	switch p := v.(type) {
	case LedgerTransaction:
		return p.appendCanonical(nil)
	case *LedgerTransaction:
		if p != nil {
			return p.appendCanonical(nil)
		}
	case TableEvent:
		return p.appendCanonical(nil)
	case *TableEvent:
		if p != nil {
			return p.appendCanonical(nil)
		}
	case BetPlaced:
		return p.appendCanonical(nil)
	case *BetPlaced:
		if p != nil {
			return p.appendCanonical(nil)
		}
	}
	return nil, false
}

func validStrings(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

func appendMember(b []byte, name string) []byte {
	b = appendString(b, name)
	return append(b, ':')
}

func (p LedgerTransaction) appendCanonical(b []byte) ([]byte, bool) {
	if !validStrings(p.TxID, p.Kind, p.Player, p.Reference, p.EffectKey) {
		return nil, false
	}
	b = append(b, '{')
	b = appendString(appendMember(b, "effect_key"), p.EffectKey)
	b = appendString(appendMember(append(b, ','), "kind"), p.Kind)
	if p.Player != "" {
		b = appendString(appendMember(append(b, ','), "player"), p.Player)
	}
	b = appendMember(append(b, ','), "postings")
	if p.Postings == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, q := range p.Postings {
			if !validStrings(q.Account, string(q.Currency)) {
				return nil, false
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(appendMember(append(b, '{'), "account"), q.Account)
			b = strconv.AppendInt(appendMember(append(b, ','), "amount"), int64(q.Amount), 10)
			b = appendString(appendMember(append(b, ','), "currency"), string(q.Currency))
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if p.Reference != "" {
		b = appendString(appendMember(append(b, ','), "reference"), p.Reference)
	}
	b = appendString(appendMember(append(b, ','), "tx_id"), p.TxID)
	return append(b, '}'), true
}

// appendCanonical writes a table event with its detail (json.Marshal of
// the table's event) re-encoded by recanon: a table's every action pays
// for this, and encoding/json's tokens cost several times more.
func (p TableEvent) appendCanonical(b []byte) ([]byte, bool) {
	if !validStrings(p.TableID, p.Round, p.Action) || !utf8.Valid(p.Detail) {
		return nil, false
	}
	b = append(b, '{')
	b = appendString(appendMember(b, "action"), p.Action)
	if len(p.Detail) > 0 {
		s := scanner{b: p.Detail}
		var ok bool
		if b, ok = s.recanon(appendMember(append(b, ','), "detail"), 1); !ok || s.i != len(p.Detail) {
			return nil, false
		}
	}
	if p.Round != "" {
		b = appendString(appendMember(append(b, ','), "round"), p.Round)
	}
	b = appendString(appendMember(append(b, ','), "table_id"), p.TableID)
	b = strconv.AppendUint(appendMember(append(b, ','), "table_seq"), p.TableSeq, 10)
	return append(b, '}'), true
}

func (p BetPlaced) appendCanonical(b []byte) ([]byte, bool) {
	if !validStrings(p.BetID, p.Player, string(p.Currency), p.TxID) {
		return nil, false
	}
	b = append(b, '{')
	b = appendString(appendMember(b, "bet_id"), p.BetID)
	b = appendString(appendMember(append(b, ','), "currency"), string(p.Currency))
	b = appendMember(append(b, ','), "legs")
	if p.Legs == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, l := range p.Legs {
			if !validStrings(l.EventID, l.MarketID, l.SelectionID) {
				return nil, false
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(appendMember(append(b, '{'), "event_id"), l.EventID)
			b = appendString(appendMember(append(b, ','), "market_id"), l.MarketID)
			b = appendString(appendMember(append(b, ','), "price"), l.Price.String())
			b = appendString(appendMember(append(b, ','), "selection_id"), l.SelectionID)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendString(appendMember(append(b, ','), "player"), p.Player)
	b = strconv.AppendInt(appendMember(append(b, ','), "potential_payout"), int64(p.PotentialPayout), 10)
	b = strconv.AppendInt(appendMember(append(b, ','), "stake"), int64(p.Stake), 10)
	b = appendString(appendMember(append(b, ','), "tx_id"), p.TxID)
	return append(b, '}'), true
}
