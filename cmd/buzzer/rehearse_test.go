package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRehearseSpikeWithAPause runs a small rehearsal against serve: a
// baseline, a spike and a recovery of bets, with betting paused by the
// operator for part of the spike. Bets during the pause are refused as
// betting_paused, the rest are accepted, and the money check finds every
// accepted bet exactly once and the ledger sound.
func TestRehearseSpikeWithAPause(t *testing.T) {
	dataDir := t.TempDir()
	player, admin, stop := startServe(t, dataDir)
	defer stop()
	openLeg(t, player)
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"rehearse", "--target", player, "--admin", admin, "--data-dir", dataDir,
		"--players", "20", "--baseline-rate", "20", "--spike-rate", "80", "--baseline", "1s", "--spike", "3s", "--recovery", "1s",
		"--chaos", "pause-bets@1500ms+1s", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("rehearse: %v\n%s\n%s", err, out.String(), errb.String())
	}
	var rep struct {
		Phases []struct {
			Name     string
			Arrivals int64
			Accepted int64
			Refused  map[string]int64
		}
		Chaos []struct {
			Kind   string
			Result string
		}
		AcceptedTotal int64 `json:"accepted_total"`
		Lost          int64
		Phantom       int64
		Duplicates    int64
		LedgerOK      bool `json:"ledger_ok"`
		OK            bool
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report %q: %v", out.String(), err)
	}
	if !rep.OK || !rep.LedgerOK || rep.Lost+rep.Phantom+rep.Duplicates != 0 || rep.AcceptedTotal == 0 {
		t.Fatalf("report %s", out.String())
	}
	var paused, accepted int64
	for _, ph := range rep.Phases {
		paused += ph.Refused["betting_paused"]
		accepted += ph.Accepted
	}
	if paused == 0 || accepted == 0 {
		t.Fatalf("pause refused %d, accepted %d: %s", paused, accepted, out.String())
	}
	if len(rep.Chaos) != 1 || !strings.Contains(rep.Chaos[0].Result, "bets.accept=false") || !strings.Contains(rep.Chaos[0].Result, "bets.accept=true") {
		t.Fatalf("chaos %+v", rep.Chaos)
	}
}

// TestRehearsalCheckCatchesLostAndPhantomBets: the money check reports an
// accepted bet the node does not list, a listed bet nobody was told about,
// a bet listed twice, and a failing ledger.
func TestRehearsalCheckCatchesLostAndPhantomBets(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/bets":
			_, _ = w.Write([]byte(`{"bets":[{"id":"kept"},{"id":"twice"},{"id":"twice"},{"id":"phantom"}],"next_cursor":""}`))
		case "/admin/v1/ledger/check":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"ok":false,"problems":["sum of postings is 7"]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	bets := []*rehearsalBet{
		{player: 0, key: "k1", betID: "kept"},
		{player: 0, key: "k2", betID: "twice"},
		{player: 0, key: "k3", betID: "lost"},
		{player: 0, key: "k4"}, // refused
	}
	rep := &rehearsalReport{}
	rep.check(context.Background(), srv.Client(), srv.URL, srv.URL, "op", []string{"tok"}, bets)
	if rep.OK || rep.LedgerOK || rep.Lost != 1 || rep.Phantom != 1 || rep.Duplicates != 1 || rep.AcceptedTotal != 3 {
		t.Fatalf("report %+v", rep)
	}
}

func TestParseChaos(t *testing.T) {
	as, err := parseChaos("pause-bets@12s+5s, upgrade@20s")
	if err != nil || len(as) != 2 || as[0].At.Seconds() != 12 || as[0].For.Seconds() != 5 || as[1].Kind != "upgrade" {
		t.Fatalf("%+v %v", as, err)
	}
	for _, bad := range []string{"pause-bets@12s", "upgrade@1s+2s", "reboot@1s", "pause-bets", "pause-bets@-1s+1s", "pause-bets@x+1s"} {
		if _, err := parseChaos(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
