package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func readPID(t *testing.T, dataDir string) int {
	t.Helper()
	b, err := os.ReadFile(pidFile(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// TestServeUpgradeRefusesNoRequest: SIGHUP makes `serve` hand its listening
// sockets to a successor started from the same executable. While players
// keep depositing and browsing the catalog, a successor with a bad
// configuration is refused and the old process keeps serving; a good one
// takes over: the old process drains and exits 0, the new one serves on the
// same ports, no request is refused or lost (a request caught on a
// keep-alive connection closed by the drain is resent with its key, as any
// client does), and every acknowledged deposit is in the balance once.
func TestServeUpgradeRefusesNoRequest(t *testing.T) {
	dataDir := t.TempDir()
	cfgFile := filepath.Join(dataDir, "buzzer.yaml")
	writeCfg := func(s string) {
		if err := os.WriteFile(cfgFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("tables:\n  count: 1\n")
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dataDir, "--config", cfgFile, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "BUZZER_TEST_MAIN=1")
	// Plain files, not exec's copying pipes: the successor inherits them and
	// outlives the process the test started.
	cmd.Stdout, cmd.Stderr = outW, errW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	outW.Close()
	errW.Close()
	var stderr syncBuffer
	go io.Copy(&stderr, errR)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if b, err := os.ReadFile(pidFile(dataDir)); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != cmd.Process.Pid {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	serving := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				serving <- "http://" + m[1]
			}
		}
	}()
	var player string
	select {
	case player = <-serving:
	case <-time.After(90 * time.Second):
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}

	tok := devToken(t, dataDir, "--player", "up-1", "--jurisdiction", "NJ")
	app := geoHTTP(t, dataDir, "NJ")
	plain := &http.Client{Timeout: 60 * time.Second}
	var (
		stop      atomic.Bool
		deposits  atomic.Int64
		resent    atomic.Int64
		reads     atomic.Int64
		failMu    sync.Mutex
		failures  []string
		wg        sync.WaitGroup
		recordErr = func(s string) {
			failMu.Lock()
			defer failMu.Unlock()
			if len(failures) < 20 {
				failures = append(failures, s)
			}
		}
	)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				deposit := func() (*http.Response, error) {
					req, _ := http.NewRequest(http.MethodPost, player+"/v1/wallet/deposits", strings.NewReader(`{"amount":100,"currency":"USD"}`))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Idempotency-Key", fmt.Sprintf("up-%d-%d", g, i))
					return app.Do(req)
				}
				resp, err := deposit()
				// A keep-alive connection the old process closed as it drained
				// can lose a request in flight (HTTP/1.1's idle-close race);
				// the client does what the Idempotency-Key is for: it sends
				// the same key again and learns the one outcome.
				for attempt := 0; err != nil && attempt < 3; attempt++ {
					resent.Add(1)
					resp, err = deposit()
				}
				if err != nil {
					recordErr("deposit: " + err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					recordErr(fmt.Sprintf("deposit: %d %s", resp.StatusCode, body))
					continue
				}
				deposits.Add(1)

				resp, err = plain.Get(player + "/v1/events")
				if err != nil {
					recordErr("events: " + err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					recordErr(fmt.Sprintf("events: %d", resp.StatusCode))
					continue
				}
				reads.Add(1)
			}
		}()
	}
	waitCount := func(what string, c *atomic.Int64, more int64) {
		t.Helper()
		target := c.Load() + more
		deadline := time.Now().Add(90 * time.Second)
		for c.Load() < target {
			if time.Now().After(deadline) {
				t.Fatalf("%s stalled at %d (want %d)\n%s", what, c.Load(), target, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitCount("deposits before the upgrades", &deposits, 20)

	// A successor whose configuration is invalid never takes over.
	writeCfg("tables:\n  count: -1\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(stderr.String(), "upgrade aborted") {
		if time.Now().After(deadline) {
			t.Fatalf("the bad upgrade was not aborted:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-exited:
		t.Fatalf("the old process exited after a refused upgrade: %v", err)
	default:
	}
	waitCount("deposits after the refused upgrade", &deposits, 20)

	// A good successor takes over.
	writeCfg("tables:\n  count: 1\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the old process exited with %v after handing over\n%s", err, stderr.String())
		}
	case <-time.After(120 * time.Second):
		t.Fatalf("the old process did not hand over\n%s", stderr.String())
	}
	select {
	case again := <-serving:
		if again != player {
			t.Fatalf("the successor serves on %s, want the same %s", again, player)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("the successor did not start serving\n%s", stderr.String())
	}
	waitCount("deposits on the successor", &deposits, 20)
	waitCount("reads on the successor", &reads, 20)
	stop.Store(true)
	wg.Wait()

	failMu.Lock()
	if len(failures) > 0 {
		t.Errorf("requests failed across the upgrade: %q\n%s", failures, stderr.String())
	}
	failMu.Unlock()
	pid := readPID(t, dataDir)
	if pid == cmd.Process.Pid || !alive(pid) {
		t.Fatalf("pid file names %d (old %d, alive %v)", pid, cmd.Process.Pid, alive(pid))
	}
	req, _ := http.NewRequest(http.MethodGet, player+"/v1/wallet", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := plain.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var w struct {
		Balances []struct {
			Account string `json:"account"`
			Balance int64  `json:"balance"`
		} `json:"balances"`
	}
	err = json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var cash int64
	for _, b := range w.Balances {
		if b.Account == "cash" {
			cash = b.Balance
		}
	}
	if cash != 100*deposits.Load() {
		t.Fatalf("cash %d after %d acknowledged deposits of 100 (%d resent after a lost connection)", cash, deposits.Load(), resent.Load())
	}
	t.Logf("%d deposits acknowledged, %d resent after a connection closed mid-request, %d reads", deposits.Load(), resent.Load(), reads.Load())

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatal("the successor did not stop on SIGTERM")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
