package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/nats"
	"github.com/buzzer-bet/buzzer/postgres"
	"github.com/buzzer-bet/buzzer/sqlite"
	"github.com/buzzer-bet/buzzer/wallet"
)

// Config is the whole node's configuration: one struct per part, composed
// here, the only place where flags and environment variables are mapped.
type Config struct {
	DataDir string `yaml:"data_dir"`
	// Store is sqlite://PATH (embedded default) or postgres://... .
	Store string `yaml:"store" secret:"true"`
	// Dev mode creates signing keys in the data dir and trusts them; it must be
	// off in production, where auth.player and auth.admin name real JWKS.
	Dev bool `yaml:"dev"`
	// Jurisdiction is the regulated jurisdiction this node's stores serve:
	// with Jurisdictions, the first of them (its home jurisdiction).
	Jurisdiction string `yaml:"jurisdiction"`
	// Jurisdictions, when set, are every jurisdiction `serve` holds in one
	// process, each with its own regulated parts and stores (wallet, bets,
	// tables, RNG log, audit trail); the first is the home jurisdiction,
	// which keeps Store and the data dir's top-level paths. Each other
	// jurisdiction J uses Stores[J], default sqlite://DATA_DIR/J/buzzer.db
	// (there is no default beside a PostgreSQL home store: regulated data
	// goes only where it is named), and DATA_DIR/J/ for its RNG key and
	// audit archive. `buzzer edge` holds exactly one.
	Jurisdictions []string `yaml:"jurisdictions"`
	// Stores names a jurisdiction's store URL (see Jurisdictions).
	Stores map[string]string `yaml:"stores" secret:"true"`
	// Edge is set by `buzzer edge`: regulated requests are admitted only
	// with the gateway's signed location decision.
	Edge bool `yaml:"-"`
	// Geo configures location checks: token verification on serve, the
	// gateway's decision keys on an edge.
	Geo      GeoConfig       `yaml:"geo"`
	Log      LogConfig       `yaml:"log"`
	HTTP     httpapi.Config  `yaml:"http"`
	NATS     nats.Config     `yaml:"nats"`
	Postgres postgres.Config `yaml:"postgres"`
	SQLite   sqlite.Config   `yaml:"sqlite"`
	Auth     AuthConfig      `yaml:"auth"`
	RNG      RNGConfig       `yaml:"rng"`
	Wallet   wallet.Config   `yaml:"wallet"`
	Odds     OddsConfig      `yaml:"odds"`
	Tables   TablesConfig    `yaml:"tables"`
	Audit    AuditConfig     `yaml:"audit"`
}

// RNGConfig configures the RNG service and its signed log.
type RNGConfig struct {
	// Origin names the log in every checkpoint; default
	// "buzzer.local/rng/<jurisdiction>".
	Origin string `yaml:"origin"`
	// KeyFile holds the checkpoint signing key; default DATA_DIR/keys/rng.key.
	KeyFile            string        `yaml:"key_file"`
	MaxBatch           int           `yaml:"max_batch"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	CheckpointEvery    int64         `yaml:"checkpoint_every"`
}

// LogConfig configures structured logs.
type LogConfig struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // json or text
}

// AuthConfig holds the player and admin verifiers' settings (ignored in dev
// mode, where both come from the data dir's dev keys).
type AuthConfig struct {
	Player auth.Config `yaml:"player"`
	Admin  auth.Config `yaml:"admin"`
}

// DefaultConfig is what `buzzer serve` runs with when nothing is set.
func DefaultConfig() Config {
	return Config{
		DataDir:      "./data",
		Dev:          true,
		Jurisdiction: "NJ",
		RNG:          RNGConfig{MaxBatch: 256, CheckpointInterval: time.Second, CheckpointEvery: 1000},
		Wallet:       wallet.DefaultConfig(),
		Odds:         DefaultOddsConfig(),
		Tables:       DefaultTablesConfig(),
		Audit:        DefaultAuditConfig(),
		Log:          LogConfig{Level: "info", Format: "json"},
		HTTP:         httpapi.DefaultConfig(),
		NATS:         nats.DefaultConfig(),
		Postgres:     postgres.DefaultConfig(),
		SQLite:       sqlite.DefaultConfig(),
		Auth:         AuthConfig{Player: auth.DefaultConfig(), Admin: auth.DefaultConfig()},
	}
}

// resolve fills derived settings (paths under the data dir).
func (c *Config) resolve() {
	if len(c.Jurisdictions) == 0 {
		c.Jurisdictions = []string{c.Jurisdiction}
	}
	c.Jurisdiction = c.Jurisdictions[0]
	if u := c.Stores[c.Jurisdiction]; u != "" {
		c.Store = u
	}
	if c.Store == "" {
		c.Store = "sqlite://" + filepath.Join(c.DataDir, "buzzer.db")
	}
	if c.NATS.URL == "" && c.NATS.StoreDir == "" {
		c.NATS.StoreDir = filepath.Join(c.DataDir, "nats")
	}
	if c.RNG.Origin == "" {
		c.RNG.Origin = "buzzer.local/rng/" + c.Jurisdiction
	}
	c.Audit.resolve(c.DataDir)
	if c.RNG.KeyFile == "" {
		c.RNG.KeyFile = filepath.Join(c.DataDir, "keys", "rng.key")
	}
	if p, ok := sqlite.PathFromURL(c.Store); ok {
		c.SQLite.Path = p
	} else {
		c.Postgres.URL = c.Store
	}
}

// Validate checks every part's configuration and names the bad field.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return buzzer.Errorf(buzzer.EINVALID, "data_dir must be set")
	}
	if !validJurisdiction(c.Jurisdiction) {
		return buzzer.Errorf(buzzer.EINVALID, "jurisdiction must be 2..8 upper-case letters or digits, got %q", c.Jurisdiction)
	}
	if err := c.validateJurisdictions(); err != nil {
		return err
	}
	if c.RNG.MaxBatch < 1 || c.RNG.MaxBatch > 10000 {
		return buzzer.Errorf(buzzer.EINVALID, "rng.max_batch must be 1..10000, got %d", c.RNG.MaxBatch)
	}
	if c.RNG.CheckpointInterval <= 0 || c.RNG.CheckpointEvery < 1 {
		return buzzer.Errorf(buzzer.EINVALID, "rng.checkpoint_interval and rng.checkpoint_every must be > 0")
	}
	if err := c.Odds.Validate(); err != nil {
		return err
	}
	if err := c.Tables.Validate(); err != nil {
		return err
	}
	if err := c.Audit.Validate(); err != nil {
		return err
	}
	w := c.Wallet
	w.Jurisdiction = c.Jurisdiction
	if err := w.Validate(); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return buzzer.Errorf(buzzer.EINVALID, "log.level must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		return buzzer.Errorf(buzzer.EINVALID, "log.format must be json or text, got %q", c.Log.Format)
	}
	if err := c.HTTP.Validate(); err != nil {
		return err
	}
	if err := c.NATS.Validate(); err != nil {
		return err
	}
	if _, ok := sqlite.PathFromURL(c.Store); ok {
		if err := c.SQLite.Validate(); err != nil {
			return err
		}
	} else if err := c.Postgres.Validate(); err != nil {
		return err
	}
	if !c.Dev {
		if err := c.Auth.Player.Validate(); err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "auth.player: %s", buzzer.ErrorMessage(err))
		}
		if err := c.Auth.Admin.Validate(); err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "auth.admin: %s", buzzer.ErrorMessage(err))
		}
	}
	return nil
}

func validJurisdiction(j string) bool {
	if len(j) < 2 || len(j) > 8 {
		return false
	}
	for _, r := range j {
		if !(r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// configFlags binds the common flags of serve, migrate and config print.
// Precedence: defaults < --config YAML file < BUZZER_* environment < flags.
type configFlags struct {
	fs   *flag.FlagSet
	cfg  *Config
	file string
}

func newConfigFlags(name string, stderr io.Writer) *configFlags {
	cf := &configFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError), cfg: new(Config)}
	*cf.cfg = DefaultConfig()
	cf.fs.SetOutput(stderr)
	cf.fs.StringVar(&cf.file, "config", "", "YAML configuration file (env BUZZER_CONFIG)")
	cf.bind()
	return cf
}

func (cf *configFlags) bind() {
	c, fs := cf.cfg, cf.fs
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for embedded data, dev keys and archives")
	fs.StringVar(&c.Store, "store", c.Store, "store URL: sqlite://PATH (default DATA_DIR/buzzer.db) or postgres://...")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "dev mode: create and trust signing keys in the data dir")
	fs.StringVar(&c.Jurisdiction, "jurisdiction", c.Jurisdiction, "jurisdiction this node's regulated stores serve (e.g. NJ, PA)")
	fs.Var(listFlag{&c.Jurisdictions}, "jurisdictions", "serve only: every jurisdiction held in this process, each with its own stores (e.g. NJ,PA; the first is the home one)")
	fs.Var(mapFlag{&c.Stores}, "stores", "store URL per jurisdiction: NJ=URL,PA=URL (default for a non-home one: sqlite://DATA_DIR/J/buzzer.db)")
	fs.StringVar(&c.HTTP.HTTPAddr, "http-addr", c.HTTP.HTTPAddr, "player listener address")
	fs.StringVar(&c.HTTP.AdminAddr, "admin-addr", c.HTTP.AdminAddr, "admin listener address (metrics, pprof, operator API)")
	fs.DurationVar(&c.HTTP.DrainTimeout, "drain-timeout", c.HTTP.DrainTimeout, "how long shutdown waits for in-flight requests")
	fs.StringVar(&c.NATS.URL, "nats-url", c.NATS.URL, "external NATS URL (default: embedded JetStream)")
	fs.StringVar(&c.Audit.Dir, "audit-dir", c.Audit.Dir, "audit archive directory (default DATA_DIR/audit)")
	fs.StringVar(&c.Geo.ChallengesRedisURL, "geo-challenges-redis-url", c.Geo.ChallengesRedisURL, "Redis for location challenges shared by every node behind one load balancer (default: in-process)")
	fs.StringVar(&c.Tables.RedisURL, "redis-url", c.Tables.RedisURL, "Redis for live tables' state and leases (default: in-process memory)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "debug, info, warn or error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "json or text")
}

// envName maps a flag name to its environment variable: http-addr → BUZZER_HTTP_ADDR.
func envName(flagName string) string {
	return "BUZZER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args and returns the validated configuration.
func (cf *configFlags) parse(args []string) (*Config, error) {
	if err := cf.fs.Parse(args); err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "%v", err)
	}
	if cf.fs.NArg() > 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "unexpected argument %q", cf.fs.Arg(0))
	}
	set := map[string]string{}
	cf.fs.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
	if cf.file == "" {
		cf.file = os.Getenv("BUZZER_CONFIG")
	}
	if cf.file != "" {
		*cf.cfg = DefaultConfig()
		if err := loadYAML(cf.file, cf.cfg); err != nil {
			return nil, err
		}
	}
	var err error
	cf.fs.VisitAll(func(f *flag.Flag) {
		if err != nil || f.Name == "config" {
			return
		}
		if v, ok := set[f.Name]; ok {
			err = cf.fs.Set(f.Name, v) // flags win over file and environment
		} else if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if e := cf.fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s: %w", envName(f.Name), e)
			}
		}
	})
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "%v", err)
	}
	cf.cfg.resolve()
	if err := cf.cfg.Validate(); err != nil {
		return nil, err
	}
	return cf.cfg, nil
}

func loadYAML(path string, cfg *Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "cannot read config file %s", path)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return buzzer.Wrap(err, buzzer.EINVALID, "config file %s: %v", path, err)
	}
	return nil
}

// masked returns a copy of cfg as YAML with every `secret:"true"` field
// masked: URLs keep their shape with the password replaced, anything else is
// replaced whole.
func masked(cfg *Config) ([]byte, error) {
	c := *cfg
	maskSecrets(reflect.ValueOf(&c).Elem())
	return yaml.Marshal(&c)
}

func maskSecrets(v reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f, fv := t.Field(i), v.Field(i)
		switch {
		case f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}):
			maskSecrets(fv)
		case f.Tag.Get("secret") == "true" && fv.Kind() == reflect.String && fv.String() != "" && fv.CanSet():
			fv.SetString(maskValue(fv.String()))
		case f.Tag.Get("secret") == "true" && fv.Kind() == reflect.Map && fv.Type().Elem().Kind() == reflect.String && fv.CanSet():
			m := reflect.MakeMapWithSize(fv.Type(), fv.Len())
			for _, k := range fv.MapKeys() {
				m.SetMapIndex(k, reflect.ValueOf(maskValue(fv.MapIndex(k).String())).Convert(fv.Type().Elem()))
			}
			fv.Set(m)
		}
	}
}

func maskValue(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "token") || strings.Contains(strings.ToLower(k), "secret") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if strings.HasPrefix(s, "sqlite:") {
		return s // a file path is not a secret
	}
	return "********"
}
