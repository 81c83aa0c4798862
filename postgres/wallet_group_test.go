package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/wallet"
	"github.com/buzzer-bet/buzzer/wallet/wallettest"
)

// TestGroupCommitAuditSequences: the capturing group commit numbers each
// stream's records exactly as Outbox.Write does one at a time, whatever
// else shares the batch. A new player's stream counter, taken (as a
// placeholder) before the group knows whether the player's request is
// written, exists after commit only if a record was; resends and refusals
// in the same batches capture nothing; every outbox record decodes to the
// sequence its row holds, and every counter equals its stream's last record.
func TestGroupCommitAuditSequences(t *testing.T) {
	db := enginetest.Postgres(t)
	ctx := context.Background()
	cfg := wallet.DefaultConfig()
	e := wallettest.NewEnv(t, postgres.NewAuditedWalletStore(db, "default"), &cfg)
	req := wallet.PlaceBetRequest{Stake: 100, Currency: "USD", PriceChange: wallet.PriceAny,
		Legs: []wallet.LegRequest{{EventID: "ev1", MarketID: "m1", SelectionID: "s1", Price: 20000}}}

	// Concurrent first requests of new players, so they share batches:
	// even players withdraw what they do not have (refused, nothing
	// captured), odd ones deposit, then bet twice; every request is sent
	// twice with its key.
	const players = 24
	var wg sync.WaitGroup
	errs := make(chan error, 8*players)
	for p := range players {
		wg.Add(1)
		go func() {
			defer wg.Done()
			player := "gp-" + string(rune('a'+p))
			for range 2 {
				if p%2 == 0 {
					_, err := e.Svc.Withdraw(ctx, player, "w", wallet.MoneyRequest{Amount: 500, Currency: "USD"})
					if buzzer.ErrorReason(err) != "insufficient_funds" {
						errs <- err
					}
					continue
				}
				if _, err := e.Svc.Deposit(ctx, player, "d", wallet.MoneyRequest{Amount: 1000, Currency: "USD"}); err != nil {
					errs <- err
				}
			}
			if p%2 == 1 {
				for _, key := range []string{"b1", "b2", "b1", "b2"} {
					if _, err := e.Svc.PlaceBet(ctx, player, key, req); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("request failed: %v", err)
	}

	counters := map[string]int64{}
	rows, err := db.Pool.Query(ctx, `SELECT stream_key, seq FROM audit_sequences`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var seq int64
		if err := rows.Scan(&k, &seq); err != nil {
			t.Fatal(err)
		}
		counters[k] = seq
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	last := map[string]int64{}
	count := map[string]int64{}
	types := map[string]int{}
	rows, err = db.Pool.Query(ctx, `SELECT stream_key, seq, record FROM audit_outbox ORDER BY stream_key, seq`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var seq int64
		var data []byte
		if err := rows.Scan(&k, &seq, &data); err != nil {
			t.Fatal(err)
		}
		r, err := audit.DecodeCanonical(data)
		if err != nil {
			t.Fatalf("outbox record %s/%d: %v", k, seq, err)
		}
		if r.StreamKey() != k || int64(r.Seq) != seq {
			t.Fatalf("outbox row %s/%d holds record %s/%d", k, seq, r.StreamKey(), r.Seq)
		}
		count[k]++
		if seq != count[k] {
			t.Fatalf("stream %s: record %d is seq %d (gap or repeat)", k, count[k], seq)
		}
		last[k] = seq
		types[r.Type]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for k, seq := range counters {
		if last[k] != seq {
			t.Errorf("counter %s = %d, its last record is %d", k, seq, last[k])
		}
	}
	for k := range last {
		if _, ok := counters[k]; !ok {
			t.Errorf("stream %s has records and no counter", k)
		}
	}
	// Odd players: 1 deposit + 2 bets = 3 ledger records each, 2 bet records.
	want := map[string]int{audit.TypeLedgerTransaction: 3 * players / 2, audit.TypeBetPlaced: 2 * players / 2}
	for typ, n := range want {
		if types[typ] != n {
			t.Errorf("%d %s records, want %d (all types: %v)", types[typ], typ, n, types)
		}
	}
	for p := 0; p < players; p += 2 {
		k := "default/wallet/gp-" + string(rune('a'+p))
		if _, ok := counters[k]; ok {
			t.Errorf("refused new player's stream %s has a counter", k)
		}
	}
}
