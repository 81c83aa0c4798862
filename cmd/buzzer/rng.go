package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/internal/loadgen"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// rngCommands are the RNG log's command-line tools: the verifier key, the
// offline verifier, the store audit and the draw benchmark.
func rngCommands() map[string]command {
	return map[string]command{
		"rng key":    {"print the RNG log's public verifier key (dev key file of a data dir)", runRNGKey},
		"rng verify": {"verify a remote RNG log with a trusted key: checkpoint, draw inclusion, append-only (exit 1 on failure)", runRNGVerify},
		"rng audit":  {"rebuild the RNG Merkle tree from a store and check every checkpoint (exit 1 on failure)", runRNGAudit},
		"bench rng":  {"draw over HTTP with many clients; print throughput and latency", runBenchRNG},
	}
}

// maxKeyFile bounds a verifier key or trusted checkpoint file read from disk.
const maxKeyFile = 64 << 10

// runRNGKey prints the verifier key of the signing key a serve with the same
// flags (or --config) uses; the path and origin come from Config.resolve, so
// the two can never disagree. It does not create a key: a key printed for a
// mistyped data dir would match no log.
func runRNGKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("rng key", stderr)
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.RNG.KeyFile); errors.Is(err, os.ErrNotExist) {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no RNG signing key at %s (a serve with --data-dir %s creates it on first start)", cfg.RNG.KeyFile, cfg.DataDir)
	}
	signer, err := rng.LoadOrCreateKeyFile(cfg.RNG.KeyFile, cfg.RNG.Origin)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, signer.VerifierKey())
	return err
}

// readVerifier reads a signed-note verifier key ("name+hash+key") from the
// file named by flag.
func readVerifier(flagName, path string) (note.Verifier, error) {
	if path == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "--%s is required (the log's verifier key, obtained out of band)", flagName)
	}
	b, err := readSmallFile(path)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "--%s: cannot read %s: %v", flagName, path, err)
	}
	v, err := rng.NewVerifier(string(b))
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "--%s: %s does not hold a signed-note verifier key (name+hash+key)", flagName, path)
	}
	return v, nil
}

// readSmallFile reads a file of at most maxKeyFile bytes.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("larger than %d bytes", maxKeyFile)
	}
	return b, nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over it, so a crash leaves either
// the old or the new content, never a torn file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	err = tmp.Chmod(perm)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable where the platform allows it
		d.Close()
	}
	return nil
}

// verificationFailure turns an error of a check into the exit-1 failure the
// operator sees; faults of the tool itself (server unreachable, store down)
// pass through unchanged.
func verificationFailure(what string, err error) error {
	switch buzzer.ErrorCode(err) {
	case buzzer.EUNAVAILABLE, buzzer.ETIMEOUT, buzzer.EUNAUTHORIZED:
		return err
	}
	var te *rng.TamperError
	if errors.As(err, &te) {
		return exitFailure{msg: fmt.Sprintf("%s FAILED: %s", what, te.Error())}
	}
	return exitFailure{msg: fmt.Sprintf("%s FAILED: %s", what, describe(err))}
}

func runRNGVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rng verify", flag.ContinueOnError)
	target := fs.String("url", "", "player listener of the Buzzer whose RNG log to verify (required)")
	pubkey := fs.String("pubkey", "", "file holding the log's verifier key, obtained out of band (required)")
	drawID := fs.String("draw", "", "draw ID whose inclusion in the log to verify")
	token := fs.String("token", "", "player bearer token (needed with --draw; env BUZZER_TOKEN)")
	trustedPath := fs.String("trusted", "", "file with the last checkpoint this verifier trusted; checked for consistency, then advanced")
	timeout := fs.Duration("timeout", 30*time.Second, "bound on the whole verification")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *target == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--url is required")
	}
	if !strings.HasPrefix(*target, "http://") && !strings.HasPrefix(*target, "https://") {
		return buzzer.Errorf(buzzer.EINVALID, "--url must be an http:// or https:// URL, got %q", *target)
	}
	if *timeout <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "--timeout must be > 0")
	}
	if *token == "" {
		*token = os.Getenv("BUZZER_TOKEN")
	}
	if *drawID != "" && *token == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--draw needs --token (draw records are served to authenticated players)")
	}
	v, err := readVerifier("pubkey", *pubkey)
	if err != nil {
		return err
	}
	var trusted []byte
	if *trustedPath != "" {
		b, err := readSmallFile(*trustedPath)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(stderr, "rng verify: %s does not exist yet: trusting the first verified checkpoint\n", *trustedPath)
		case err != nil:
			return buzzer.Wrap(err, buzzer.EINVALID, "--trusted: cannot read %s: %v", *trustedPath, err)
		default:
			trusted = b
		}
	}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := httpapi.NewRNGClient(*target, nil, *token)
	res, err := rng.Check(ctx, client, v, trusted, *drawID)
	if err != nil {
		return verificationFailure("rng verify", err)
	}

	cp := res.Latest
	fmt.Fprintf(stdout, "checkpoint OK: log %s, %d records, root %s, signed by %s+%08x\n",
		cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(cp.Hash[:]), v.Name(), v.KeyHash())
	var prev rng.Checkpoint
	if trusted != nil {
		// Check verified trusted already; parsing it again only names its size.
		prev, _ = rng.OpenCheckpoint(trusted, v)
		fmt.Fprintf(stdout, "append-only OK: the log extends the trusted checkpoint of %d records\n", prev.Size)
	}
	if res.Draw != nil {
		d := res.Draw
		fmt.Fprintf(stdout, "draw OK: %s is record %d of the log: %s at %s by %s, purpose %q", d.ID, res.Index, d.Kind,
			d.Time.UTC().Format(time.RFC3339Nano), d.Requester, d.Purpose)
		if d.Ref != "" {
			fmt.Fprintf(stdout, ", ref %q", d.Ref)
		}
		switch d.Kind {
		case rng.KindBytes:
			fmt.Fprintf(stdout, ", n %d, bytes %x\n", d.N, d.Bytes)
		default:
			fmt.Fprintf(stdout, ", n %d, values %v\n", d.N, d.Values)
		}
	}
	if *trustedPath != "" {
		if trusted != nil && prev.Size >= cp.Size {
			fmt.Fprintf(stdout, "trusted checkpoint unchanged (%d records): %s\n", prev.Size, *trustedPath)
			return nil
		}
		if err := writeFileAtomic(*trustedPath, res.LatestNote, 0o644); err != nil {
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "advancing the trusted checkpoint %s failed: %v", *trustedPath, err)
		}
		fmt.Fprintf(stdout, "trusted checkpoint advanced to %d records: %s\n", cp.Size, *trustedPath)
	}
	return nil
}

// auditProgress reports how far an audit got as it reads record pages.
type auditProgress struct {
	rng.Store
	w     io.Writer
	total int64
	every time.Duration
	last  time.Time
}

func (p *auditProgress) Records(ctx context.Context, from int64, limit int) ([]rng.StoredRecord, error) {
	if now := time.Now(); p.total > 0 && now.Sub(p.last) >= p.every {
		p.last = now
		fmt.Fprintf(p.w, "rng audit: %d/%d records checked (%.0f%%)\n", from, p.total, 100*float64(from)/float64(p.total))
	}
	return p.Store.Records(ctx, from, limit)
}

// auditLog runs rng.Audit on st, printing progress to progress every interval.
// The audit reads the log in pages, not in one snapshot, so an append that
// races it can look like a record beyond the tree size: if the log grew
// while a failed audit ran, it is audited again (up to three times in all).
func auditLog(ctx context.Context, st rng.Store, v note.Verifier, progress io.Writer, every time.Duration) (rng.AuditReport, error) {
	for attempt := 1; ; attempt++ {
		before, err := st.TreeSize(ctx)
		if err != nil {
			return rng.AuditReport{}, err
		}
		rep, err := rng.Audit(ctx, &auditProgress{Store: st, w: progress, total: before, every: every}, v)
		if err == nil {
			return rep, nil
		}
		var te *rng.TamperError
		if !errors.As(err, &te) || attempt == 3 {
			return rep, err
		}
		after, serr := st.TreeSize(ctx)
		if serr != nil || after == before {
			return rep, err
		}
		fmt.Fprintf(progress, "rng audit: the log grew from %d to %d records during the audit; auditing again\n", before, after)
	}
}

func runRNGAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rng audit", flag.ContinueOnError)
	storeURL := fs.String("store", "", "store URL: sqlite://PATH or postgres://... (required)")
	pubkey := fs.String("pubkey", "", "file holding the log's verifier key (required; e.g. the output of `buzzer rng key`)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *storeURL == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--store is required")
	}
	v, err := readVerifier("pubkey", *pubkey)
	if err != nil {
		return err
	}
	cfg := DefaultConfig()
	cfg.Store = *storeURL
	cfg.DataDir = "."
	cfg.resolve()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if p, ok := sqlite.PathFromURL(cfg.Store); ok {
		// Opening a missing SQLite file would create an empty one.
		if _, err := os.Stat(p); err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "--store: no SQLite store at %s", p)
		}
	}
	s, err := openStore(ctx, &cfg)
	if err != nil {
		return err
	}
	defer s.close()
	var st rng.Store
	if s.pg != nil {
		st = postgres.NewRNGStore(s.pg)
	} else {
		st = sqlite.NewRNGStore(s.lite)
	}
	rep, err := auditLog(ctx, st, v, stderr, time.Second)
	if err != nil {
		return verificationFailure("rng audit", err)
	}
	fmt.Fprintf(stdout, "rng audit OK: log %s, %d records, %d checkpoints verified, root %s\n",
		v.Name(), rep.Records, rep.Checkpoints, base64.StdEncoding.EncodeToString(rep.Root[:]))
	return nil
}

// rngBenchResult is the JSON `buzzer bench rng` prints.
type rngBenchResult struct {
	DrawsPerS  float64 `json:"draws_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	Errors     int64   `json:"errors"`
	Draws      int64   `json:"draws"`
	Clients    int     `json:"clients"`
	Players    int     `json:"players"`
	Kind       string  `json:"kind"`
	N          int64   `json:"n"`
	Count      int     `json:"count"`
	DurationS  float64 `json:"duration_s"`
	FirstError string  `json:"first_error,omitempty"`
}

func runBenchRNG(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench rng", flag.ContinueOnError)
	target := fs.String("target", "http://127.0.0.1:8080", "player listener of the Buzzer to load")
	dataDir := fs.String("data-dir", "./data", "data dir of the dev-mode serve (its keys mint the players' tokens)")
	clients := fs.Int("clients", 64, "concurrent clients")
	duration := fs.Duration("duration", 30*time.Second, "how long to draw")
	players := fs.Int("players", 100, "distinct players the draws are requested as")
	jurisdiction := fs.String("jurisdiction", "NJ", "jurisdiction in the players' tokens")
	kind := fs.String("kind", "int", "draw kind: int, shuffle or bytes")
	n := fs.Int64("n", 52, "range (int), items (shuffle) or byte count (bytes)")
	count := fs.Int("count", 1, "values per int draw (1 for shuffle and bytes)")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *clients < 1 || *clients > 10000:
		return buzzer.Errorf(buzzer.EINVALID, "--clients must be 1..10000")
	case *players < 1 || *players > 100_000:
		return buzzer.Errorf(buzzer.EINVALID, "--players must be 1..100000")
	case *duration <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "--duration must be > 0")
	case !strings.HasPrefix(*target, "http://") && !strings.HasPrefix(*target, "https://"):
		return buzzer.Errorf(buzzer.EINVALID, "--target must be an http:// or https:// URL, got %q", *target)
	}
	req := rng.DrawRequest{Purpose: "bench", Requester: "bench", Kind: rng.Kind(*kind), N: *n, Count: *count}
	if err := req.Validate(); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "--kind/--n/--count: %s", buzzer.ErrorMessage(err))
	}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	// Each simulated player's app locates itself once per session, in the
	// players' jurisdiction; its later draws ride on the cached decision.
	hc, err := devGeoClient(*dataDir, *jurisdiction, benchClient(*clients))
	if err != nil {
		return err
	}
	run := fmt.Sprintf("%d", time.Now().UnixNano())
	rcs := make([]*httpapi.RNGClient, *players)
	for i := range rcs {
		tok, err := keys.PlayerToken(fmt.Sprintf("bench-rng-%s-%d", run, i), *jurisdiction, *duration+10*time.Minute, time.Now())
		if err != nil {
			return err
		}
		rcs[i] = httpapi.NewRNGClient(*target, hc, tok)
	}
	draw := func(ctx context.Context, c *httpapi.RNGClient) error {
		d, err := c.Draw(ctx, req)
		if err != nil {
			return fmt.Errorf("POST /v1/rng/draws: %s (%s)", buzzer.ErrorMessage(err), buzzer.ErrorCode(err))
		}
		if d.ID == "" || d.Kind != req.Kind || (req.Kind == rng.KindInt && len(d.Values) != req.Count) {
			return fmt.Errorf("POST /v1/rng/draws: malformed draw in the response")
		}
		return nil
	}
	// One draw first, so a wrong target or a refused token fails at once
	// instead of as a run full of errors.
	if err := draw(ctx, rcs[0]); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "the first draw failed: %v", err)
	}

	var draws atomic.Int64
	fmt.Fprintf(stderr, "bench: drawing (%s, n %d, count %d) with %d clients for %s\n", *kind, *n, *count, *clients, *duration)
	res := loadgen.Run(ctx, *clients, *duration, stderr, func(ctx context.Context, client int) error {
		// Clients take players round-robin so every player's token is used.
		if err := draw(ctx, rcs[(client+int(draws.Load()))%len(rcs)]); err != nil {
			return err
		}
		draws.Add(1)
		return nil
	})
	out := rngBenchResult{
		DrawsPerS: float64(draws.Load()) / res.Elapsed.Seconds(), P50ms: res.P50ms, P95ms: res.P95ms, P99ms: res.P99ms, MaxMs: res.MaxMs,
		Errors: res.Errors, Draws: draws.Load(), Clients: *clients, Players: *players, Kind: *kind, N: *n, Count: *count,
		DurationS: res.Elapsed.Seconds(), FirstError: res.FirstErr,
	}
	if *jsonOut {
		b, err := json.Marshal(out)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, string(b))
		return err
	}
	fmt.Fprintf(stdout, "draws/s %.0f  p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  max %.2f ms  errors %d\n",
		out.DrawsPerS, out.P50ms, out.P95ms, out.P99ms, out.MaxMs, out.Errors)
	return nil
}
