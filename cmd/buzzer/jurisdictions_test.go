package main

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// `buzzer serve --jurisdictions NJ,PA` holds both jurisdictions in one
// process, each in its own store: an NJ account's money and bets land only
// in NJ's store, a PA account's only in PA's; a player located outside the
// account's jurisdiction, or of a jurisdiction not held, changes nothing;
// each jurisdiction's audit archive rebuilds its own store and not the
// other's.
func TestServeHoldsEachJurisdictionInItsOwnStore(t *testing.T) {
	dataDir := t.TempDir()
	player, admin, stop := startServe(t, dataDir, "--jurisdictions", "NJ,PA", "--log-level", "warn")
	alice := devToken(t, dataDir, "--player", "alice", "--jurisdiction", "NJ")
	bob := devToken(t, dataDir, "--player", "bob", "--jurisdiction", "PA")
	carol := devToken(t, dataDir, "--player", "carol", "--jurisdiction", "NY")
	leg := openLeg(t, player)
	const dep = `{"amount":10000,"currency":"USD"}`
	bet := `{"stake":500,"currency":"USD","price_change":"any","legs":[` + leg + `]}`

	aliceAt := geotoken(t, dataDir, player, alice, trentonNJ)
	if code, _, body := send(t, player+"/v1/wallet/deposits", alice, aliceAt, "dep", dep); code != http.StatusCreated {
		t.Fatalf("NJ deposit from Trenton: %d %s", code, body)
	}
	if code, _, body := send(t, player+"/v1/bets", alice, "", "bet", bet); code != http.StatusCreated {
		t.Fatalf("NJ bet: %d %s", code, body)
	}
	// PA's account located in NJ is refused before anything is written.
	if code, reason, body := send(t, player+"/v1/wallet/deposits", bob, geotoken(t, dataDir, player, bob, trentonNJ), "dep", dep); code != http.StatusForbidden || reason != "jurisdiction_mismatch" {
		t.Fatalf("PA account in Trenton: %d %s, want 403 jurisdiction_mismatch", code, body)
	}
	bobAt := geotoken(t, dataDir, player, bob, morrisvillePA)
	if code, _, body := send(t, player+"/v1/wallet/deposits", bob, bobAt, "dep", `{"amount":7000,"currency":"USD"}`); code != http.StatusCreated {
		t.Fatalf("PA deposit from Morrisville: %d %s", code, body)
	}
	if code, _, body := send(t, player+"/v1/bets", bob, "", "bet", bet); code != http.StatusCreated {
		t.Fatalf("PA bet: %d %s", code, body)
	}
	if code, reason, body := send(t, player+"/v1/wallet/deposits", carol, "", "dep", dep); code != http.StatusForbidden || reason != "jurisdiction_not_served" {
		t.Fatalf("NY account: %d %s, want 403 jurisdiction_not_served", code, body)
	}
	if _, _, body := get(t, player+"/v1/wallet", bob); !bytes.Contains(body, []byte(`"balance":6500`)) {
		t.Fatalf("bob's wallet: %s", body)
	}

	// Public and admin routes name their jurisdiction.
	if code, _, body := get(t, player+"/v1/rng/checkpoint?jurisdiction=PA", ""); code != 200 || !strings.HasPrefix(string(body), "buzzer.local/rng/PA\n") {
		t.Fatalf("PA checkpoint: %d %.80s", code, body)
	}
	if code, _, body := get(t, player+"/v1/rng/checkpoint", ""); code != http.StatusBadRequest || !bytes.Contains(body, []byte("jurisdiction_required")) {
		t.Fatalf("checkpoint without a jurisdiction: %d %s", code, body)
	}
	op := adminToken(t, dataDir)
	for _, j := range []string{"NJ", "PA"} {
		if code, _, body := get(t, admin+"/admin/v1/ledger/check?jurisdiction="+j, op); code != 200 {
			t.Fatalf("%s ledger check: %d %s", j, code, body)
		}
	}
	if code, _, body := get(t, admin+"/metrics", ""); code != 200 || !bytes.Contains(body, []byte(`buzzer_store_tx_duration_seconds_count{jurisdiction="PA"}`)) {
		t.Fatalf("metrics lack PA's store histogram: %d", code)
	}

	// Each jurisdiction's relay delivers its own store's changes to its
	// own archive.
	ctx := context.Background()
	stores := map[string]string{"NJ": filepath.Join(dataDir, "buzzer.db"), "PA": filepath.Join(dataDir, "PA", "buzzer.db")}
	for _, path := range stores {
		cfg := sqlite.DefaultConfig()
		cfg.Path = path
		db, err := sqlite.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		waitOutboxDrained(t, sqlite.NewAuditOutbox(db))
		db.Close()
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Each store holds its own jurisdiction's accounts only.
	want := map[string]map[string]int64{"NJ": {"alice": 9500, "bob": 0}, "PA": {"alice": 0, "bob": 6500}}
	for j, path := range stores {
		cfg := sqlite.DefaultConfig()
		cfg.Path = path
		db, err := sqlite.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		wcfg := wallet.DefaultConfig()
		wcfg.Jurisdiction = j
		w, err := wallet.New(wcfg, wallet.Deps{Store: sqlite.NewWalletStore(db), Prices: refusesQuotes{}})
		if err != nil {
			t.Fatal(err)
		}
		for who, cash := range want[j] {
			accts, err := w.Balances(ctx, who)
			if err != nil {
				t.Fatal(err)
			}
			var got int64
			for _, a := range accts {
				got += int64(a.Balance)
			}
			if got != cash || (cash == 0 && len(accts) != 0) {
				t.Errorf("%s store: %s has %d in %d accounts, want %d", j, who, got, len(accts), cash)
			}
		}
		db.Close()
	}

	// Each archive rebuilds its own store, and not the other's.
	replay := func(archive, store string) error {
		var out, errb bytes.Buffer
		return run(ctx, []string{"audit", "replay", "--archive", archive, "--store", "sqlite://" + store}, &out, &errb)
	}
	if err := replay(filepath.Join(dataDir, "PA", "audit"), stores["PA"]); err != nil {
		t.Errorf("PA archive against PA store: %v", err)
	}
	if err := replay(filepath.Join(dataDir, "audit"), stores["NJ"]); err != nil {
		t.Errorf("NJ archive against NJ store: %v", err)
	}
	if err := replay(filepath.Join(dataDir, "audit"), stores["PA"]); err == nil {
		t.Error("NJ's archive matched PA's store")
	}
}

func TestJurisdictionsConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the error; "" = valid
	}{
		{"two held on SQLite", []string{"--jurisdictions", "NJ,PA"}, ""},
		{"duplicate", []string{"--jurisdictions", "NJ,NJ"}, "listed twice"},
		{"bad code", []string{"--jurisdictions", "NJ,pa"}, "upper-case"},
		{"store of a jurisdiction not held", []string{"--jurisdictions", "NJ", "--stores", "PA=sqlite:///tmp/x.db"}, "not one of the jurisdictions held"},
		{"PostgreSQL home needs every store named", []string{"--jurisdictions", "NJ,PA", "--store", "postgres://postgres@127.0.0.1:5432/nj"}, "stores.PA must be set"},
		{"shared store", []string{"--jurisdictions", "NJ,PA", "--stores", "NJ=postgres://postgres@127.0.0.1:5432/x,PA=postgres://postgres@127.0.0.1:5432/x"}, "same store"},
		{"both named", []string{"--jurisdictions", "NJ,PA", "--stores", "NJ=postgres://postgres@127.0.0.1:5432/nj,PA=postgres://postgres@127.0.0.1:5432/pa"}, ""},
		{"malformed stores", []string{"--stores", "NJ"}, "KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := newConfigFlags("serve", &bytes.Buffer{})
			_, err := cf.parse(append([]string{"--data-dir", t.TempDir()}, tc.args...))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			}
		})
	}
	cf := newConfigFlags("serve", &bytes.Buffer{})
	cfg, err := cf.parse([]string{"--data-dir", t.TempDir(), "--jurisdictions", "NJ,PA", "--stores", "NJ=postgres://u:hunter2@127.0.0.1:5432/nj,PA=postgres://u:hunter3@127.0.0.1:5432/pa"})
	if err != nil {
		t.Fatal(err)
	}
	if y, err := masked(cfg); err != nil || bytes.Contains(y, []byte("hunter")) || !bytes.Contains(y, []byte("u:xxxxx@127.0.0.1:5432/pa")) {
		t.Fatalf("config print shows a store password or lost the store: %v\n%s", err, y)
	}
	if cfg.Stores["PA"] != "postgres://u:hunter3@127.0.0.1:5432/pa" {
		t.Fatalf("masking changed the configuration itself: %v", cfg.Stores)
	}
	var out, errb bytes.Buffer
	err = run(context.Background(), []string{"edge", "--data-dir", t.TempDir(), "--jurisdiction", "NJ", "--jurisdictions", "NJ,PA"}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("an edge holding two jurisdictions: %v", err)
	}
}

func adminToken(t *testing.T, dataDir string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"dev", "admin-token", "--data-dir", dataDir}, &out, &errb); err != nil {
		t.Fatalf("dev admin-token: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}
