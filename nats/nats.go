// Package nats is Buzzer's NATS JetStream engine package: it starts the
// embedded JetStream server of `buzzer serve` (in-process connection, no
// listening port, store under the data dir, fsync on every write) or connects
// to an external NATS cluster, and creates the streams the parts publish to.
// It implements the domain's stream interfaces; it must never decide what a
// message means.
package nats

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/buzzer-bet/buzzer"
)

// Config selects embedded or external NATS.
type Config struct {
	// URL of an external NATS (cluster); empty runs the embedded server.
	URL string `yaml:"url" secret:"true"`
	// StoreDir holds the embedded server's JetStream files.
	StoreDir string `yaml:"store_dir"`
	// Listen, when non-empty (e.g. "127.0.0.1:0"), also exposes the embedded
	// server on TCP; by default it serves only the in-process connection, so it
	// can never clash with a NATS already running on 4222.
	Listen         string        `yaml:"listen"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	MaxStoreBytes  int64         `yaml:"max_store_bytes"`
}

// DefaultConfig returns safe defaults.
func DefaultConfig() Config {
	return Config{ConnectTimeout: 5 * time.Second, MaxStoreBytes: 8 << 30}
}

// Validate names the bad field.
func (c Config) Validate() error {
	if c.URL == "" && c.StoreDir == "" {
		return buzzer.Errorf(buzzer.EINVALID, "nats store_dir must be set for the embedded server")
	}
	if c.ConnectTimeout <= 0 {
		return buzzer.Errorf(buzzer.EINVALID, "nats connect_timeout must be > 0")
	}
	return nil
}

// Conn is a connection to JetStream, owning the embedded server if it started
// one.
type Conn struct {
	NC     *natsgo.Conn
	JS     jetstream.JetStream
	server *server.Server
}

// Start runs the embedded server (or dials URL) and connects.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Conn{}
	opts := []natsgo.Option{natsgo.Name("buzzer"), natsgo.Timeout(cfg.ConnectTimeout), natsgo.MaxReconnects(-1)}
	url := cfg.URL
	if url == "" {
		so := &server.Options{
			ServerName:         "buzzer-embedded",
			JetStream:          true,
			StoreDir:           cfg.StoreDir,
			JetStreamMaxStore:  cfg.MaxStoreBytes,
			JetStreamMaxMemory: 256 << 20,
			// Jepsen's NATS 2.12.1 analysis lost acknowledged writes under the
			// default two-minute flush: regulated streams fsync every write.
			SyncAlways: true,
			NoSigs:     true,
			NoLog:      true,
			DontListen: cfg.Listen == "",
		}
		if cfg.Listen != "" {
			host, port, err := splitHostPort(cfg.Listen)
			if err != nil {
				return nil, err
			}
			so.Host, so.Port = host, port
		}
		srv, err := server.NewServer(so)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot start embedded NATS")
		}
		srv.Start()
		if !srv.ReadyForConnections(cfg.ConnectTimeout) {
			srv.Shutdown()
			return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "embedded NATS did not become ready in %s", cfg.ConnectTimeout)
		}
		c.server = srv
		opts = append(opts, natsgo.InProcessServer(srv))
		url = ""
	} else if log != nil {
		log.Warn("external NATS: make sure its JetStream config sets sync_interval: always for regulated streams", "url", "(redacted)")
	}
	nc, err := natsgo.Connect(url, opts...)
	if err != nil {
		c.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot connect to NATS")
	}
	c.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		c.Close()
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot open JetStream")
	}
	c.JS = js
	return c, nil
}

// ClientURL returns a URL other processes can dial, when the embedded server
// listens on TCP; "" otherwise.
func (c *Conn) ClientURL() string {
	if c.server == nil || c.server.Addr() == nil {
		return ""
	}
	return c.server.ClientURL()
}

// Ping round-trips to the server within ctx.
func (c *Conn) Ping(ctx context.Context) error {
	if c.NC == nil {
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "NATS is not connected")
	}
	if err := c.NC.FlushWithContext(ctx); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "NATS does not answer")
	}
	return nil
}

// Close drains the connection and stops the embedded server, if any.
func (c *Conn) Close() {
	if c.NC != nil {
		_ = c.NC.Drain()
		c.NC.Close()
	}
	if c.server != nil {
		c.server.Shutdown()
		c.server.WaitForShutdown()
	}
}

// StreamSpec describes a stream a part needs.
type StreamSpec struct {
	Name     string
	Subjects []string
	// Regulated streams keep everything until the consumer that archives them
	// has acknowledged it (work-queue retention would delete on ack); they
	// are file-backed and replicated to Replicas nodes in a cluster.
	Regulated bool
	// Duplicates is the window in which a repeated Nats-Msg-Id is dropped.
	Duplicates time.Duration
	MaxAge     time.Duration
	Replicas   int
}

// EnsureStream creates the stream or updates it to spec.
func (c *Conn) EnsureStream(ctx context.Context, spec StreamSpec) (jetstream.Stream, error) {
	if spec.Name == "" || len(spec.Subjects) == 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "stream name and subjects must be set")
	}
	sc := jetstream.StreamConfig{
		Name:       spec.Name,
		Subjects:   spec.Subjects,
		Storage:    jetstream.FileStorage,
		Duplicates: spec.Duplicates,
		MaxAge:     spec.MaxAge,
		Replicas:   max(1, spec.Replicas),
		Retention:  jetstream.LimitsPolicy,
		Discard:    jetstream.DiscardOld,
	}
	if spec.Regulated {
		// Never discard regulated data to make room: refuse new writes instead,
		// so the publisher sees the fault.
		sc.Discard = jetstream.DiscardNew
	}
	s, err := c.JS.CreateOrUpdateStream(ctx, sc)
	if err != nil {
		return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot create stream %s", spec.Name)
	}
	return s, nil
}

func splitHostPort(hp string) (string, int, error) {
	var host string
	var port int
	i := len(hp) - 1
	for i >= 0 && hp[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, buzzer.Errorf(buzzer.EINVALID, "nats listen must be host:port")
	}
	host = hp[:i]
	if _, err := fmt.Sscanf(hp[i+1:], "%d", &port); err != nil || port < 0 || port > 65535 {
		return "", 0, buzzer.Errorf(buzzer.EINVALID, "nats listen must be host:port")
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}
