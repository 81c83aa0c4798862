// Package httpapi is Buzzer's HTTP transport: the player listener and the
// separate admin listener, problem+json errors, strict JSON decoding, request
// limits and timeouts, JWT authentication middleware, request IDs, structured
// access logs and per-route latency histograms. It translates between HTTP and
// the domain services; it must never hold business rules or touch an engine.
//
// Convention for parts: a part's routes live in httpapi/<part>.go as a method
// `func (s *Server) Mount<Part>(deps ...)` that calls s.Player or s.Admin for
// each route. Handlers return an error, which becomes problem+json; they read
// the authenticated player with PlayerFrom and decode bodies with DecodeJSON.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
)

// Config configures both listeners.
type Config struct {
	HTTPAddr          string        `yaml:"http_addr"`
	AdminAddr         string        `yaml:"admin_addr"`
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	ReadTimeout       time.Duration `yaml:"read_timeout"`
	WriteTimeout      time.Duration `yaml:"write_timeout"`
	IdleTimeout       time.Duration `yaml:"idle_timeout"`
	// RequestTimeout bounds a handler's context. Money changes detach from the
	// client's context but keep their own bound (see wallet).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	MaxBodyBytes   int64         `yaml:"max_body_bytes"`
	MaxHeaderBytes int           `yaml:"max_header_bytes"`
	// DrainTimeout bounds graceful shutdown: in-flight requests get this long.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// DefaultConfig returns the defaults of `buzzer serve`.
func DefaultConfig() Config {
	return Config{
		HTTPAddr:          "127.0.0.1:8080",
		AdminAddr:         "127.0.0.1:9090",
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		RequestTimeout:    10 * time.Second,
		MaxBodyBytes:      64 << 10,
		MaxHeaderBytes:    16 << 10,
		DrainTimeout:      20 * time.Second,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	for name, addr := range map[string]string{"http_addr": c.HTTPAddr, "admin_addr": c.AdminAddr} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return buzzer.Errorf(buzzer.EINVALID, "http %s %q is not host:port", name, addr)
		}
	}
	if c.HTTPAddr == c.AdminAddr && !strings.HasSuffix(c.HTTPAddr, ":0") {
		return buzzer.Errorf(buzzer.EINVALID, "http admin_addr must differ from http_addr: console traffic must not share the player listener")
	}
	for name, d := range map[string]time.Duration{
		"read_header_timeout": c.ReadHeaderTimeout, "read_timeout": c.ReadTimeout, "write_timeout": c.WriteTimeout,
		"idle_timeout": c.IdleTimeout, "request_timeout": c.RequestTimeout, "drain_timeout": c.DrainTimeout,
	} {
		if d <= 0 {
			return buzzer.Errorf(buzzer.EINVALID, "http %s must be > 0", name)
		}
	}
	if c.MaxBodyBytes < 1024 || c.MaxHeaderBytes < 1024 {
		return buzzer.Errorf(buzzer.EINVALID, "http max_body_bytes and max_header_bytes must be >= 1024")
	}
	return nil
}

// Verifier checks a bearer token. auth.Verifier implements it.
type Verifier interface {
	Verify(ctx context.Context, token string) (auth.Principal, error)
}

// HandlerFunc is a handler whose error becomes problem+json.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Access says who may call a player route.
type Access int

const (
	// Public routes need no token (catalog, RNG checkpoint and key).
	Public Access = iota
	// Player routes need a valid player token.
	Player
)

// Server holds both listeners' routes and shared middleware.
type Server struct {
	cfg      Config
	log      *slog.Logger
	players  Verifier
	admins   Verifier
	registry *prometheus.Registry

	playerMux *http.ServeMux
	adminMux  *http.ServeMux
	latency   *prometheus.HistogramVec
	inflight  *prometheus.GaugeVec

	ready  atomic.Bool
	checks []ReadyCheck
	routes []Route

	// A jurisdiction's view (see Jurisdiction) has parent set and registers
	// its routes through it; the root keeps the shared routes.
	parent     *Server
	jur        string
	dispatched map[string]*dispatched
	gatherers  []prometheus.Gatherer

	mu        sync.Mutex
	servers   []*http.Server
	listeners []net.Listener
	wg        sync.WaitGroup
	// conns counts the connections the servers accepted and have not
	// closed or handed off (ConnState); Shutdown waits for it (see there).
	conns sync.WaitGroup
}

// ReadyCheck is a named dependency check run by /readyz.
type ReadyCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// New builds the server. players verifies player tokens; admins verifies the
// separate admin credential. The registry is passed in, never global.
func New(cfg Config, log *slog.Logger, players, admins Verifier, reg *prometheus.Registry) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: log, players: players, admins: admins, registry: reg,
		playerMux: http.NewServeMux(), adminMux: http.NewServeMux(),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "buzzer_http_request_duration_seconds",
			Help:    "Time from request read to response written, per listener and route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"listener", "route", "method", "code"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "buzzer_http_requests_in_flight",
			Help: "Requests being served, per listener.",
		}, []string{"listener"}),
	}
	reg.MustRegister(s.latency, s.inflight)

	for listener, mux := range map[string]*http.ServeMux{"player": s.playerMux, "admin": s.adminMux} {
		mux.Handle("GET /healthz", s.wrap(listener, "GET /healthz", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_ = WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
		})))
		mux.Handle("GET /readyz", s.wrap(listener, "GET /readyz", http.HandlerFunc(s.serveReady)))
	}
	s.adminMux.Handle("GET /metrics", s.wrap("admin", "GET /metrics", promhttp.HandlerFor(s, promhttp.HandlerOpts{Registry: reg})))
	for _, p := range []struct {
		pattern string
		h       http.HandlerFunc
	}{
		{"GET /debug/pprof/", pprof.Index}, {"GET /debug/pprof/cmdline", pprof.Cmdline},
		{"GET /debug/pprof/profile", pprof.Profile}, {"GET /debug/pprof/symbol", pprof.Symbol},
		{"GET /debug/pprof/trace", pprof.Trace},
	} {
		s.adminMux.Handle(p.pattern, s.wrap("admin", p.pattern, s.requireAdmin(p.h)))
	}
	// whoami: the identity the token proved, for clients and smoke tests.
	s.Player("GET /v1/me", Player, func(w http.ResponseWriter, r *http.Request) error {
		p, _ := PlayerFrom(r.Context())
		return WriteJSON(w, http.StatusOK, map[string]any{
			"player_id": p.Subject, "jurisdiction": p.Jurisdiction, "expires_at": p.ExpiresAt.UTC(),
		})
	})
	return s, nil
}

// Config returns the server's configuration.
func (s *Server) Config() Config { return s.cfg }

// AddReadyCheck adds a dependency that /readyz checks on every call.
func (s *Server) AddReadyCheck(name string, check func(ctx context.Context) error) {
	s.readyCheck(name, check)
}

// SetReady marks warm-up done (or, with false, starts draining: /readyz turns
// 503 so load balancers stop sending new players here).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		WriteError(w, r, nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "Warming up or draining."))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := s.checks
	s.mu.Unlock()
	for _, c := range checks {
		if err := c.Check(ctx); err != nil {
			WriteError(w, r, nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "Dependency %s is not ready.", c.Name))
			return
		}
	}
	_ = WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Player registers a route on the player listener.
func (s *Server) Player(pattern string, access Access, h HandlerFunc) {
	if s.parent != nil {
		s.parent.dispatch("player", pattern, access, s.jur, h)
		return
	}
	s.mu.Lock()
	s.routes = append(s.routes, Route{Pattern: pattern, Access: access})
	s.mu.Unlock()
	var inner http.Handler = s.adapt(h)
	if access == Player {
		inner = s.requirePlayer(inner)
	}
	s.playerMux.Handle(pattern, s.wrap("player", pattern, inner))
}

// Route is a registered player route.
type Route struct {
	Pattern string
	Access  Access
}

// PlayerRoutes lists the player routes in registration order (tests sweep
// every one of them, e.g. for object-level authorization).
func (s *Server) PlayerRoutes() []Route {
	if s.parent != nil {
		return s.parent.PlayerRoutes()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Route(nil), s.routes...)
}

// Admin registers an operator route on the admin listener; every admin route
// requires the admin credential.
func (s *Server) Admin(pattern string, h HandlerFunc) {
	if s.parent != nil {
		s.parent.dispatch("admin", pattern, Player, s.jur, h)
		return
	}
	s.adminMux.Handle(pattern, s.wrap("admin", pattern, s.requireAdmin(s.adapt(h))))
}

// PlayerHandler and AdminHandler expose the two listeners' handlers (tests
// drive them with httptest).
func (s *Server) PlayerHandler() http.Handler { return s.problems(s.playerMux) }
func (s *Server) AdminHandler() http.Handler  { return s.problems(s.adminMux) }

// problems answers requests no route matches as problem+json, keeping the
// mux's own verdict: 404 for an unknown path, 405 (with Allow) for a known
// path and the wrong method.
func (s *Server) problems(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		probe := &headerOnly{header: http.Header{}}
		mux.ServeHTTP(probe, r)
		if allow := probe.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if probe.status == http.StatusMethodNotAllowed {
			WriteError(w, r, s.log, buzzer.Errorf(EMETHOD, "Method %s is not allowed here.", r.Method))
			return
		}
		WriteError(w, r, s.log, buzzer.Errorf(buzzer.ENOTFOUND, "No such resource."))
	})
}

// EMETHOD is the code of a request whose path exists but not for its method.
const EMETHOD = "method_not_allowed"

// headerOnly records what the mux's fallback would answer, discarding the body.
type headerOnly struct {
	header http.Header
	status int
}

func (h *headerOnly) Header() http.Header         { return h.header }
func (h *headerOnly) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerOnly) WriteHeader(code int)        { h.status = code }

func (s *Server) adapt(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			WriteError(w, r, s.log, err)
		}
	})
}

type ctxKey int

const (
	requestIDKey ctxKey = iota
	principalKey
)

// RequestID returns the request's ID ("" outside a request).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// PlayerFrom returns the authenticated principal (player on the player
// listener, operator on the admin listener).
func PlayerFrom(ctx context.Context) (auth.Principal, bool) {
	p, ok := ctx.Value(principalKey).(auth.Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p (for handler tests and internal calls).
func WithPrincipal(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey, p)
}

func newRequestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validRequestID accepts a caller's X-Request-Id only when it is short and
// plain, so it can be logged and echoed safely.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// wrap adds request ID, body limit, timeout, panic recovery, access log and
// latency metrics around a route.
func (s *Server) wrap(listener, route string, next http.Handler) http.Handler {
	inflight := s.inflight.WithLabelValues(listener)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inflight.Inc()
		defer inflight.Dec()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), requestIDKey, id), s.cfg.RequestTimeout)
		defer cancel()
		r = r.WithContext(ctx)
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "request_id", id, "route", route, "panic", fmt.Sprint(p))
				if sw.status == 0 {
					WriteError(sw, r, nil, buzzer.Errorf(buzzer.EINTERNAL, "Internal error."))
				}
			}
			elapsed := time.Since(start)
			s.latency.WithLabelValues(listener, route, r.Method, strconv.Itoa(sw.status)).Observe(elapsed.Seconds())
			s.log.Info("request", "listener", listener, "request_id", id, "method", r.Method, "route", route,
				"status", sw.status, "bytes", sw.bytes, "duration_ms", float64(elapsed.Microseconds())/1000)
		}()
		next.ServeHTTP(sw, r)
	})
}

func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", buzzer.Errorf(buzzer.EUNAUTHORIZED, "Missing Authorization: Bearer token.").WithReason("missing_token")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", buzzer.Errorf(buzzer.EUNAUTHORIZED, "Authorization must be a Bearer token.").WithReason("malformed_authorization")
	}
	return strings.TrimSpace(tok), nil
}

func (s *Server) authenticate(v Verifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v == nil {
			WriteError(w, r, s.log, buzzer.Errorf(buzzer.EUNAVAILABLE, "Authentication is not configured."))
			return
		}
		tok, err := bearer(r)
		if err != nil {
			WriteError(w, r, s.log, err)
			return
		}
		p, err := v.Verify(r.Context(), tok)
		if err != nil {
			// Verification either says no or cannot answer; both deny.
			if c := buzzer.ErrorCode(err); c != buzzer.EUNAUTHORIZED && c != buzzer.EUNAVAILABLE {
				err = buzzer.Wrap(err, buzzer.EUNAUTHORIZED, "The token is not valid.")
			}
			WriteError(w, r, s.log, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
	})
}

func (s *Server) requirePlayer(next http.Handler) http.Handler {
	return s.authenticate(s.players, next)
}
func (s *Server) requireAdmin(next http.Handler) http.Handler { return s.authenticate(s.admins, next) }

// Listen opens both listeners (":0" picks a free port) without serving yet.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, addr := range []string{s.cfg.HTTPAddr, s.cfg.AdminAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range s.listeners {
				o.Close()
			}
			s.listeners = nil
			return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot listen on %s", addr)
		}
		s.listeners = append(s.listeners, l)
	}
	return nil
}

// UseListeners adopts two already-open listeners instead of Listen: those
// a process being upgraded handed over, so no connection is refused while
// one process gives way to the next.
func (s *Server) UseListeners(player, admin net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = []net.Listener{player, admin}
}

// ListenerFiles returns duplicates of the two listening sockets (player,
// admin) for a process taking over; the caller closes them once handed on.
func (s *Server) ListenerFiles() ([]*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*os.File
	for _, l := range s.listeners {
		tl, ok := l.(*net.TCPListener)
		if !ok {
			return nil, buzzer.Errorf(buzzer.EINTERNAL, "listener %s cannot be handed over", l.Addr())
		}
		f, err := tl.File()
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot duplicate listener %s", l.Addr())
		}
		out = append(out, f)
	}
	if len(out) != 2 {
		return nil, buzzer.Errorf(buzzer.EINTERNAL, "the server is not listening")
	}
	return out, nil
}

// Addrs returns the bound player and admin addresses after Listen.
func (s *Server) Addrs() (player, admin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.listeners) != 2 {
		return "", ""
	}
	return s.listeners[0].Addr().String(), s.listeners[1].Addr().String()
}

// Serve serves both listeners until Shutdown. It returns at once; errors
// other than a clean close are logged.
func (s *Server) Serve() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, h := range []http.Handler{s.PlayerHandler(), s.AdminHandler()} {
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
			ReadTimeout:       s.cfg.ReadTimeout,
			WriteTimeout:      s.cfg.WriteTimeout,
			IdleTimeout:       s.cfg.IdleTimeout,
			MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
			ConnState: func(_ net.Conn, st http.ConnState) {
				switch st {
				case http.StateNew:
					s.conns.Add(1)
				case http.StateClosed, http.StateHijacked:
					s.conns.Done()
				}
			},
		}
		s.servers = append(s.servers, srv)
		l := s.listeners[i]
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Error("listener stopped", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
}

// Shutdown stops accepting, turns /readyz to 503, and waits for in-flight
// requests until ctx ends; then it closes what remains.
//
// It closes the listeners itself and lets every connection already
// accepted be served before http.Server.Shutdown runs: a connection that
// http.Server reads a request from once its Shutdown has begun is closed
// unanswered, and on an upgrade the successor shares the listening sockets,
// so the connections accepted just before are exactly those. What is still
// in the kernel's accept queue waits there for the successor.
func (s *Server) Shutdown(ctx context.Context) error {
	s.SetReady(false)
	s.mu.Lock()
	servers, listeners := s.servers, s.listeners
	s.mu.Unlock()
	for _, srv := range servers {
		// Answers still being written tell their clients to close the
		// connection, so fewer requests race an idle connection's close
		// (this also closes the idle ones now).
		srv.SetKeepAlivesEnabled(false)
	}
	for _, l := range listeners {
		_ = l.Close()
	}
	s.wg.Wait() // every accept loop has returned: no connection starts now
	done := make(chan struct{})
	go func() { s.conns.Wait(); close(done) }()
	var firstErr error
	select {
	case <-done:
	case <-ctx.Done():
		firstErr = ctx.Err()
	}
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			srv.Close()
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}
