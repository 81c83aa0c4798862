package wallet

import (
	"context"

	"github.com/buzzer-bet/buzzer"
)

// Table money: a live table's stakes leave the player's cash for the house's
// revenue, and its payouts come from the house's payouts account, each as one
// idempotent ledger transaction keyed by (table, round, seat, action), so a
// table replaying a decision after failover moves money once.
const (
	TxnTableStake  TxnKind = "table_stake"
	TxnTablePayout TxnKind = "table_payout"

	RouteTableStake  = "TABLE stake"
	RouteTablePayout = "TABLE payout"
)

// TableMoneyRequest is one table money movement. Reference names the table
// decision (table/round/seat/action) and is stored with the transaction.
type TableMoneyRequest struct {
	Amount    buzzer.Amount   `json:"amount"`
	Currency  buzzer.Currency `json:"currency"`
	Reference string          `json:"reference"`
}

// Validate checks the shape.
func (r *TableMoneyRequest) Validate() error {
	if r.Amount <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "amount must be a positive integer of minor units")
	}
	if r.Reference == "" || len(r.Reference) > 255 {
		return buzzer.Errorf(buzzer.EINVALID, "a table movement needs a reference of 1 to 255 characters")
	}
	return r.Currency.Validate()
}

// TableStake takes a table stake from the player's cash (refused with
// ECONFLICT reason insufficient_funds when the cash does not cover it).
func (s *Service) TableStake(ctx context.Context, player, key string, req TableMoneyRequest) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Amount > s.cfg.MaxStake {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "A table stake may be at most %d minor units.", s.cfg.MaxStake).WithReason("stake_limit")
	}
	return s.tableMoney(ctx, player, key, RouteTableStake, TxnTableStake, req, KindRevenue, -req.Amount)
}

// TablePayout pays a table's return into the player's cash.
func (s *Service) TablePayout(ctx context.Context, player, key string, req TableMoneyRequest) (*Response, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	if req.Amount > s.cfg.MaxPayout {
		return nil, buzzer.Errorf(buzzer.EUNPROCESSABLE, "A table payout may be at most %d minor units.", s.cfg.MaxPayout).WithReason("payout_limit")
	}
	return s.tableMoney(ctx, player, key, RouteTablePayout, TxnTablePayout, req, KindPayouts, req.Amount)
}

func (s *Service) tableMoney(ctx context.Context, player, key, route string, kind TxnKind, req TableMoneyRequest, house AccountKind, delta buzzer.Amount) (*Response, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	fp, err := Fingerprint(route, req)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, player, key, fp, 0, s.transfer(player, kind, req.Reference, req.Amount, req.Currency, house, delta, nil))
}
