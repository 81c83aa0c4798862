package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/buzzer-bet/buzzer/auth"
)

// TestMain lets a test re-execute this binary as the real `buzzer` command
// (BUZZER_TEST_MAIN=1), so process-level behaviour such as SIGTERM handling is
// tested without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("BUZZER_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var servingRE = regexp.MustCompile(`players on http://(\S+) and operators on http://(\S+)`)

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startServe runs `buzzer serve` in-process on free ports and returns the
// player and admin base URLs.
func startServe(t *testing.T, dataDir string, extra ...string) (player, admin string, stop func() error) {
	t.Helper()
	return startNode(t, "serve", dataDir, extra...)
}

// startNode runs `buzzer serve` or `buzzer edge` in-process on free ports.
func startNode(t *testing.T, role, dataDir string, extra ...string) (player, admin string, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{role, "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, extra...)
	go func() {
		err := run(ctx, args, pw, stderr)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
			player, admin = "http://"+m[1], "http://"+m[2]
			break
		}
	}
	if player == "" {
		cancel()
		t.Fatalf("%s did not start: %v\n%s", role, <-done, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	var once sync.Once
	var stopErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("serve did not stop within 30s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return player, admin, stop
}

func get(t *testing.T, url, token string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// geoHTTP is the HTTP client of a player's app on a dev-mode target: its
// regulated writes carry a dev geolocation token located in jurisdiction,
// fetched once per player session (devGeoClient).
func geoHTTP(t *testing.T, dataDir, jurisdiction string) *http.Client {
	t.Helper()
	c, err := devGeoClient(dataDir, jurisdiction, &http.Client{Timeout: 60 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func devToken(t *testing.T, dataDir string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if err := run(context.Background(), append([]string{"dev", "token", "--data-dir", dataDir}, args...), &out, &errb); err != nil {
		t.Fatalf("dev token: %v %s", err, errb.String())
	}
	return strings.TrimSpace(out.String())
}

func TestServeEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	player, admin, stop := startServe(t, dataDir)

	if code, _, body := get(t, player+"/healthz", ""); code != 200 {
		t.Fatalf("player /healthz = %d %s", code, body)
	}
	if code, _, body := get(t, player+"/readyz", ""); code != 200 {
		t.Fatalf("player /readyz = %d %s", code, body)
	}
	code, _, body := get(t, admin+"/metrics", "")
	if code != 200 || !bytes.Contains(body, []byte("# TYPE buzzer_http_request_duration_seconds histogram")) {
		t.Fatalf("admin /metrics = %d, want Prometheus text with the request histogram:\n%.400s", code, body)
	}
	code, hdr, body := get(t, player+"/metrics", "")
	if code != 404 || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("player /metrics = %d %s %s, want 404 problem+json", code, hdr.Get("Content-Type"), body)
	}

	good := devToken(t, dataDir, "--player", "p-42", "--jurisdiction", "PA")
	code, _, body = get(t, player+"/v1/me", good)
	if code != 200 {
		t.Fatalf("/v1/me with dev token = %d %s", code, body)
	}
	var me struct{ PlayerID, Jurisdiction string }
	if err := json.Unmarshal(body, &struct {
		PlayerID     *string `json:"player_id"`
		Jurisdiction *string `json:"jurisdiction"`
	}{&me.PlayerID, &me.Jurisdiction}); err != nil || me.PlayerID != "p-42" || me.Jurisdiction != "PA" {
		t.Fatalf("/v1/me = %s (%v)", body, err)
	}

	// A tampered token (payload changed, signature kept) and an expired one
	// are refused with 401 problem+json.
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	payload = bytes.Replace(payload, []byte("p-42"), []byte("p-43"), 1)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
	keys, err := auth.LoadOrCreateDevKeys(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := keys.PlayerToken("p-42", "NJ", time.Minute, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for name, tok := range map[string]string{"tampered": tampered, "expired": expired, "missing": "", "garbage": "abc"} {
		code, hdr, body := get(t, player+"/v1/me", tok)
		var p struct{ Code string }
		_ = json.Unmarshal(body, &p)
		if code != 401 || hdr.Get("Content-Type") != "application/problem+json" || p.Code != "unauthorized" {
			t.Errorf("%s token: %d %s %s, want 401 problem+json code unauthorized", name, code, hdr.Get("Content-Type"), body)
		}
	}

	// A player token is not an admin credential, and pprof is admin-only.
	if code, _, _ := get(t, admin+"/debug/pprof/", good); code != 401 {
		t.Errorf("pprof with a player token = %d, want 401", code)
	}
	adminTok := func() string {
		var out, errb bytes.Buffer
		if err := run(context.Background(), []string{"dev", "admin-token", "--data-dir", dataDir}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out.String())
	}()
	if code, _, _ := get(t, admin+"/debug/pprof/", adminTok); code != 200 {
		t.Errorf("pprof with the admin token = %d, want 200", code)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown, want nil (exit 0)", err)
	}
}

func TestServeSIGTERMExitsZero(t *testing.T) {
	dataDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "serve", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "BUZZER_TEST_MAIN=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var player string
	for sc.Scan() {
		if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
			player = "http://" + m[1]
			break
		}
	}
	if player == "" {
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not start:\n%s", stderr.String())
	}
	if code, _, _ := get(t, player+"/healthz", ""); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("serve did not exit within 30s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"stopped"`) {
		t.Fatalf("no clean stop logged:\n%s", stderr.String())
	}
}

func TestConfigPrecedenceAndMasking(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "buzzer.yaml")
	if err := os.WriteFile(file, []byte("http:\n  http_addr: 127.0.0.1:7001\n  admin_addr: 127.0.0.1:7002\nstore: postgres://u:hunter2@db:5432/b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BUZZER_ADMIN_ADDR", "127.0.0.1:7003") // env beats the file
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"config", "print", "--config", file, "--data-dir", dir, "--http-addr", "127.0.0.1:7004"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v %s", err, errb.String())
	}
	s := out.String()
	for _, want := range []string{"http_addr: 127.0.0.1:7004", "admin_addr: 127.0.0.1:7003", "postgres://u:xxxxx@db:5432/b"} {
		if !strings.Contains(s, want) {
			t.Errorf("config print lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "hunter2") {
		t.Errorf("config print leaked a secret:\n%s", s)
	}
}

func TestBadConfigNamesTheField(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("htp:\n  x: 1\n"), 0o600)
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"same listener":  {[]string{"--http-addr", "127.0.0.1:9", "--admin-addr", "127.0.0.1:9"}, "admin_addr"},
		"bad addr":       {[]string{"--http-addr", "nope"}, "http_addr"},
		"bad log level":  {[]string{"--log-level", "loud"}, "log.level"},
		"bad store":      {[]string{"--store", "mysql://x"}, "store url"},
		"unknown yaml":   {[]string{"--config", bad}, "htp"},
		"bad duration":   {[]string{"--drain-timeout", "soon"}, "drain-timeout"},
		"stray argument": {[]string{"extra"}, "unexpected argument"},
	} {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"config", "print", "--data-dir", dir}, tc.args...), &out, &errb)
		if err == nil || exitCode(err) != 2 || !strings.Contains(describe(err)+errb.String(), tc.want) {
			t.Errorf("%s: err=%v (exit %d) %s, want a usage error naming %q", name, err, exitCode(err), errb.String(), tc.want)
		}
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &errb); err != nil || !strings.HasPrefix(out.String(), "buzzer ") {
		t.Fatalf("version: %v %q", err, out.String())
	}
	if err := run(context.Background(), []string{"fly"}, &out, &errb); exitCode(err) != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("unknown command: %v %s", err, errb.String())
	}
}

func TestEdgeNeedsAJurisdiction(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"edge", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, &out, &errb)
	if exitCode(err) != 2 || !strings.Contains(describe(err), "--jurisdiction") {
		t.Fatalf("edge without a jurisdiction: %v", err)
	}
}
