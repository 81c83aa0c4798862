package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/archive"
	"github.com/buzzer-bet/buzzer/audit"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/rng"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// AuditConfig configures the audit trail of a node: where the archive and
// its seal key live, the archiver's buffering, and the audit stream.
type AuditConfig struct {
	// Dir is the archive directory (default DATA_DIR/audit; --audit-dir).
	Dir string `yaml:"dir"`
	// KeyFile holds the Ed25519 key that seals segments (default
	// DATA_DIR/keys/audit.key: outside the archive, which is shipped).
	KeyFile        string           `yaml:"key_file"`
	FlushAge       time.Duration    `yaml:"flush_age"`        // 1 s
	FlushBytes     int              `yaml:"flush_bytes"`      // 256 KiB
	MaxBufferBytes int              `yaml:"max_buffer_bytes"` // 50 MiB
	SegmentBytes   int64            `yaml:"segment_bytes"`    // 64 MiB
	Stream         nats.AuditConfig `yaml:"stream"`
}

// DefaultAuditConfig returns the defaults (flush at 1 s or 256 KiB,
// at most 50 MiB buffered).
func DefaultAuditConfig() AuditConfig {
	d := audit.DefaultConfig("")
	return AuditConfig{FlushAge: d.FlushAge, FlushBytes: d.FlushBytes, MaxBufferBytes: d.MaxBufferBytes,
		SegmentBytes: d.SegmentBytes, Stream: nats.DefaultAuditConfig()}
}

// resolve places the archive and key under the data dir unless set.
func (c *AuditConfig) resolve(dataDir string) {
	if c.Dir == "" {
		c.Dir = filepath.Join(dataDir, "audit")
	}
	if c.KeyFile == "" {
		c.KeyFile = auditKeyFile(dataDir)
	}
}

func auditKeyFile(dataDir string) string { return filepath.Join(dataDir, "keys", "audit.key") }

// Validate names the first bad field.
func (c AuditConfig) Validate() error {
	if err := c.archiver().Validate(); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "audit: %s", buzzer.ErrorMessage(err))
	}
	if c.KeyFile == "" {
		return buzzer.Errorf(buzzer.EINVALID, "audit.key_file must be set")
	}
	if filepath.Dir(filepath.Clean(c.KeyFile)) == filepath.Clean(c.Dir) {
		return buzzer.Errorf(buzzer.EINVALID, "audit.key_file must not be inside the archive directory, which is shipped elsewhere")
	}
	return c.Stream.WithDefaults().Validate()
}

func (c AuditConfig) archiver() audit.Config {
	return audit.Config{Dir: c.Dir, FlushAge: c.FlushAge, FlushBytes: c.FlushBytes, MaxBufferBytes: c.MaxBufferBytes,
		SegmentBytes: c.SegmentBytes}.WithDefaults()
}

// auditSettings is the node's audit configuration with its paths resolved
// under the data dir.
func auditSettings(cfg *Config) AuditConfig {
	a := cfg.Audit
	a.resolve(cfg.DataDir)
	return a
}

func auditCommands() map[string]command {
	return map[string]command{
		"audit key":     {"print the audit archive's public seal key (PEM) from a data dir", runAuditKey},
		"audit verify":  {"check every chain link and seal of an audit archive (exit 1 naming the first bad record)", runAuditVerify},
		"audit replay":  {"rebuild balances, bets and RNG log sizes from an audit archive and compare with a store (exit 1 on any difference)", runAuditReplay},
		"audit archive": {"run the audit archiver alone: consume the audit stream into the archive", runAuditArchive},
	}
}

// startAudit runs the node's audit trail until shutdown: the archiver
// (audit stream -> archive under DATA_DIR/audit) and the relay (the store's
// outbox -> audit stream, released when the archiver's ack floor passes).
// It fails at once if the archive is damaged or the key unreadable.
func startAudit(ctx context.Context, n *node) error {
	a := auditSettings(n.cfg)
	if err := a.Validate(); err != nil {
		return err
	}
	key, err := archive.LoadOrCreateKey(a.KeyFile)
	if err != nil {
		return err
	}
	opener := archive.Opener{}
	acfg := a.archiver()
	// Open once here so a damaged archive stops start-up with its location
	// rather than a background error.
	w, _, err := opener.OpenLog(audit.LogOptions{Dir: acfg.Dir, Key: key, SegmentBytes: acfg.SegmentBytes,
		SegmentRecords: acfg.SegmentRecords, MaxRecordBytes: acfg.MaxRecordBytes, RecentIDs: acfg.RecentIDs})
	if err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	src, err := nats.NewAuditSource(ctx, n.nats, a.Stream)
	if err != nil {
		return err
	}
	stream, err := nats.NewAuditStream(ctx, n.nats, a.Stream)
	if err != nil {
		return err
	}
	arch, err := audit.NewArchiver(acfg, src, opener, key, n.reg, n.log)
	if err != nil {
		return err
	}
	// One relay per outbox, its metrics labelled outbox="store" (the
	// store's own) or "tables" (SQLite's table-audit database).
	outboxes := map[string]audit.CaptureStore{}
	if n.store.pg != nil {
		outboxes["store"] = postgres.NewAuditOutbox(n.store.pg)
	} else {
		outboxes["store"] = sqlite.NewAuditOutbox(n.store.lite)
	}
	if n.store.tableAudit != nil {
		outboxes["tables"] = sqlite.NewAuditOutbox(n.store.tableAudit)
	}
	var relays []*audit.Relay
	for name, ob := range outboxes {
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"outbox": name}, n.reg)
		relay, err := audit.NewRelay(audit.RelayConfig{}, ob, stream, reg, n.log.With("outbox", name))
		if err != nil {
			return err
		}
		relays = append(relays, relay)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1 + len(relays))
	go func() {
		defer wg.Done()
		if err := arch.Run(runCtx); err != nil {
			n.log.Error("audit archiver stopped", "err", err)
		}
	}()
	for _, relay := range relays {
		go func() {
			defer wg.Done()
			_ = relay.Run(runCtx)
		}()
	}
	n.log.Info("audit trail running", "archive", a.Dir, "stream", a.Stream.WithDefaults().Stream)
	n.onClose(func() { cancel(); wg.Wait() })
	return nil
}

// runAuditKey prints the public half of the data dir's seal key.
func runAuditKey(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit key", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "the node's data directory (required unless --key-file)")
	keyFile := fs.String("key-file", "", "the seal key file (default DATA_DIR/keys/audit.key)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	path := *keyFile
	if path == "" {
		if *dataDir == "" {
			return buzzer.Errorf(buzzer.EINVALID, "--data-dir (or --key-file) is required")
		}
		path = auditKeyFile(*dataDir)
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return buzzer.Errorf(buzzer.ENOTFOUND, "no audit seal key at %s (serve creates it when it starts)", path)
	}
	if err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot read the audit seal key %s", path)
	}
	priv, err := archive.ParsePrivateKey(data)
	if err != nil {
		return err
	}
	_, err = stdout.Write(archive.MarshalPublicKey(priv.Public().(ed25519.PublicKey)))
	return err
}

func readPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "cannot read the public key %s", path)
	}
	return archive.ParsePublicKey(data)
}

// runAuditVerify checks an archive end to end with the public key.
func runAuditVerify(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dir := fs.String("archive", "", "the archive directory (required)")
	pubFile := fs.String("pubkey", "", "PEM public key printed by `buzzer audit key` (required)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *dir == "" || *pubFile == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--archive and --pubkey are required")
	}
	pub, err := readPublicKey(*pubFile)
	if err != nil {
		return err
	}
	if _, err := os.Stat(*dir); err != nil {
		return buzzer.Errorf(buzzer.EINVALID, "no archive directory %s", *dir)
	}
	rep, err := archive.VerifyRecords(nil, *dir, pub)
	var d *archive.Damage
	if errors.As(err, &d) {
		fmt.Fprintf(stdout, "FAIL: first bad record #%d in %s at byte offset %d: %s\n", d.Record, d.File, d.Offset, d.Reason)
		return exitFailure{msg: fmt.Sprintf("audit verify failed: record #%d, %s offset %d", d.Record, d.File, d.Offset)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit verify: PASS: %d records in %d segments (%d sealed), chain head %s\n", rep.Records, rep.Segments, rep.Sealed, rep.Head)
	return nil
}

// backlogReader is what a store's AuditState offers besides the state.
type backlogReader interface {
	audit.StateReader
	AuditBacklog(ctx context.Context) (audit.Backlog, error)
}

// runAuditReplay rebuilds the state from the archive alone and compares it
// with the store.
func runAuditReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit replay", flag.ContinueOnError)
	dir := fs.String("archive", "", "the archive directory (required)")
	storeURL := fs.String("store", "", "store URL: sqlite://PATH or postgres://... (required)")
	pubFile := fs.String("pubkey", "", "also check seal signatures with this PEM public key")
	rngLog := fs.String("rng-log", "", "name of the store's RNG log in the archive (default: the origin of its latest checkpoint)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *dir == "" || *storeURL == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--archive and --store are required")
	}
	if _, err := os.Stat(*dir); err != nil {
		return buzzer.Errorf(buzzer.EINVALID, "no archive directory %s", *dir)
	}
	recs := archive.Records{Dir: *dir}
	if *pubFile != "" {
		pub, err := readPublicKey(*pubFile)
		if err != nil {
			return err
		}
		recs.Pub = pub
	}
	fmt.Fprintln(stderr, "audit replay: reading the archive ...")
	st, err := audit.Replay(recs)
	var d *archive.Damage
	if errors.As(err, &d) {
		fmt.Fprintf(stdout, "FAIL: cannot replay: record #%d in %s at byte offset %d: %s\n", d.Record, d.File, d.Offset, d.Reason)
		return exitFailure{msg: "audit replay failed: the archive is damaged or breaks the record contract"}
	}
	if err != nil {
		return err
	}
	s, err := openStoreURL(ctx, *storeURL)
	if err != nil {
		return err
	}
	defer s.close()
	var reader backlogReader
	var rngStore rng.Store
	if s.pg != nil {
		reader, rngStore = postgres.NewAuditState(s.pg), postgres.NewRNGStore(s.pg)
	} else {
		reader, rngStore = sqlite.NewAuditState(s.lite), sqlite.NewRNGStore(s.lite)
	}
	fmt.Fprintln(stderr, "audit replay: reading the store ...")
	diffs, err := audit.Compare(ctx, st, audit.MergeReaders(reader, audit.RNGLogState{Store: rngStore, Log: *rngLog}))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "archive: %d records, %d transactions, %d accounts, %d bets, %d markets, %d RNG logs, %d tables\n",
		st.Records, st.Transactions, len(st.Balances), len(st.Bets), len(st.Markets), len(st.RNGLogs), len(st.Tables))
	if len(diffs) == 0 {
		fmt.Fprintln(stdout, "audit replay: MATCH: the archive rebuilds the store's state exactly")
		return nil
	}
	for _, d := range diffs {
		fmt.Fprintln(stdout, "DIFF:", d)
	}
	if b, err := reader.AuditBacklog(ctx); err == nil && b.Records > 0 {
		fmt.Fprintf(stdout, "note: %d captured changes (oldest %s) are still in the store's outbox, not yet archived\n",
			b.Records, b.Oldest.Format(time.RFC3339))
	}
	return exitFailure{msg: fmt.Sprintf("audit replay: %d difference(s) between the archive and the store", len(diffs))}
}

// runAuditArchive runs the archiver alone until interrupted. It connects to
// --nats-url; without one it starts the embedded JetStream on the data dir,
// which only works while no serve uses that data dir.
func runAuditArchive(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("audit archive", stderr)
	// Until the common flags carry --audit-dir (Config.Audit), define it here.
	var auditDir *string
	if cf.fs.Lookup("audit-dir") == nil {
		auditDir = cf.fs.String("audit-dir", "", "archive directory (default DATA_DIR/audit)")
	}
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	a := auditSettings(cfg)
	if auditDir != nil && *auditDir != "" {
		a.Dir = *auditDir
	}
	if err := a.Validate(); err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	key, err := archive.LoadOrCreateKey(a.KeyFile)
	if err != nil {
		return err
	}
	conn, err := nats.Start(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	src, err := nats.NewAuditSource(ctx, conn, a.Stream)
	if err != nil {
		return err
	}
	arch, err := audit.NewArchiver(a.archiver(), src, archive.Opener{}, key, nil, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "buzzer archiving the audit stream into %s\n", a.Dir)
	return arch.Run(ctx)
}
