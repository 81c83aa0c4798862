package wallet

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"

	"github.com/buzzer-bet/buzzer"
)

// MaxRequestBytes bounds a decoded request body.
const MaxRequestBytes = 64 << 10

// maxIDLen bounds event, market, selection, bet and player IDs.
const maxIDLen = 64

// MoneyRequest is the body of a deposit or a withdrawal.
type MoneyRequest struct {
	Amount   buzzer.Amount   `json:"amount"`
	Currency buzzer.Currency `json:"currency"`
	// Decision is the compliance decision the transport made for this
	// request. It never comes from the client's body and is not part of the
	// idempotency fingerprint.
	Decision *Decision `json:"-"`
}

// Validate checks the shape; limits are the service's.
func (r *MoneyRequest) Validate() error {
	if r.Amount <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "amount must be a positive integer of minor units")
	}
	return r.Currency.Validate()
}

// LegRequest is one selection the player wants, at the price they saw.
type LegRequest struct {
	EventID     string       `json:"event_id"`
	MarketID    string       `json:"market_id"`
	SelectionID string       `json:"selection_id"`
	Price       buzzer.Price `json:"price"`
}

// PlaceBetRequest is the body of POST /v1/bets.
type PlaceBetRequest struct {
	Stake       buzzer.Amount   `json:"stake"`
	Currency    buzzer.Currency `json:"currency"`
	Legs        []LegRequest    `json:"legs"`
	PriceChange PriceChange     `json:"price_change"`
	// Decision is as in MoneyRequest: set by the transport, not the client,
	// and not fingerprinted.
	Decision *Decision `json:"-"`
}

// Validate checks the shape of r (maxLegs bounds accumulators) and fills the
// default policy (exact). Limits on stake and payout are the service's.
func (r *PlaceBetRequest) Validate(maxLegs int) error {
	if r.Stake <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "stake must be a positive integer of minor units")
	}
	if err := r.Currency.Validate(); err != nil {
		return err
	}
	if r.PriceChange == "" {
		r.PriceChange = PriceExact
	}
	switch r.PriceChange {
	case PriceExact, PriceBetter, PriceAny:
	default:
		return buzzer.Errorf(buzzer.EINVALID, "price_change must be exact, better or any")
	}
	if len(r.Legs) == 0 || len(r.Legs) > maxLegs {
		return buzzer.Errorf(buzzer.EINVALID, "a bet needs 1 to %d legs", maxLegs)
	}
	events := map[string]bool{}
	for i, l := range r.Legs {
		for _, id := range []string{l.EventID, l.MarketID, l.SelectionID} {
			if err := validID(id); err != nil {
				return buzzer.Errorf(buzzer.EINVALID, "leg %d: %s", i+1, buzzer.ErrorMessage(err))
			}
		}
		if l.Price < buzzer.MinPrice || l.Price > buzzer.MaxPrice {
			return buzzer.Errorf(buzzer.EINVALID, "leg %d: price must be between %s and %s", i+1, buzzer.MinPrice, buzzer.MaxPrice)
		}
		if events[l.EventID] {
			return buzzer.Errorf(buzzer.EINVALID, "an accumulator cannot have two legs from event %q", l.EventID)
		}
		events[l.EventID] = true
	}
	return nil
}

// Outcome is one selection's result in a market result.
type Outcome struct {
	SelectionID    string    `json:"selection_id"`
	Result         LegResult `json:"result"`
	VoidFactor     Factor    `json:"void_factor"`
	DeadHeatFactor Factor    `json:"dead_heat_factor"`
}

// SettleRequest is the body of POST /admin/v1/markets/{id}/result.
type SettleRequest struct {
	ResultVersion int64     `json:"result_version"`
	Outcomes      []Outcome `json:"outcomes"`
}

// Validate checks the shape of r. A missing dead_heat_factor means 1 (no
// dead heat); a void result means void_factor 1.
func (r *SettleRequest) Validate() error {
	if r.ResultVersion <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "result_version must be a positive integer")
	}
	if len(r.Outcomes) == 0 || len(r.Outcomes) > 1000 {
		return buzzer.Errorf(buzzer.EINVALID, "a result needs 1 to 1000 outcomes")
	}
	seen := map[string]bool{}
	for i := range r.Outcomes {
		o := &r.Outcomes[i]
		if err := validID(o.SelectionID); err != nil {
			return buzzer.Errorf(buzzer.EINVALID, "outcome %d: %s", i+1, buzzer.ErrorMessage(err))
		}
		if seen[o.SelectionID] {
			return buzzer.Errorf(buzzer.EINVALID, "selection %q has two outcomes", o.SelectionID)
		}
		seen[o.SelectionID] = true
		switch o.Result {
		case ResultWon, ResultLost:
		case ResultVoid:
			o.VoidFactor = FactorOne
		default:
			return buzzer.Errorf(buzzer.EINVALID, "outcome %d: result must be won, lost or void", i+1)
		}
		if o.DeadHeatFactor == 0 {
			o.DeadHeatFactor = FactorOne
		}
		if o.VoidFactor < 0 || o.VoidFactor > FactorOne || o.DeadHeatFactor < 0 || o.DeadHeatFactor > FactorOne {
			return buzzer.Errorf(buzzer.EINVALID, "outcome %d: factors must be between 0 and 1", i+1)
		}
	}
	return nil
}

func validID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return buzzer.Errorf(buzzer.EINVALID, "ids must be 1 to %d characters", maxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return buzzer.Errorf(buzzer.EINVALID, "ids may hold only letters, digits and - _ . :")
		}
	}
	return nil
}

// DecodeStrict decodes one JSON object from data into v, refusing unknown
// fields, trailing data and bodies over MaxRequestBytes.
func DecodeStrict(data []byte, v any) error {
	if len(data) > MaxRequestBytes {
		return buzzer.Errorf(buzzer.ETOOLARGE, "request body is over %d bytes", MaxRequestBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var be *buzzer.Error
		if errors.As(err, &be) {
			return be
		}
		return buzzer.Wrap(err, buzzer.EINVALID, "request body is not valid JSON for this request")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return buzzer.Errorf(buzzer.EINVALID, "request body has data after the JSON object")
	}
	return nil
}

// DecodePlaceBet decodes and validates a bet request body.
func DecodePlaceBet(data []byte, maxLegs int) (PlaceBetRequest, error) {
	var r PlaceBetRequest
	if err := DecodeStrict(data, &r); err != nil {
		return PlaceBetRequest{}, err
	}
	if err := r.Validate(maxLegs); err != nil {
		return PlaceBetRequest{}, err
	}
	return r, nil
}

// DecodeMoney decodes and validates a deposit or withdrawal body.
func DecodeMoney(data []byte) (MoneyRequest, error) {
	var r MoneyRequest
	if err := DecodeStrict(data, &r); err != nil {
		return MoneyRequest{}, err
	}
	if err := r.Validate(); err != nil {
		return MoneyRequest{}, err
	}
	return r, nil
}

// DecodeSettle decodes and validates a market result body.
func DecodeSettle(data []byte) (SettleRequest, error) {
	var r SettleRequest
	if err := DecodeStrict(data, &r); err != nil {
		return SettleRequest{}, err
	}
	if err := r.Validate(); err != nil {
		return SettleRequest{}, err
	}
	return r, nil
}
