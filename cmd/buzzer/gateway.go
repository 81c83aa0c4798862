package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	goredis "github.com/redis/go-redis/v9"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/gateway"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/georegistry"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/maxmind"
	"github.com/buzzer-bet/buzzer/redis"
)

func gatewayCommands() map[string]command {
	return map[string]command{
		"gateway":      {"admit regulated requests (JWT, geolocation, rate limits) and route each to its verified jurisdiction's edge", runGateway},
		"dev geotoken": {"fetch a location challenge for a player session and print a dev-provider-signed geolocation token", runDevGeotoken},
	}
}

// GeoConfig configures the geolocation compliance checks of a node that
// verifies tokens itself (the gateway; serve in one process).
type GeoConfig struct {
	// ProviderJWKSURL is the geolocation provider's key set; RegistryURL the
	// operator's self-exclusion/consent registry. Both are required outside
	// dev mode; in dev mode the dev provider key in the data dir and the
	// simulated registry are used.
	ProviderJWKSURL string `yaml:"provider_jwks_url"`
	ProviderIssuer  string `yaml:"provider_issuer"`
	RegistryURL     string `yaml:"registry_url"`
	// MMDB is a MaxMind City database; required outside dev mode.
	MMDB string `yaml:"mmdb"`
	// BoundaryBufferM and DecisionTTL: zero takes geo's defaults (500 m, 5m).
	BoundaryBufferM float64       `yaml:"boundary_buffer_m"`
	DecisionTTL     time.Duration `yaml:"decision_ttl"`
	// GatewayJWKS is, on `buzzer edge`, the gateway's public decision keys
	// (default DATA_DIR/keys/gateway.jwks.json); the edge verifies no token
	// itself, so it ignores every other field.
	GatewayJWKS string `yaml:"gateway_jwks"`
	// ChallengesRedisURL keeps location challenges in Redis (keys
	// buzzer:geo:*), so the node that checks a token need not be the one
	// that issued its challenge: set it on every serve node or gateway behind
	// one load balancer. Empty keeps them in process memory (then clients
	// need session affinity). A gateway with --redis-url uses that Redis
	// unless this is set.
	ChallengesRedisURL string `yaml:"challenges_redis_url" secret:"true"`
}

// devIPLocation is where dev mode places loopback and private addresses
// (Trenton, NJ, a few km from the PA line), so `dev geotoken` fixes around
// Trenton/Morrisville pass the IP-versus-GPS distance check.
var devIPLocation = geo.IPLocation{Point: geo.Point{Lat: 40.2206, Lon: -74.7597}, Country: "US", Subdivision: "NJ"}

// chainLocator asks each locator in turn until one knows the address.
type chainLocator []geo.IPLocator

func (c chainLocator) LocateIP(ctx context.Context, ip netip.Addr) (geo.IPLocation, error) {
	for _, l := range c {
		loc, err := l.LocateIP(ctx, ip)
		if !errors.Is(err, geo.ErrIPNotFound) {
			return loc, err
		}
	}
	return geo.IPLocation{}, geo.ErrIPNotFound
}

// newGeoService builds the geolocation service for the given licensed
// jurisdictions. closers are to run at shutdown.
func newGeoService(cfg GeoConfig, dataDir string, dev bool, jurisdictions []geo.Jurisdiction) (_ *geo.Service, closers []func(), err error) {
	gcfg := geo.Config{Jurisdictions: jurisdictions, Issuer: cfg.ProviderIssuer, BoundaryBufferM: cfg.BoundaryBufferM, DecisionTTL: cfg.DecisionTTL}
	deps := geo.Deps{Challenges: geo.NewMemoryChallenges(0, 0), Clock: buzzer.SystemClock{}, Rand: rand.Reader}
	if cfg.ChallengesRedisURL != "" {
		client, err := dialRedis(cfg.ChallengesRedisURL, "geo.challenges_redis_url")
		if err != nil {
			return nil, nil, err
		}
		closers = append(closers, func() { _ = client.Close() })
		if deps.Challenges, err = redis.NewChallenges(client, "buzzer:geo:", 0); err != nil {
			return nil, closers, err
		}
	}
	if deps.Boundaries, err = geo.USStates(); err != nil {
		return nil, nil, err
	}
	var locators chainLocator
	if cfg.MMDB != "" {
		mm, err := maxmind.Open(cfg.MMDB)
		if err != nil {
			return nil, nil, buzzer.Wrap(err, buzzer.EINVALID, "geo mmdb: %v", err)
		}
		closers = append(closers, func() { _ = mm.Close() })
		locators = append(locators, mm)
	}
	if dev {
		prov, err := geo.OpenDevProvider(dataDir, rand.Reader)
		if err != nil {
			return nil, closers, err
		}
		deps.Keys, deps.Registry = prov, geo.NewDevRegistry()
		if gcfg.Issuer == "" {
			gcfg.Issuer = geo.DevIssuer
		}
		private := map[netip.Prefix]geo.IPLocation{}
		for _, p := range []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7"} {
			private[netip.MustParsePrefix(p)] = devIPLocation
		}
		locators = append(locators, geo.NewStaticIPLocator(private))
	} else {
		if cfg.ProviderJWKSURL == "" || cfg.RegistryURL == "" || cfg.MMDB == "" {
			return nil, closers, buzzer.Errorf(buzzer.EINVALID, "outside dev mode geo needs provider_jwks_url, registry_url and mmdb")
		}
		if deps.Keys, err = georegistry.NewJWKS(georegistry.JWKSConfig{URL: cfg.ProviderJWKSURL}); err != nil {
			return nil, closers, buzzer.Wrap(err, buzzer.EINVALID, "geo provider_jwks_url: %v", err)
		}
		if deps.Registry, err = georegistry.New(georegistry.Config{BaseURL: cfg.RegistryURL}); err != nil {
			return nil, closers, buzzer.Wrap(err, buzzer.EINVALID, "geo registry_url: %v", err)
		}
	}
	deps.IPs = locators
	svc, err := geo.NewService(gcfg, deps)
	return svc, closers, err
}

// GatewayConfig is the configuration of `buzzer gateway`.
type GatewayConfig struct {
	DataDir  string
	Topology string
	Dev      bool
	// RedisURL, when set, shares the rate-limit buckets between gateways.
	RedisURL string
	// SigningKeyFile holds the key that signs decisions forwarded to edges
	// (default DATA_DIR/keys/gateway.jwk; its public JWKS is written beside
	// it for the edges).
	SigningKeyFile string
	HTTP           httpapi.Config
	Gateway        gateway.Config
	Geo            GeoConfig
	Player         auth.Config
	Log            LogConfig
}

func parseGatewayFlags(args []string, stderr io.Writer) (*GatewayConfig, error) {
	c := &GatewayConfig{DataDir: "./data", Dev: true, HTTP: httpapi.DefaultConfig(), Gateway: gateway.DefaultConfig(),
		Player: auth.DefaultConfig(), Log: LogConfig{Level: "info", Format: "json"}}
	c.HTTP.HTTPAddr, c.HTTP.AdminAddr = "127.0.0.1:8000", "127.0.0.1:9000"
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.StringVar(&c.Topology, "topology", "", "topology YAML: jurisdiction → edge base URL (required)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the dev keys and the gateway signing key")
	fs.BoolVar(&c.Dev, "dev", c.Dev, "dev mode: trust the data dir's dev player and geolocation provider keys, simulated registry")
	fs.StringVar(&c.HTTP.HTTPAddr, "http-addr", c.HTTP.HTTPAddr, "player listener address")
	fs.StringVar(&c.HTTP.AdminAddr, "admin-addr", c.HTTP.AdminAddr, "admin listener address (metrics)")
	fs.DurationVar(&c.HTTP.DrainTimeout, "drain-timeout", c.HTTP.DrainTimeout, "how long shutdown waits for in-flight requests")
	fs.StringVar(&c.RedisURL, "redis-url", "", "Redis URL to share rate-limit buckets between gateways (default: in-process only)")
	fs.StringVar(&c.SigningKeyFile, "signing-key", "", "key signing forwarded decisions (default DATA_DIR/keys/gateway.jwk)")
	fs.Float64Var(&c.Gateway.PlayerRate.PerSecond, "player-rate", c.Gateway.PlayerRate.PerSecond, "requests per second per player")
	fs.IntVar(&c.Gateway.PlayerRate.Burst, "player-burst", c.Gateway.PlayerRate.Burst, "burst per player")
	fs.Float64Var(&c.Gateway.IPRate.PerSecond, "ip-rate", c.Gateway.IPRate.PerSecond, "requests per second per client address (IPv6 /64)")
	fs.IntVar(&c.Gateway.IPRate.Burst, "ip-burst", c.Gateway.IPRate.Burst, "burst per client address")
	fs.IntVar(&c.Gateway.MaxInFlight, "max-in-flight", c.Gateway.MaxInFlight, "concurrency limit; requests past it are shed with 503 + Retry-After")
	fs.DurationVar(&c.Gateway.EdgeTimeout, "edge-timeout", c.Gateway.EdgeTimeout, "bound on one call to an edge")
	fs.Func("trusted-proxies", "comma-separated CIDRs of the load balancers in front of the gateway; only from them is X-Forwarded-For read (right-most untrusted hop = client)", func(v string) error {
		p, err := gateway.ParseTrustedProxies(v)
		c.Gateway.TrustedProxies = p
		return err
	})
	fs.StringVar(&c.Geo.ProviderJWKSURL, "geo-jwks-url", "", "geolocation provider JWKS URL (required unless --dev)")
	fs.StringVar(&c.Geo.ProviderIssuer, "geo-issuer", "", "required iss of geolocation tokens")
	fs.StringVar(&c.Geo.RegistryURL, "geo-registry-url", "", "self-exclusion/consent registry base URL (required unless --dev)")
	fs.StringVar(&c.Geo.MMDB, "mmdb", "", "MaxMind City MMDB for IP location (required unless --dev)")
	fs.Float64Var(&c.Geo.BoundaryBufferM, "boundary-buffer-m", 0, "deny fixes closer than this to a boundary (default 500)")
	fs.StringVar(&c.Player.JWKSURL, "player-jwks-url", "", "player token JWKS URL (required unless --dev)")
	fs.StringVar(&c.Player.Issuer, "player-issuer", "", "player token issuer (required unless --dev)")
	fs.StringVar(&c.Player.Audience, "player-audience", "", "player token audience (required unless --dev)")
	fs.StringVar(&c.Log.Level, "log-level", c.Log.Level, "debug, info, warn or error")
	fs.StringVar(&c.Log.Format, "log-format", c.Log.Format, "json or text")
	if err := parseFlags(fs, args, stderr); err != nil {
		return nil, err
	}
	if c.Topology == "" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "gateway needs --topology FILE")
	}
	if c.SigningKeyFile == "" {
		c.SigningKeyFile = gateway.KeyFile(c.DataDir)
	}
	if err := c.HTTP.Validate(); err != nil {
		return nil, err
	}
	if err := c.Gateway.Validate(); err != nil {
		return nil, err
	}
	if c.Log.Level != "debug" && c.Log.Level != "info" && c.Log.Level != "warn" && c.Log.Level != "error" {
		return nil, buzzer.Errorf(buzzer.EINVALID, "log.level must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if !c.Dev {
		if err := c.Player.Validate(); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "player auth: %s", buzzer.ErrorMessage(err))
		}
	}
	return c, nil
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseGatewayFlags(args, stderr)
	if err != nil {
		return err
	}
	topo, err := gateway.LoadTopology(cfg.Topology)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	var closers []func()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	playerCfg := cfg.Player
	var admins httpapi.Verifier
	if cfg.Dev {
		keys, err := auth.LoadOrCreateDevKeys(cfg.DataDir)
		if err != nil {
			return err
		}
		playerCfg = auth.DevPlayerConfig(keys)
		adm, err := auth.NewVerifier(auth.DevAdminConfig(keys), buzzer.SystemClock{}, nil)
		if err != nil {
			return err
		}
		closers = append(closers, adm.Close)
		admins = adm
		log.Warn("dev mode: trusting the data dir's dev keys and a simulated registry; never run production like this", "data_dir", cfg.DataDir)
	}
	players, err := auth.NewVerifier(playerCfg, buzzer.SystemClock{}, nil)
	if err != nil {
		return err
	}
	closers = append(closers, players.Close)

	if cfg.Geo.ChallengesRedisURL == "" {
		cfg.Geo.ChallengesRedisURL = cfg.RedisURL
	}
	geoSvc, geoClosers, err := newGeoService(cfg.Geo, cfg.DataDir, cfg.Dev, topo.Jurisdictions())
	closers = append(closers, geoClosers...)
	if err != nil {
		return err
	}
	signer, err := gateway.OpenSigner(cfg.SigningKeyFile, rand.Reader)
	if err != nil {
		return err
	}
	deps := gateway.Deps{Topology: topo, Players: players, Geo: geoSvc, Signer: signer, Registerer: reg, Log: log, Clock: buzzer.SystemClock{}}
	if cfg.RedisURL != "" {
		opts, err := goredis.ParseURL(cfg.RedisURL)
		if err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "--redis-url: %v", err)
		}
		client := goredis.NewClient(opts)
		closers = append(closers, func() { _ = client.Close() })
		if deps.SharedPlayers, err = redis.NewRateLimiter(client, "buzzer:rl:player:", cfg.Gateway.PlayerRate, nil); err != nil {
			return err
		}
		if deps.SharedIPs, err = redis.NewRateLimiter(client, "buzzer:rl:ip:", cfg.Gateway.IPRate, nil); err != nil {
			return err
		}
	}
	gw, err := gateway.New(cfg.Gateway, deps)
	if err != nil {
		return err
	}
	closers = append(closers, gw.Close)
	srv, err := httpapi.New(cfg.HTTP, log, players, admins, reg)
	if err != nil {
		return err
	}
	srv.MountGeo(geoSvc)
	gw.Mount(srv)

	if err := srv.Listen(); err != nil {
		return err
	}
	srv.Serve()
	player, admin := srv.Addrs()
	edges := make([]string, 0, len(topo.Edges))
	for _, j := range topo.Jurisdictions() {
		edges = append(edges, string(j)+"="+topo.Edges[j].Redacted())
	}
	log.Info("gateway listening", "player", player, "admin", admin, "edges", strings.Join(edges, " "))
	warmCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = players.Warm(warmCtx)
	cancel()
	if err != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		return fmt.Errorf("warm-up player keys: %w", err)
	}
	srv.SetReady(true)
	fmt.Fprintf(stdout, "buzzer gateway serving players on http://%s and operators on http://%s\n", player, admin)

	<-ctx.Done()
	log.Info("shutting down: draining in-flight requests", "deadline", cfg.HTTP.DrainTimeout.String())
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		log.Error("shutdown", "err", err)
	}
	log.Info("stopped")
	return nil
}

// runDevGeotoken plays a geolocation provider's SDK: it asks the target for
// a challenge for the player session of --token and prints a token signed by
// the dev provider key of --data-dir, located at --lat/--lon.
func runDevGeotoken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev geotoken", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "data dir holding the dev geolocation provider key the target trusts")
	target := fs.String("target", "http://127.0.0.1:8080", "base URL of the gateway or serve that issues the challenge")
	token := fs.String("token", "", "the player's bearer token (required)")
	lat := fs.Float64("lat", 0, "latitude of the fix (required)")
	lon := fs.Float64("lon", 0, "longitude of the fix (required)")
	ip := fs.String("ip", "127.0.0.1", "the device's IP address")
	accuracy := fs.Float64("accuracy", 10, "GPS accuracy radius in metres")
	vpn := fs.Bool("vpn", false, "raise the VPN risk flag")
	ttl := fs.Duration("ttl", 2*time.Minute, "token lifetime")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *token == "":
		return buzzer.Errorf(buzzer.EINVALID, "--token is required")
	case !set["lat"] || !set["lon"] || *lat < -90 || *lat > 90 || *lon < -180 || *lon > 180:
		return buzzer.Errorf(buzzer.EINVALID, "--lat and --lon are required, within [-90, 90] and [-180, 180]")
	case *ttl < time.Second || *ttl > 10*time.Minute:
		return buzzer.Errorf(buzzer.EINVALID, "--ttl must be between 1s and 10m")
	case !(*accuracy > 0):
		return buzzer.Errorf(buzzer.EINVALID, "--accuracy must be positive")
	}
	if _, err := netip.ParseAddr(*ip); err != nil {
		return buzzer.Errorf(buzzer.EINVALID, "--ip %q is not an IP address", *ip)
	}
	base, err := parseTarget(*target)
	if err != nil {
		return err
	}
	g, err := newDevGeolocator(*dataDir, nil)
	if err != nil {
		return err
	}
	tok, err := g.Token(ctx, base, *token, devFix{Point: geo.Point{Lat: *lat, Lon: *lon}, IP: *ip, AccuracyM: *accuracy, VPN: *vpn, TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// dialRedis connects to a Redis URL and checks it answers within 5 s, so a
// wrong address stops start-up with its name instead of failing requests.
func dialRedis(url, setting string) (*goredis.Client, error) {
	opts, err := goredis.ParseURL(url)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EINVALID, "%s: %v", setting, err)
	}
	client := goredis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "%s: cannot reach Redis at %s", setting, maskValue(url))
	}
	return client, nil
}
