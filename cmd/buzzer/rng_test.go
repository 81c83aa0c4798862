package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/rng/rngtest"
	"github.com/buzzer-bet/buzzer/sqlite"
)

type rngRunFunc func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// rngRun runs one command function and returns its stdout, stderr and error.
func rngRun(f rngRunFunc, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	err := f(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// rngMustRun runs a command that must succeed.
func rngMustRun(t *testing.T, f rngRunFunc, args ...string) string {
	t.Helper()
	out, errOut, err := rngRun(f, args...)
	if err != nil {
		t.Fatalf("%v: %v\nstdout: %s\nstderr: %s", args, describe(err), out, errOut)
	}
	return out
}

// rngMustFail runs a check that must fail with exit status 1 as a found
// failure (not a fault of the tool) whose message contains every want.
func rngMustFail(t *testing.T, f rngRunFunc, args []string, want ...string) {
	t.Helper()
	out, errOut, err := rngRun(f, args...)
	var ef exitFailure
	if err == nil || exitCode(err) != 1 || !errors.As(err, &ef) {
		t.Fatalf("%v: err=%v (exit %d), want a check failure with exit 1\nstdout: %s\nstderr: %s", args, err, exitCode(err), out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%v: failure %q does not contain %q", args, err.Error(), w)
		}
	}
}

// rngDrawN makes n int draws over HTTP and returns them.
func rngDrawN(t *testing.T, c *httpapi.RNGClient, n int) []rng.Draw {
	t.Helper()
	out := make([]rng.Draw, n)
	for i := range out {
		d, err := c.Draw(context.Background(), rng.DrawRequest{Purpose: "cli.test", Ref: fmt.Sprintf("round-%d", i), Kind: rng.KindInt, N: 52, Count: 3})
		if err != nil {
			t.Fatalf("draw %d: %v", i, err)
		}
		out[i] = d
	}
	return out
}

func rngWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func rngReadCheckpoint(t *testing.T, path string, v note.Verifier) rng.Checkpoint {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := rng.OpenCheckpoint(b, v)
	if err != nil {
		t.Fatalf("trusted file %s does not hold a checkpoint signed by the log key: %v", path, err)
	}
	return cp
}

// TestRNGCommands runs the key, verify, audit and bench commands against a
// real serve on SQLite, then tampers with the stored log and checks that
// audit and verify fail naming the index.
func TestRNGCommands(t *testing.T) {
	dataDir := t.TempDir()
	work := t.TempDir()
	player, _, _ := startServe(t, dataDir)
	token := devToken(t, dataDir, "--player", "p-rng")
	client := httpapi.NewRNGClient(player, geoHTTP(t, dataDir, "NJ"), token)
	draws := rngDrawN(t, client, 5)

	// rng key prints the verifier key the running serve signs with.
	vkey := strings.TrimSpace(rngMustRun(t, runRNGKey, "--data-dir", dataDir))
	v, err := rng.NewVerifier(vkey)
	if err != nil {
		t.Fatalf("rng key printed %q: %v", vkey, err)
	}
	if v.Name() != "buzzer.local/rng/NJ" {
		t.Errorf("key name %q, want the default origin buzzer.local/rng/NJ", v.Name())
	}
	if code, _, body := get(t, player+"/v1/rng/key", ""); code != 200 || strings.TrimSpace(string(body)) != vkey {
		t.Errorf("GET /v1/rng/key = %d %q, want the key rng key printed", code, body)
	}
	code, _, body := get(t, player+"/v1/rng/checkpoint", "")
	if code != 200 {
		t.Fatalf("GET /v1/rng/checkpoint = %d %s", code, body)
	}
	if _, err := rng.OpenCheckpoint(body, v); err != nil {
		t.Fatalf("the served checkpoint does not verify with the printed key: %v", err)
	}
	pubFile := filepath.Join(work, "rng.pub")
	rngWriteFile(t, pubFile, vkey+"\n")

	// verify: first use creates the trusted file; a later run checks the log
	// only grew and advances it.
	trusted := filepath.Join(work, "trusted.checkpoint")
	out := rngMustRun(t, runRNGVerify, "--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", draws[2].ID, "--token", token)
	for _, want := range []string{"checkpoint OK", fmt.Sprintf("draw OK: %s is record %d", draws[2].ID, draws[2].Index),
		fmt.Sprint(draws[2].Values), "trusted checkpoint advanced"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	first := rngReadCheckpoint(t, trusted, v)
	if first.Size <= draws[2].Index {
		t.Fatalf("trusted checkpoint has %d records, want it to cover draw index %d", first.Size, draws[2].Index)
	}
	more := rngDrawN(t, client, 3)
	out = rngMustRun(t, runRNGVerify, "--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", more[2].ID, "--token", token)
	if !strings.Contains(out, fmt.Sprintf("append-only OK: the log extends the trusted checkpoint of %d records", first.Size)) {
		t.Errorf("second verify did not check consistency with the trusted checkpoint:\n%s", out)
	}
	second := rngReadCheckpoint(t, trusted, v)
	if second.Size <= more[2].Index || second.Size <= first.Size {
		t.Fatalf("trusted checkpoint went from %d to %d records, want it past draw index %d", first.Size, second.Size, more[2].Index)
	}
	trustedBytes, _ := os.ReadFile(trusted)

	// A key with the same name but another secret is not the log's key: its
	// checkpoints are refused by verify and audit, and the trusted file stays.
	skey, otherVkey, err := note.GenerateKey(rand.Reader, v.Name())
	if err != nil {
		t.Fatal(err)
	}
	otherPub := filepath.Join(work, "other.pub")
	rngWriteFile(t, otherPub, otherVkey+"\n")
	rngMustFail(t, runRNGVerify, []string{"--url", player, "--pubkey", otherPub, "--trusted", trusted}, "not signed by the trusted key")
	if b, _ := os.ReadFile(trusted); !bytes.Equal(b, trustedBytes) {
		t.Fatal("a failed verify changed the trusted checkpoint")
	}
	store := "sqlite://" + filepath.Join(dataDir, "buzzer.db")
	rngMustFail(t, runRNGAudit, []string{"--store", store, "--pubkey", otherPub}, "signature does not verify")
	// A trusted checkpoint signed by the other key is refused as well.
	otherSigner, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := rng.SignCheckpoint(rng.Checkpoint{Origin: v.Name(), Size: second.Size, Hash: second.Hash}, otherSigner)
	if err != nil {
		t.Fatal(err)
	}
	forgedFile := filepath.Join(work, "forged.checkpoint")
	rngWriteFile(t, forgedFile, string(forged))
	rngMustFail(t, runRNGVerify, []string{"--url", player, "--pubkey", pubFile, "--trusted", forgedFile}, "does not verify with this key")

	// A short benchmark run draws without errors.
	out = rngMustRun(t, runBenchRNG, "--target", player, "--data-dir", dataDir, "--clients", "2", "--duration", "1s", "--players", "3", "--json")
	var res struct {
		DrawsPerS float64 `json:"draws_per_s"`
		P50       float64 `json:"p50_ms"`
		Errors    int64   `json:"errors"`
		Draws     int64   `json:"draws"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("bench rng --json printed %q: %v", out, err)
	}
	if res.DrawsPerS <= 0 || res.Draws <= 0 || res.Errors != 0 || res.P50 <= 0 {
		t.Fatalf("bench rng result %s: want draws and no errors", out)
	}

	// The untampered store audits clean, with progress on stderr.
	out = rngMustRun(t, runRNGAudit, "--store", store, "--pubkey", pubFile)
	var size int64
	db, err := sqlite.Open(context.Background(), func() sqlite.Config {
		c := sqlite.DefaultConfig()
		c.Path = filepath.Join(dataDir, "buzzer.db")
		return c
	}())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.SQL.QueryRow(`SELECT size FROM rng_tree`).Scan(&size); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("rng audit OK: log %s, %d records", v.Name(), size); !strings.Contains(out, want) || size < 8+res.Draws {
		t.Fatalf("audit output %q, want %q (store size %d, %d draws made)", out, want, size, 8+res.Draws)
	}
	var progress bytes.Buffer
	if _, err := auditLog(context.Background(), sqlite.NewRNGStore(db), v, &progress, 0); err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("rng audit: %d/%d records checked (100%%)", size, size); !strings.Contains(progress.String(), want) {
		t.Errorf("audit progress %q lacks %q", progress.String(), want)
	}

	// Change one stored leaf hash: audit names its record.
	victim := draws[1]
	hashIdx := tlog.StoredHashIndex(0, victim.Index)
	var orig []byte
	if err := db.SQL.QueryRow(`SELECT hash FROM rng_hashes WHERE idx = ?`, hashIdx).Scan(&orig); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(orig)
	bad[0] ^= 1
	if _, err := db.SQL.Exec(`UPDATE rng_hashes SET hash = ? WHERE idx = ?`, bad, hashIdx); err != nil {
		t.Fatal(err)
	}
	rngMustFail(t, runRNGAudit, []string{"--store", store, "--pubkey", pubFile}, fmt.Sprintf("record %d:", victim.Index))
	if _, err := db.SQL.Exec(`UPDATE rng_hashes SET hash = ? WHERE idx = ?`, orig, hashIdx); err != nil {
		t.Fatal(err)
	}
	rngMustRun(t, runRNGAudit, "--store", store, "--pubkey", pubFile)

	// Change one drawn value in a stored record (it still decodes, with the
	// same ID): audit and verify fail naming its index; other draws still verify.
	var data []byte
	if err := db.SQL.QueryRow(`SELECT data FROM rng_records WHERE idx = ?`, victim.Index).Scan(&data); err != nil {
		t.Fatal(err)
	}
	rec, err := rng.UnmarshalRecord(data)
	if err != nil {
		t.Fatal(err)
	}
	rec.Values[0] = (rec.Values[0] + 1) % rec.N
	forgedRec, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.Exec(`UPDATE rng_records SET data = ? WHERE idx = ?`, forgedRec, victim.Index); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("record %d", victim.Index)
	rngMustFail(t, runRNGAudit, []string{"--store", store, "--pubkey", pubFile}, name+":", "does not match its stored leaf hash")
	rngMustFail(t, runRNGVerify, []string{"--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", victim.ID, "--token", token}, name+",", "not included")
	rngMustRun(t, runRNGVerify, "--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", draws[3].ID, "--token", token)
}

// TestRNGVerifyAcrossRestartAndFork: a restarted serve continues the same
// log, so the trusted checkpoint still verifies; a different log signed with
// the same key (a rewritten history) fails the consistency check.
func TestRNGVerifyAcrossRestartAndFork(t *testing.T) {
	dataDir := t.TempDir()
	work := t.TempDir()
	player, _, stop := startServe(t, dataDir)
	token := devToken(t, dataDir, "--player", "p-fork")
	pubFile := filepath.Join(work, "rng.pub")
	rngWriteFile(t, pubFile, rngMustRun(t, runRNGKey, "--data-dir", dataDir))
	v, err := readVerifier("pubkey", pubFile)
	if err != nil {
		t.Fatal(err)
	}
	trusted := filepath.Join(work, "trusted.checkpoint")
	d := rngDrawN(t, httpapi.NewRNGClient(player, geoHTTP(t, dataDir, "NJ"), token), 3)
	rngMustRun(t, runRNGVerify, "--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", d[2].ID, "--token", token)
	before := rngReadCheckpoint(t, trusted, v)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	player, _, stop = startServe(t, dataDir)
	d2 := rngDrawN(t, httpapi.NewRNGClient(player, geoHTTP(t, dataDir, "NJ"), token), 2)
	if d2[0].Index != d[2].Index+1 {
		t.Fatalf("after a restart the first draw is record %d, want %d (the log continues)", d2[0].Index, d[2].Index+1)
	}
	out := rngMustRun(t, runRNGVerify, "--url", player, "--pubkey", pubFile, "--trusted", trusted, "--draw", d2[1].ID, "--token", token)
	if !strings.Contains(out, "append-only OK") || rngReadCheckpoint(t, trusted, v).Size <= before.Size {
		t.Fatalf("verify across the restart did not advance the trusted checkpoint:\n%s", out)
	}
	trustedBytes, _ := os.ReadFile(trusted)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Another data dir holding the same signing key starts another history.
	forkDir := t.TempDir()
	key, err := os.ReadFile(filepath.Join(dataDir, "keys", "rng.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(forkDir, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(forkDir, "keys", "rng.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	forkPlayer, _, _ := startServe(t, forkDir)
	forkToken := devToken(t, forkDir, "--player", "p-fork")
	fd := rngDrawN(t, httpapi.NewRNGClient(forkPlayer, geoHTTP(t, forkDir, "NJ"), forkToken), 8)
	// Alone, the other history verifies: same key, a valid log. (Verifying
	// its last draw also makes its latest checkpoint cover all 8 records.)
	rngMustRun(t, runRNGVerify, "--url", forkPlayer, "--pubkey", pubFile, "--draw", fd[7].ID, "--token", forkToken)
	rngMustFail(t, runRNGVerify, []string{"--url", forkPlayer, "--pubkey", pubFile, "--trusted", trusted}, "not an extension of the trusted checkpoint")
	if b, _ := os.ReadFile(trusted); !bytes.Equal(b, trustedBytes) {
		t.Fatal("a failed verify changed the trusted checkpoint")
	}
}

// TestRNGCommandsRefuseBadInput: bad flags are usage errors (exit 2) naming
// the flag; a missing key is not found (exit 1).
func TestRNGCommandsRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	pub := filepath.Join(dir, "rng.pub")
	_, vkey, err := note.GenerateKey(rand.Reader, "buzzer.local/rng/NJ")
	if err != nil {
		t.Fatal(err)
	}
	rngWriteFile(t, pub, vkey+"\n")
	garbage := filepath.Join(dir, "garbage.pub")
	rngWriteFile(t, garbage, "not a key\n")
	u := "http://127.0.0.1:1"
	for name, tc := range map[string]struct {
		f    rngRunFunc
		args []string
		want string
	}{
		"verify without url":       {runRNGVerify, []string{"--pubkey", pub}, "--url"},
		"verify with a bad url":    {runRNGVerify, []string{"--url", "ftp://x", "--pubkey", pub}, "--url"},
		"verify without pubkey":    {runRNGVerify, []string{"--url", u}, "--pubkey"},
		"verify with garbage key":  {runRNGVerify, []string{"--url", u, "--pubkey", garbage}, "--pubkey"},
		"verify with missing key":  {runRNGVerify, []string{"--url", u, "--pubkey", filepath.Join(dir, "nope")}, "--pubkey"},
		"verify draw without auth": {runRNGVerify, []string{"--url", u, "--pubkey", pub, "--draw", "x"}, "--token"},
		"verify stray argument":    {runRNGVerify, []string{"--url", u, "--pubkey", pub, "extra"}, "unexpected argument"},
		"audit without store":      {runRNGAudit, []string{"--pubkey", pub}, "--store"},
		"audit without pubkey":     {runRNGAudit, []string{"--store", "sqlite://" + filepath.Join(dir, "x.db")}, "--pubkey"},
		"audit missing sqlite":     {runRNGAudit, []string{"--store", "sqlite://" + filepath.Join(dir, "x.db"), "--pubkey", pub}, "--store"},
		"audit bad store url":      {runRNGAudit, []string{"--store", "mysql://x", "--pubkey", pub}, "store"},
		"bench zero clients":       {runBenchRNG, []string{"--data-dir", dir, "--clients", "0"}, "--clients"},
		"bench bad kind":           {runBenchRNG, []string{"--data-dir", dir, "--kind", "dice"}, "--kind"},
		"bench bad n":              {runBenchRNG, []string{"--data-dir", dir, "--n", "0"}, "--n"},
		"bench bad duration":       {runBenchRNG, []string{"--data-dir", dir, "--duration", "0s"}, "--duration"},
		"key bad jurisdiction":     {runRNGKey, []string{"--data-dir", dir, "--jurisdiction", "nj"}, "jurisdiction"},
	} {
		_, errOut, err := rngRun(tc.f, tc.args...)
		if err == nil || exitCode(err) != 2 || !strings.Contains(describe(err)+errOut, tc.want) {
			t.Errorf("%s: err=%v (exit %d) %s, want a usage error naming %q", name, err, exitCode(err), errOut, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("audit of a missing SQLite store created it (stat: %v)", err)
	}

	// rng key never creates a key: one printed for a mistyped data dir would
	// match no log.
	_, _, err = rngRun(runRNGKey, "--data-dir", filepath.Join(dir, "empty"))
	if err == nil || exitCode(err) != 1 || !strings.Contains(describe(err), "no RNG signing key") {
		t.Fatalf("rng key on an empty data dir: %v (exit %d)", err, exitCode(err))
	}
	if _, err := os.Stat(filepath.Join(dir, "empty", "keys", "rng.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rng key created a key (stat: %v)", err)
	}
}

// rngGrowingStore appends a draw through the live service the first time the
// audit reads records, as a running node would while it is audited.
type rngGrowingStore struct {
	rng.Store
	grow  func()
	grown bool
}

func (g *rngGrowingStore) Records(ctx context.Context, from int64, limit int) ([]rng.StoredRecord, error) {
	if !g.grown {
		g.grown = true
		g.grow()
	}
	return g.Store.Records(ctx, from, limit)
}

// TestRNGAuditOfALiveLog: an append racing the audit makes rng.Audit see a
// record beyond the size it read; auditLog audits again instead of
// reporting tampering, but a real tamper in a log that did not grow is
// reported at once.
func TestRNGAuditOfALiveLog(t *testing.T) {
	ctx := context.Background()
	const origin = "buzzer.local/rng/T1"
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := rng.NewKeySigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rng.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	mem := rngtest.NewMemStore()
	svc, err := rng.NewService(ctx, mem, signer, rng.Config{Origin: origin, Jurisdiction: "T1", CheckpointInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	draw := func() {
		if _, err := svc.Draw(ctx, rng.DrawRequest{Purpose: "audit.test", Requester: "test", Kind: rng.KindInt, N: 6, Count: 1}); err != nil {
			t.Error(err)
		}
	}
	for range 3 {
		draw()
	}

	var progress bytes.Buffer
	rep, err := auditLog(ctx, &rngGrowingStore{Store: mem, grow: draw}, v, &progress, time.Hour)
	if err != nil {
		t.Fatalf("audit of a growing log: %v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "grew from 3 to 4 records during the audit; auditing again") || rep.Records != 4 {
		t.Fatalf("audit of a growing log: %d records, progress %q; want a second pass over 4 records", rep.Records, progress.String())
	}

	recs, err := mem.Records(ctx, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := rng.UnmarshalRecord(recs[0].Data)
	if err != nil {
		t.Fatal(err)
	}
	rec.Values[0] = (rec.Values[0] + 1) % rec.N
	data, err := rec.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	mem.TamperRecord(1, data)
	progress.Reset()
	_, err = auditLog(ctx, mem, v, &progress, time.Hour)
	var te *rng.TamperError
	if !errors.As(err, &te) || te.Index != 1 || strings.Contains(progress.String(), "auditing again") {
		t.Fatalf("audit of a tampered, idle log: %v (progress %q), want record 1 named at once", err, progress.String())
	}
	if ef := verificationFailure("rng audit", err); exitCode(ef) != 1 || !strings.Contains(ef.Error(), "record 1:") {
		t.Fatalf("the tamper became %v (exit %d), want an exit-1 failure naming record 1", ef, exitCode(ef))
	}
}
