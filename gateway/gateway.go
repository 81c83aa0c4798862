package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/geo"
	"github.com/buzzer-bet/buzzer/httpapi"
)

// Config tunes the gateway. DefaultConfig gives safe values; Validate names
// the bad field.
type Config struct {
	// EdgeTimeout bounds one proxied call, from sending the request to the
	// end of the response headers (and the whole call through its context).
	EdgeTimeout time.Duration `yaml:"edge_timeout"`
	// DialTimeout bounds connecting to an edge.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// MaxInFlight is the concurrency limit; requests past it are shed at
	// once with 503 and Retry-After.
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxIdleConnsPerEdge bounds the keep-alive pool to each edge.
	MaxIdleConnsPerEdge int `yaml:"max_idle_conns_per_edge"`
	// PlayerRate and IPRate are the token buckets per player and per client
	// address (IPv6 by /64).
	PlayerRate Rate `yaml:"player_rate"`
	IPRate     Rate `yaml:"ip_rate"`
	// LimiterTimeout bounds a call to a shared (Redis) limiter; past it the
	// in-process buckets answer.
	LimiterTimeout time.Duration `yaml:"limiter_timeout"`
	// TrustedProxies are the load balancers in front of the gateway: only
	// when the TCP peer is one of them is X-Forwarded-For read (see
	// ClientAddr). Empty: the peer is the client and the header is ignored.
	TrustedProxies []netip.Prefix `yaml:"trusted_proxies"`
}

// DefaultConfig returns the defaults of `buzzer gateway`.
func DefaultConfig() Config {
	return Config{
		EdgeTimeout:         5 * time.Second,
		DialTimeout:         time.Second,
		MaxInFlight:         512,
		MaxIdleConnsPerEdge: 256,
		PlayerRate:          Rate{PerSecond: 20, Burst: 40},
		IPRate:              Rate{PerSecond: 100, Burst: 200},
		LimiterTimeout:      50 * time.Millisecond,
	}
}

// Validate names the bad field.
func (c Config) Validate() error {
	for name, d := range map[string]time.Duration{"edge_timeout": c.EdgeTimeout, "dial_timeout": c.DialTimeout, "limiter_timeout": c.LimiterTimeout} {
		if d <= 0 || d > 5*time.Minute {
			return buzzer.Errorf(buzzer.EINVALID, "gateway %s must be in (0, 5m], got %s", name, d)
		}
	}
	if c.MaxInFlight < 1 || c.MaxInFlight > 1_000_000 {
		return buzzer.Errorf(buzzer.EINVALID, "gateway max_in_flight must be 1..1000000, got %d", c.MaxInFlight)
	}
	if c.MaxIdleConnsPerEdge < 1 {
		return buzzer.Errorf(buzzer.EINVALID, "gateway max_idle_conns_per_edge must be >= 1")
	}
	if err := c.PlayerRate.Validate(); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "gateway player_rate: %s", buzzer.ErrorMessage(err))
	}
	if err := c.IPRate.Validate(); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "gateway ip_rate: %s", buzzer.ErrorMessage(err))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			return buzzer.Errorf(buzzer.EINVALID, "gateway trusted_proxies holds an invalid prefix")
		}
	}
	return nil
}

// Deps are the gateway's collaborators.
type Deps struct {
	Topology Topology
	// Players verifies bearer tokens (auth.Verifier, with its cache).
	Players httpapi.Verifier
	// Geo verifies geolocation tokens and caches decisions per session.
	Geo *geo.Service
	// Signer signs the decision forwarded to the edge.
	Signer *Signer
	// SharedPlayers and SharedIPs, when set, are limiters shared between
	// gateways (redis.RateLimiter); the in-process buckets answer whenever
	// they cannot. Nil means in-process only.
	SharedPlayers, SharedIPs Limiter
	Registerer               prometheus.Registerer
	Log                      *slog.Logger
	// Clock drives the token buckets and the forwarded decisions' times.
	Clock buzzer.Clock
	// Transport reaches the edges; default an http.Transport built from
	// Config. Tests may inject one.
	Transport http.RoundTripper
}

// RegulatedPrefixes are the path prefixes of regulated routes: each needs a
// verified location and goes to that jurisdiction's edge.
var RegulatedPrefixes = []string{"/v1/wallet", "/v1/bets", "/v1/tables", "/v1/rng/draws"}

// Gateway admits and routes regulated requests.
type Gateway struct {
	cfg             Config
	deps            Deps
	log             *slog.Logger
	clock           buzzer.Clock
	players         Limiter
	ips             Limiter
	inflight        *Concurrency
	edges           map[geo.Jurisdiction]*httputil.ReverseProxy
	parent          *httputil.ReverseProxy
	buffers         *bufferPool
	closeIdle       func()
	lastFallbackLog atomic.Int64

	total       *prometheus.HistogramVec
	integration *prometheus.HistogramVec
	rejected    *prometheus.CounterVec
	fallbacks   prometheus.Counter
}

// New validates cfg and deps and builds a Gateway.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(deps.Topology.Edges) == 0 || deps.Players == nil || deps.Geo == nil || deps.Signer == nil || deps.Registerer == nil {
		return nil, buzzer.Errorf(buzzer.EINVALID, "gateway: topology, player verifier, geo service, signer and registerer are required")
	}
	served := map[geo.Jurisdiction]bool{}
	for _, j := range deps.Geo.Config().Jurisdictions {
		served[j] = true
	}
	for j := range deps.Topology.Edges {
		if !served[j] {
			return nil, buzzer.Errorf(buzzer.EINVALID, "gateway: topology names an edge for %s, which the geolocation service is not licensed for", j)
		}
	}
	g := &Gateway{cfg: cfg, deps: deps, log: deps.Log, clock: deps.Clock, inflight: NewConcurrency(cfg.MaxInFlight), edges: map[geo.Jurisdiction]*httputil.ReverseProxy{}, buffers: newBufferPool()}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.clock == nil {
		g.clock = buzzer.SystemClock{}
	}
	buckets := []float64{.0001, .00025, .0005, .00075, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	g.total = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "buzzer_gateway_request_duration_seconds", Buckets: buckets,
		Help: "Total time the gateway spent on a request, per route, jurisdiction and status; minus buzzer_gateway_integration_duration_seconds it is the gateway's own overhead.",
	}, []string{"route", "jurisdiction", "code"})
	g.integration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "buzzer_gateway_integration_duration_seconds", Buckets: buckets,
		Help: "Time inside the downstream call (edge or parent), from sending the request to the end of the response body, per route and jurisdiction.",
	}, []string{"route", "jurisdiction"})
	g.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "buzzer_gateway_rejected_total", Help: "Requests the gateway refused itself, by reason.",
	}, []string{"reason"})
	g.fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "buzzer_gateway_limiter_fallbacks_total", Help: "Shared rate-limiter calls that failed and were answered by the in-process buckets.",
	})
	inflight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "buzzer_gateway_requests_in_flight", Help: "Requests holding a gateway concurrency slot.",
	}, func() float64 { return float64(g.inflight.InFlight()) })
	for _, c := range []prometheus.Collector{g.total, g.integration, g.rejected, g.fallbacks, inflight} {
		if err := deps.Registerer.Register(c); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EINVALID, "gateway metrics: %v", err)
		}
	}
	var err error
	if g.players, err = g.limiter(cfg.PlayerRate, deps.SharedPlayers); err != nil {
		return nil, err
	}
	if g.ips, err = g.limiter(cfg.IPRate, deps.SharedIPs); err != nil {
		return nil, err
	}
	transport := deps.Transport
	if transport == nil {
		transport = &http.Transport{
			DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			ResponseHeaderTimeout: cfg.EdgeTimeout,
			MaxIdleConns:          cfg.MaxIdleConnsPerEdge * (len(deps.Topology.Edges) + 1),
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerEdge,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   cfg.DialTimeout,
			ForceAttemptHTTP2:     true,
		}
	}
	g.closeIdle = func() {}
	if ci, ok := transport.(interface{ CloseIdleConnections() }); ok {
		g.closeIdle = ci.CloseIdleConnections
	}
	timed := timingTransport{base: transport}
	for j, u := range deps.Topology.Edges {
		g.edges[j] = g.proxy(u, timed, true)
	}
	if deps.Topology.Parent != nil {
		g.parent = g.proxy(deps.Topology.Parent, timed, false)
	}
	return g, nil
}

// Close drops the idle connections to the edges; call it after the
// listener has drained.
func (g *Gateway) Close() { g.closeIdle() }

func (g *Gateway) limiter(r Rate, shared Limiter) (Limiter, error) {
	local, err := NewMemoryLimiter(r, g.clock, 0)
	if err != nil {
		return nil, err
	}
	if shared == nil {
		return local, nil
	}
	return FallbackLimiter{Primary: shared, Local: local, OnFallback: func(err error) {
		g.fallbacks.Inc()
		// One line per 10 s, not one per request, while Redis is down.
		now := time.Now().UnixNano()
		if last := g.lastFallbackLog.Load(); now-last >= int64(10*time.Second) && g.lastFallbackLog.CompareAndSwap(last, now) {
			g.log.Warn("shared rate limiter unavailable; using in-process buckets", "err", err)
		}
	}}, nil
}

// Mount registers the gateway's routes on s: every regulated prefix (with
// and without a trailing slash, any method) and, when the topology has a
// parent, everything else under /v1/. Mount the geo challenge route
// (s.MountGeo with the same geo.Service) beside it.
func (g *Gateway) Mount(s *httpapi.Server) {
	for _, p := range RegulatedPrefixes {
		s.Player(p, httpapi.Public, g.regulated(p))
		s.Player(p+"/", httpapi.Public, g.regulated(p+"/"))
	}
	if g.parent != nil {
		s.Player("/v1/", httpapi.Public, g.unregulated("/v1/"))
	}
}

type ctxKey int

const (
	assertionKey ctxKey = iota
	timingKey
)

func (g *Gateway) proxy(target *url.URL, rt http.RoundTripper, regulated bool) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// The chain a trusted proxy forwarded is passed on, with the
			// peer appended; anything else a client wrote is dropped.
			if peer, ok := parseHop(pr.In.RemoteAddr); ok && trustedAddr(peer, g.cfg.TrustedProxies) {
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			}
			pr.SetXForwarded()
			// The geolocation token was consumed here; a client-sent
			// decision header is never trusted, only the one we sign.
			pr.Out.Header.Del(httpapi.GeoTokenHeader)
			pr.Out.Header.Del(DecisionHeader)
			if a, ok := pr.In.Context().Value(assertionKey).(string); ok && regulated {
				pr.Out.Header.Set(DecisionHeader, a)
			}
		},
		Transport: rt,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				g.fail(w, r, buzzer.Errorf(buzzer.ETOOLARGE, "The request body is larger than %d bytes.", tooLarge.Limit), 0)
				return
			}
			g.rejected.WithLabelValues("edge_unreachable").Inc()
			g.log.Warn("downstream call failed", "target", target.Redacted(), "path", r.URL.Path, "err", err)
			if !regulated {
				g.fail(w, r, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "The service is unavailable; try again shortly."), 0)
				return
			}
			g.fail(w, r, httpapi.ComplianceUnavailable(err), 0)
		},
		ErrorLog:   slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BufferPool: g.buffers,
	}
}

// bufferPool lends the proxies their copy buffers, so a response costs no
// fresh 32 KiB allocation.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

// timing accumulates one request's time inside the downstream call.
type timing struct{ nanos atomic.Int64 }

// timingTransport measures from RoundTrip to the response body's Close (or
// to the error), into the request's timing.
type timingTransport struct{ base http.RoundTripper }

func (t timingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tm, _ := req.Context().Value(timingKey).(*timing)
	start := time.Now()
	resp, err := t.base.RoundTrip(req)
	if tm == nil {
		return resp, err
	}
	if err != nil {
		tm.nanos.Add(int64(time.Since(start)))
		return resp, err
	}
	resp.Body = &timedBody{ReadCloser: resp.Body, start: start, tm: tm}
	return resp, nil
}

type timedBody struct {
	io.ReadCloser
	start time.Time
	tm    *timing
	done  atomic.Bool
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	if b.done.CompareAndSwap(false, true) {
		b.tm.nanos.Add(int64(time.Since(b.start)))
	}
	return err
}

// statusRecorder keeps the status for the metrics.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush lets streamed responses through.
func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// retryAfterWriter sets its own Retry-After as the status is written, over
// the fixed one WriteError sets.
type retryAfterWriter struct {
	http.ResponseWriter
	seconds string
}

func (w retryAfterWriter) WriteHeader(code int) {
	w.Header().Set("Retry-After", w.seconds)
	w.ResponseWriter.WriteHeader(code)
}

// fail writes err as problem+json; retry > 0 sets Retry-After to it,
// rounded up to whole seconds.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, err error, retry time.Duration) {
	if retry > 0 {
		w = retryAfterWriter{ResponseWriter: w, seconds: strconv.Itoa(int(math.Ceil(retry.Seconds())))}
	}
	httpapi.WriteError(w, r, g.log, err)
}

func (g *Gateway) allow(ctx context.Context, l Limiter, key string) (bool, time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.LimiterTimeout)
	defer cancel()
	ok, wait, err := l.Allow(ctx, key)
	if err != nil {
		// Only a limiter without a local fallback can get here; refusing
		// is the safe answer.
		g.log.Warn("rate limiter failed", "err", err)
		return false, time.Second
	}
	return ok, wait
}

// admit applies the per-IP limit and takes a concurrency slot; release
// must be called when it returns true.
func (g *Gateway) admit(w http.ResponseWriter, r *http.Request) bool {
	if ok, wait := g.allow(r.Context(), g.ips, ipKey(ClientAddr(r, g.cfg.TrustedProxies))); !ok {
		g.rejected.WithLabelValues("rate_limited_ip").Inc()
		g.fail(w, r, buzzer.Errorf(buzzer.ETOOMANY, "Too many requests from your network; slow down.").WithReason("rate_limited_ip"), wait)
		return false
	}
	if !g.inflight.TryAcquire() {
		g.rejected.WithLabelValues("overloaded").Inc()
		g.fail(w, r, buzzer.Errorf(buzzer.EUNAVAILABLE, "The service is at capacity; retry shortly.").WithReason("overloaded"), time.Second)
		return false
	}
	return true
}

func (g *Gateway) regulated(route string) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		jur := "none"
		tm := &timing{}
		defer func() {
			g.total.WithLabelValues(route, jur, strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
			if n := tm.nanos.Load(); n > 0 {
				g.integration.WithLabelValues(route, jur).Observe(time.Duration(n).Seconds())
			}
		}()
		if !g.admit(rec, r) {
			return nil
		}
		defer g.inflight.Release()

		p, err := g.authenticate(r)
		if err != nil {
			g.rejected.WithLabelValues("unauthorized").Inc()
			g.fail(rec, r, err, 0)
			return nil
		}
		r = r.WithContext(httpapi.WithPrincipal(r.Context(), p))
		if ok, wait := g.allow(r.Context(), g.players, "player:"+p.Subject); !ok {
			g.rejected.WithLabelValues("rate_limited_player").Inc()
			g.fail(rec, r, buzzer.Errorf(buzzer.ETOOMANY, "Too many requests; slow down.").WithReason("rate_limited_player"), wait)
			return nil
		}

		d, err := httpapi.LocalGeo{Service: g.deps.Geo}.Decide(r, p)
		if err != nil {
			reason := buzzer.ErrorReason(err)
			if reason == "" {
				reason = buzzer.ErrorCode(err)
			}
			g.rejected.WithLabelValues(reason).Inc()
			g.fail(rec, r, err, 0)
			return nil
		}
		jur = string(d.Jurisdiction)
		// Only the edge of the verified jurisdiction; no fallback to any
		// other, whatever its state.
		edge, ok := g.edges[d.Jurisdiction]
		if !ok {
			g.rejected.WithLabelValues(geo.ReasonUnavailable).Inc()
			g.fail(rec, r, httpapi.ComplianceUnavailable(errors.New("no edge for "+jur)), 0)
			return nil
		}
		assertion, err := g.deps.Signer.Sign(d, r, g.clock.Now())
		if err != nil {
			g.fail(rec, r, httpapi.ComplianceUnavailable(err), 0)
			return nil
		}
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.EdgeTimeout)
		defer cancel()
		ctx = context.WithValue(context.WithValue(ctx, assertionKey, assertion), timingKey, tm)
		edge.ServeHTTP(rec, r.WithContext(ctx))
		return nil
	}
}

func (g *Gateway) unregulated(route string) httpapi.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		tm := &timing{}
		defer func() {
			g.total.WithLabelValues(route, "parent", strconv.Itoa(rec.status)).Observe(time.Since(start).Seconds())
			if n := tm.nanos.Load(); n > 0 {
				g.integration.WithLabelValues(route, "parent").Observe(time.Duration(n).Seconds())
			}
		}()
		if !g.admit(rec, r) {
			return nil
		}
		defer g.inflight.Release()
		ctx, cancel := context.WithTimeout(r.Context(), g.cfg.EdgeTimeout)
		defer cancel()
		g.parent.ServeHTTP(rec, r.WithContext(context.WithValue(ctx, timingKey, tm)))
		return nil
	}
}

// authenticate verifies the bearer token as the player listener does: a
// verifier that cannot answer denies (503), any other failure is 401.
func (g *Gateway) authenticate(r *http.Request) (p auth.Principal, err error) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return p, buzzer.Errorf(buzzer.EUNAUTHORIZED, "Missing Authorization: Bearer token.").WithReason("missing_token")
	}
	p, err = g.deps.Players.Verify(r.Context(), strings.TrimSpace(tok))
	if err != nil {
		if c := buzzer.ErrorCode(err); c != buzzer.EUNAUTHORIZED && c != buzzer.EUNAVAILABLE {
			err = buzzer.Wrap(err, buzzer.EUNAUTHORIZED, "The token is not valid.")
		}
		return p, err
	}
	return p, nil
}
