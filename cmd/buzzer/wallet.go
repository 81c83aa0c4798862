package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/table"
	"github.com/buzzer-bet/buzzer/wallet"
)

// walletStore picks the wallet's store for the node's engine.
func walletStore(s *store) wallet.Store {
	if s.pg != nil {
		return postgres.NewWalletStore(s.pg)
	}
	return sqlite.NewWalletStore(s.lite)
}

// auditedWalletStore is the wallet store whose every change also writes its
// audit record in the same transaction (the outbox the audit relay drains).
func auditedWalletStore(s *store, jurisdiction string) wallet.Store {
	if s.pg != nil {
		return postgres.NewAuditedWalletStore(s.pg, jurisdiction)
	}
	return sqlite.NewAuditedWalletStore(s.lite, jurisdiction)
}

// startWallet builds the wallet service on the node's store, finishes any
// settlement a crash interrupted, and runs the idempotency-key purger until
// shutdown.
func startWallet(ctx context.Context, cfg *Config, s *store, prices wallet.PriceSource, log *slog.Logger, onClose func(func())) (*wallet.Service, error) {
	wcfg := cfg.Wallet
	wcfg.Jurisdiction = cfg.Jurisdiction
	// Every money request of a node comes through a location gate; the
	// wallet refuses one that arrives without its decision, so a route
	// mounted without the gate fails closed instead of moving money.
	wcfg.RequireDecision = true
	svc, err := wallet.New(wcfg, wallet.Deps{Store: auditedWalletStore(s, cfg.Jurisdiction), Prices: prices})
	if err != nil {
		return nil, err
	}
	if err := svc.ResumeSettlements(ctx); err != nil {
		return nil, fmt.Errorf("resume interrupted settlements: %w", err)
	}
	purgeCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		svc.RunPurger(purgeCtx, time.Hour, func(err error) { log.Error("idempotency key purge", "err", err) })
	}()
	onClose(func() { cancel(); wg.Wait() })
	return svc, nil
}

// runLedgerCheck verifies the ledger invariants of a store: exit 0 when they
// hold, exit 1 with the problems listed when they do not.
func runLedgerCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ledger check", flag.ContinueOnError)
	storeURL := fs.String("store", "", "store URL: sqlite://PATH or postgres://... (required)")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	s, err := openStoreURL(ctx, *storeURL)
	if err != nil {
		return err
	}
	defer s.close()
	fmt.Fprintln(stderr, "ledger check: reading postings, balances, bets and keys ...")
	rep, err := wallet.Check(ctx, walletStore(s))
	if err != nil {
		return err
	}
	if *jsonOut {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "accounts %d  bets %d  totals %v\n", rep.Accounts, rep.Bets, rep.Totals)
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "PROBLEM:", p)
		}
	}
	if !rep.OK {
		return exitFailure{msg: fmt.Sprintf("ledger check failed: %d problem(s)", len(rep.Problems))}
	}
	fmt.Fprintln(stdout, "ledger check: PASS")
	return nil
}

// tableWallet moves live tables' money through the wallet: a stake or a
// payout is one idempotent ledger transaction under the table's key.
type tableWallet struct{ svc *wallet.Service }

var _ table.Wallet = tableWallet{}

func (w tableWallet) Debit(ctx context.Context, op table.WalletOp) error {
	_, err := w.svc.TableStake(ctx, op.Player, op.Key, tableMoney(op))
	return tableWalletErr(err)
}

func (w tableWallet) Credit(ctx context.Context, op table.WalletOp) error {
	_, err := w.svc.TablePayout(ctx, op.Player, op.Key, tableMoney(op))
	return tableWalletErr(err)
}

func tableMoney(op table.WalletOp) wallet.TableMoneyRequest {
	return wallet.TableMoneyRequest{Amount: op.Amount, Currency: op.Currency, Reference: op.Key}
}

// tableWalletErr keeps the table's contract: a key still in flight is an
// unknown outcome (retry with the same key), not a refusal.
func tableWalletErr(err error) error {
	if err != nil && buzzer.ErrorReason(err) == "idempotency_key_in_flight" {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the table movement is still in flight")
	}
	return err
}
