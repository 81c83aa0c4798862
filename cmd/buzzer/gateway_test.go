package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/internal/enginetest"
)

// process is a `buzzer` command run as a separate OS process (this test
// binary re-executed with BUZZER_TEST_MAIN=1).
type process struct {
	name   string
	cmd    *exec.Cmd
	player string
	stderr *syncBuffer
	done   chan error
	lines  chan string
	exited bool
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	p := spawn(t, name, args...)
	p.await(t)
	return p
}

// spawn starts the process without waiting for it to serve, so several
// can start at once; await waits for its serving line.
func spawn(t *testing.T, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "BUZZER_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{name: name, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1), lines: make(chan string, 16)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *process) await(t *testing.T) {
	t.Helper()
	timeout := time.After(90 * time.Second) // hang guard, not a timing check
	for p.player == "" {
		select {
		case l := <-p.lines:
			if m := servingRE.FindStringSubmatch(l); m != nil {
				p.player = "http://" + m[1]
			}
		case err := <-p.done:
			p.exited = true
			t.Fatalf("%s exited before serving: %v\n%s", p.name, err, p.stderr.String())
		case <-timeout:
			_ = p.cmd.Process.Kill()
			t.Fatalf("%s did not start:\n%s", p.name, p.stderr.String())
		}
	}
}

// stop sends SIGTERM and waits; kill sends SIGKILL (a crash).
func (p *process) stop(t *testing.T) {
	if p.exited {
		return
	}
	p.exited = true
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.exited = true
}

// copyKeys gives an edge the public keys it must trust (players, operators,
// the gateway's forwarded decisions) and nothing private of the gateway.
func copyKeys(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(to, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"player.jwk", "player.jwks.json", "admin.jwk", "admin.jwks.json", "gateway.jwks.json"} {
		b, err := os.ReadFile(filepath.Join(from, "keys", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, "keys", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func countRows(t *testing.T, dbURL, table string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// storedDecision reads the decision stored with the store's only ledger
// transaction.
func storedDecision(t *testing.T, dbURL string) (jurisdiction, tokenHash, source string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := c.QueryRow(ctx, "SELECT decision_jurisdiction, decision_token_hash, decision_source FROM wallet_transactions").Scan(&jurisdiction, &tokenHash, &source); err != nil {
		t.Fatal(err)
	}
	return jurisdiction, tokenHash, source
}

func geotoken(t *testing.T, dataDir, target, bearer string, p geo.Point, extra ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	args := append([]string{"--data-dir", dataDir, "--target", target, "--token", bearer,
		"--lat", fmt.Sprint(p.Lat), "--lon", fmt.Sprint(p.Lon)}, extra...)
	if err := runDevGeotoken(context.Background(), args, &out, &errb); err != nil {
		t.Fatalf("dev geotoken: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

var depositSeq atomic.Int64

func depositVia(t *testing.T, base, bearer, geoToken string, amount int) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/wallet/deposits", strings.NewReader(fmt.Sprintf(`{"amount":%d,"currency":"USD"}`, amount)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Idempotency-Key", fmt.Sprintf("mp-%d-%d", time.Now().UnixNano(), depositSeq.Add(1)))
	if geoToken != "" {
		req.Header.Set("Geolocation-Token", geoToken)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

var (
	trentonNJ     = geo.Point{Lat: 40.2222, Lon: -74.7656}
	morrisvillePA = geo.Point{Lat: 40.2111, Lon: -74.7875}
)

// Gateway, NJ edge and PA edge as three processes, each edge on its own
// PostgreSQL database: money placed from Trenton lands only in NJ, from
// Morrisville only in PA; with the PA edge killed, PA requests fail closed
// and NJ is untouched.
func TestGatewayRoutesToJurisdictionEdgesAcrossProcesses(t *testing.T) {
	njDB, paDB := enginetest.PostgresURL(t), enginetest.PostgresURL(t)
	gwDir, njDir, paDir := t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := auth.LoadOrCreateDevKeys(gwDir); err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.OpenSigner(gateway.KeyFile(gwDir), rand.Reader); err != nil {
		t.Fatal(err)
	}
	copyKeys(t, gwDir, njDir)
	copyKeys(t, gwDir, paDir)

	listen := []string{"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "warn"}
	nj := spawn(t, "NJ edge", append([]string{"edge", "--jurisdiction", "NJ", "--store", njDB, "--data-dir", njDir}, listen...)...)
	pa := spawn(t, "PA edge", append([]string{"edge", "--jurisdiction", "PA", "--store", paDB, "--data-dir", paDir}, listen...)...)
	nj.await(t)
	pa.await(t)
	topo := filepath.Join(gwDir, "topology.yaml")
	if err := os.WriteFile(topo, []byte(fmt.Sprintf("edges:\n  NJ: %s\n  PA: %s\n", nj.player, pa.player)), 0o600); err != nil {
		t.Fatal(err)
	}
	gw := startProcess(t, "gateway", append([]string{"gateway", "--topology", topo, "--data-dir", gwDir}, listen...)...)

	alice := devToken(t, gwDir, "--player", "alice", "--jurisdiction", "NJ")
	bob := devToken(t, gwDir, "--player", "bob", "--jurisdiction", "PA")
	const tx = "wallet_transactions"

	code, body := depositVia(t, gw.player, alice, geotoken(t, gwDir, gw.player, alice, trentonNJ), 10000)
	if code != http.StatusCreated {
		t.Fatalf("NJ deposit through the gateway: %d %s\ngateway: %s", code, body, gw.stderr.String())
	}
	if n, p := countRows(t, njDB, tx), countRows(t, paDB, tx); n != 1 || p != 0 {
		t.Fatalf("after a Trenton deposit: NJ %d PA %d transactions, want 1 and 0", n, p)
	}
	bobGeo := geotoken(t, gwDir, gw.player, bob, morrisvillePA)
	code, body = depositVia(t, gw.player, bob, bobGeo, 2500)
	if code != http.StatusCreated {
		t.Fatalf("PA deposit through the gateway: %d %s", code, body)
	}
	if n, p := countRows(t, njDB, tx), countRows(t, paDB, tx); n != 1 || p != 1 {
		t.Fatalf("after a Morrisville deposit: NJ %d PA %d, want 1 and 1", n, p)
	}
	// The PA edge stored the gateway's decision with the movement.
	sum := sha256.Sum256([]byte(bobGeo))
	if j, h, src := storedDecision(t, paDB); j != "PA" || h != hex.EncodeToString(sum[:]) || src != "gateway" {
		t.Fatalf("PA transaction's decision: %s %s %s, want PA, the token's hash, gateway", j, h, src)
	}
	// An NJ account located in PA is refused and nothing is written.
	code, body = depositVia(t, gw.player, alice, geotoken(t, gwDir, gw.player, alice, morrisvillePA), 100)
	var prob struct{ Code, Reason string }
	_ = json.Unmarshal(body, &prob)
	if code != http.StatusForbidden || prob.Reason != "jurisdiction_mismatch" {
		t.Fatalf("NJ account from PA: %d %s", code, body)
	}

	pa.kill(t)
	njBefore, paBefore := countRows(t, njDB, tx), countRows(t, paDB, tx)
	code, body = depositVia(t, gw.player, bob, geotoken(t, gwDir, gw.player, bob, morrisvillePA), 700)
	prob.Code, prob.Reason = "", ""
	_ = json.Unmarshal(body, &prob)
	if code != http.StatusServiceUnavailable || prob.Code != "unavailable" || prob.Reason != "compliance_unavailable" {
		t.Fatalf("PA deposit with the PA edge down: %d %s, want 503 unavailable/compliance_unavailable", code, body)
	}
	if n, p := countRows(t, njDB, tx), countRows(t, paDB, tx); n != njBefore || p != paBefore {
		t.Fatalf("with PA down: NJ %d→%d PA %d→%d, want both unchanged", njBefore, n, paBefore, p)
	}
	// NJ keeps serving.
	if code, body := depositVia(t, gw.player, alice, geotoken(t, gwDir, gw.player, alice, trentonNJ), 300); code != http.StatusCreated {
		t.Fatalf("NJ deposit with PA down: %d %s", code, body)
	}
	if n := countRows(t, njDB, tx); n != njBefore+1 {
		t.Fatalf("NJ transactions %d, want %d", n, njBefore+1)
	}
}

func TestDevGeotokenValidatesFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"no token":    {"--lat", "40", "--lon", "-74"},
		"no lat":      {"--token", "x", "--lon", "-74"},
		"bad lat":     {"--token", "x", "--lat", "91", "--lon", "-74"},
		"bad ip":      {"--token", "x", "--lat", "40", "--lon", "-74", "--ip", "nope"},
		"long ttl":    {"--token", "x", "--lat", "40", "--lon", "-74", "--ttl", "1h"},
		"bad target":  {"--token", "x", "--lat", "40", "--lon", "-74", "--target", "ftp://x"},
		"stray arg":   {"--token", "x", "--lat", "40", "--lon", "-74", "extra"},
		"no accuracy": {"--token", "x", "--lat", "40", "--lon", "-74", "--accuracy", "0"},
	} {
		var out, errb bytes.Buffer
		err := runDevGeotoken(context.Background(), append([]string{"--data-dir", t.TempDir()}, args...), &out, &errb)
		if exitCode(err) != 2 {
			t.Errorf("%s: err %v (exit %d), want a usage error", name, err, exitCode(err))
		}
	}
}

func TestGatewayFlags(t *testing.T) {
	var errb bytes.Buffer
	if _, err := parseGatewayFlags([]string{"--data-dir", t.TempDir()}, &errb); exitCode(err) != 2 || !strings.Contains(describe(err), "--topology") {
		t.Fatalf("without --topology: %v", err)
	}
	if _, err := parseGatewayFlags([]string{"--topology", "x", "--player-rate", "0"}, &errb); exitCode(err) != 2 || !strings.Contains(describe(err), "player_rate") {
		t.Fatalf("zero player rate: %v", err)
	}
	if _, err := parseGatewayFlags([]string{"--topology", "x", "--trusted-proxies", "10.0.0.0/8,nope"}, &errb); exitCode(err) != 2 || !strings.Contains(describe(err), "nope") {
		t.Fatalf("bad trusted proxy: %v", err)
	}
	if c, err := parseGatewayFlags([]string{"--topology", "x", "--trusted-proxies", "10.0.0.0/8, 192.0.2.7"}, &errb); err != nil || len(c.Gateway.TrustedProxies) != 2 {
		t.Fatalf("trusted proxies: %+v %v", c, err)
	}
	if _, err := parseGatewayFlags([]string{"--topology", "x", "--dev=false"}, &errb); exitCode(err) != 2 {
		t.Fatalf("production mode without player auth settings: %v", err)
	}
	var out bytes.Buffer
	err := runGateway(context.Background(), []string{"--topology", filepath.Join(t.TempDir(), "missing.yaml"), "--data-dir", t.TempDir()}, &out, &errb)
	if exitCode(err) != 2 || !strings.Contains(describe(err), "topology") {
		t.Fatalf("missing topology file: %v", err)
	}
}
