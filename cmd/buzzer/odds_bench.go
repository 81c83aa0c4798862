package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/fanout"
	"github.com/buzzer-bet/buzzer/httpapi"
	"github.com/buzzer-bet/buzzer/nats"
)

// OddsBenchResult is what `buzzer bench odds` prints. Latency is from the
// provider's timestamp of the message that caused a delta (odds.Delta
// SourceTime) to the moment the subscriber read it off its WebSocket, for
// every delivered delta that has one (a conflated update counts each delta
// it carries). A flagged conflation is not a gap.
type OddsBenchResult struct {
	Clients     int     `json:"clients"`     // WebSocket connections opened
	Subscribers int     `json:"subscribers"` // of them, subscribed with a snapshot
	Events      int     `json:"events"`      // event channels they were spread over
	DurationS   float64 `json:"duration_s"`
	// Deliveries are publications read by subscribers during the window.
	Deliveries     int64   `json:"deliveries"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	// BytesPerDelivery is the mean WebSocket payload read per delivery
	// inside the window (centrifuge's envelope included).
	BytesPerDelivery float64 `json:"bytes_per_delivery"`
	// DeltasPerS is the engine's output during the window (-1: unknown,
	// for a --target without a readable --admin /metrics).
	DeltasPerS float64 `json:"deltas_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	// Gaps: a delta or conflated update that skipped sequence numbers
	// without saying so. OutOfOrder: one at or before the subscriber's
	// sequence. Both count from each subscriber's snapshot on, not only
	// inside the window, and must be 0.
	Gaps       int64 `json:"gaps"`
	OutOfOrder int64 `json:"out_of_order"`
	Conflated  int64 `json:"conflated"`
	// ContinuityLost: flagged fresh snapshots (not gaps).
	ContinuityLost int64 `json:"continuity_lost"`
	// SnapshotP99ms: subscribe command sent to its snapshot read.
	SnapshotP99ms float64 `json:"snapshot_p99_ms"`
	Disconnects   int64   `json:"disconnects"`
	// ConnectRetries: connection attempts that failed and were retried.
	ConnectRetries int64  `json:"connect_retries"`
	FirstError     string `json:"first_error,omitempty"`
	// Load1 is the machine's 1-minute load average at the end (Linux; -1 elsewhere).
	Load1 float64 `json:"load_avg_1m"`
}

func runBenchOdds(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench odds", flag.ContinueOnError)
	target := fs.String("target", "", "player listener of a running Buzzer (http://HOST:PORT); empty runs the odds part in-process")
	admin := fs.String("admin", "", "admin listener of --target (its /metrics gives the engine's delta rate); optional")
	clients := fs.Int("clients", 10000, "WebSocket subscribers, spread over the live events")
	duration := fs.Duration("duration", 30*time.Second, "measurement window, after every subscriber has its snapshot")
	warmup := fs.Duration("warmup", 3*time.Second, "wait after the last subscription before measuring")
	dialers := fs.Int("dialers", 64, "concurrent connection attempts while subscribing")
	def := DefaultOddsConfig()
	football := fs.Int("football", def.Football, "in-process: concurrent football matches")
	american := fs.Int("american-football", def.AmericanFootball, "in-process: concurrent American football matches")
	tick := fs.Duration("tick", 100*time.Millisecond, "in-process: the simulator's step (each step moves every match)")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	cpuProfile := fs.String("cpuprofile", "", "write the bench's own CPU profile over the measurement window to this file")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *clients < 1 || *clients > 100000:
		return buzzer.Errorf(buzzer.EINVALID, "--clients must be 1..100000")
	case *duration <= 0 || *warmup < 0:
		return buzzer.Errorf(buzzer.EINVALID, "--duration must be > 0 and --warmup >= 0")
	case *dialers < 1 || *dialers > 4096:
		return buzzer.Errorf(buzzer.EINVALID, "--dialers must be 1..4096")
	case *tick < time.Millisecond:
		return buzzer.Errorf(buzzer.EINVALID, "--tick must be >= 1ms")
	}
	// Each subscriber is a socket here, and in-process one more on the
	// server side.
	need := uint64(*clients) + 256
	if *target == "" {
		need += uint64(*clients)
	}
	if err := raiseOpenFiles(need); err != nil {
		return err
	}

	base, published := strings.TrimRight(*target, "/"), func() (uint64, bool) { return 0, false }
	if *target == "" {
		oc := def
		oc.Football, oc.AmericanFootball = *football, *american
		stop, addr, pub, err := startBenchOdds(ctx, oc, *tick)
		if err != nil {
			return err
		}
		defer stop()
		base = "http://" + addr
		published = func() (uint64, bool) { return pub(), true }
	} else if *admin != "" {
		published = func() (uint64, bool) {
			return scrapeCounter(ctx, strings.TrimRight(*admin, "/")+"/metrics", "buzzer_odds_bus_published_total")
		}
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--target must be http://HOST:PORT")
	}
	events, err := liveEvents(ctx, base)
	if err != nil {
		return err
	}
	ws := "ws://" + u.Host + "/v1/stream/ws?cf_ws_frame_ping_pong=true"
	if u.Scheme == "https" {
		ws = "wss://" + u.Host + "/v1/stream/ws?cf_ws_frame_ping_pong=true"
	}
	fmt.Fprintf(stderr, "bench odds: subscribing %d clients over %d events at %s\n", *clients, len(events), ws)
	refresh := func(ctx context.Context) ([]string, error) { return liveEvents(ctx, base) }
	res, err := benchOdds(ctx, oddsBenchPlan{ws: ws, events: events, refresh: refresh, clients: *clients, dialers: *dialers,
		warmup: *warmup, duration: *duration, published: published, progress: stderr, cpuProfile: *cpuProfile})
	if err != nil {
		return err
	}
	if *jsonOut {
		b, err := json.Marshal(res)
		if err != nil {
			return err
		}
		_, err = stdout.Write(append(b, '\n'))
		return err
	}
	_, err = fmt.Fprintf(stdout, "clients %d (subscribed %d) over %d events, %.0fs: %.0f deliveries/s (engine %.0f deltas/s), provider→client p50 %.1f ms p95 %.1f ms p99 %.1f ms max %.1f ms; gaps %d, out of order %d, conflated %d, continuity lost %d; snapshot p99 %.1f ms; load %.2f\n",
		res.Clients, res.Subscribers, res.Events, res.DurationS, res.DeliveriesPerS, res.DeltasPerS, res.P50ms, res.P95ms, res.P99ms, res.MaxMs,
		res.Gaps, res.OutOfOrder, res.Conflated, res.ContinuityLost, res.SnapshotP99ms, res.Load1)
	return err
}

// raiseOpenFiles lifts the soft open-file limit towards need (up to the
// hard limit) and fails clearly when the hard limit is too low.
func raiseOpenFiles(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return nil // not a Unix limit we can read: try anyway
	}
	if lim.Cur >= need {
		return nil
	}
	lim.Cur = min(need, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot raise the open-file limit to %d", lim.Cur)
	}
	if lim.Cur < need {
		return buzzer.Errorf(buzzer.EINVALID, "the open-file hard limit is %d; %d subscribers need about %d (run the server as a separate process with --target, or raise the limit)", lim.Max, need-256, need)
	}
	return nil
}

// startBenchOdds runs the odds part of a node in-process, as serve does
// (embedded JetStream, the simulated providers and their adapters, the
// fan-out on a player listener), and returns its stop, its player address
// and a reader of the engine's published-delta count.
func startBenchOdds(ctx context.Context, oc OddsConfig, tick time.Duration) (stop func(), addr string, published func() uint64, err error) {
	dir, err := os.MkdirTemp("", "buzzer-bench-odds-")
	if err != nil {
		return nil, "", nil, err
	}
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.resolve()
	cfg.HTTP.HTTPAddr, cfg.HTTP.AdminAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Odds = oc
	log := slog.New(slog.DiscardHandler)
	n := &node{cfg: &cfg, log: log, reg: prometheus.NewRegistry()}
	n.onClose(func() { _ = os.RemoveAll(dir) })
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if n.nats, err = nats.Start(ctx, cfg.NATS, log); err != nil {
		return nil, "", nil, err
	}
	n.onClose(n.nats.Close)
	if n.http, err = httpapi.New(cfg.HTTP, log, nil, nil, n.reg); err != nil {
		return nil, "", nil, err
	}
	p, err := startOddsWith(ctx, n, cfg.Odds.Stream, oddsOptions{SimTick: tick})
	if err != nil {
		return nil, "", nil, err
	}
	n.http.MountCatalog(p.engine)
	if err = n.http.Listen(); err != nil {
		return nil, "", nil, err
	}
	n.http.Serve()
	n.http.SetReady(true)
	select {
	case <-p.fanout.Loaded():
	case <-ctx.Done():
		err = ctx.Err()
		return nil, "", nil, err
	}
	stop = func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.http.Shutdown(sctx)
		n.close()
	}
	player, _ := n.http.Addrs()
	return stop, player, func() uint64 { return p.pub.Stats().Published }, nil
}

// liveEvents lists the events that are not over, from GET /v1/events.
func liveEvents(ctx context.Context, base string) ([]string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := call(ctx, http.DefaultClient, http.MethodGet, base+"/v1/events", "", "", nil)
		if err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot list events at %s", base)
		}
		if code != http.StatusOK {
			return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "GET %s/v1/events: %d", base, code)
		}
		var cat struct {
			Events []struct {
				ID    string `json:"event_id"`
				Ended bool   `json:"ended"`
			} `json:"events"`
		}
		if err := json.Unmarshal(body, &cat); err != nil {
			return nil, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "undecodable event list")
		}
		var ids []string
		for _, e := range cat.Events {
			if !e.Ended {
				ids = append(ids, e.ID)
			}
		}
		if len(ids) > 0 {
			return ids, nil
		}
		if time.Now().After(deadline) {
			return nil, buzzer.Errorf(buzzer.EUNAVAILABLE, "%s offers no live event", base)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// scrapeCounter reads a counter from a Prometheus text page (the sum over
// its label sets).
func scrapeCounter(ctx context.Context, metricsURL, name string) (uint64, bool) {
	v, ok := scrapeValue(ctx, metricsURL, name)
	return uint64(v), ok
}

// scrapeValue reads the samples of metric name from a Prometheus text page
// and sums them over their label sets (one unlabelled sample is itself).
func scrapeValue(ctx context.Context, metricsURL, name string) (float64, bool) {
	code, body, err := call(ctx, http.DefaultClient, http.MethodGet, metricsURL, "", "", nil)
	if err != nil || code != http.StatusOK {
		return 0, false
	}
	sum, found := 0.0, false
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			rest = rest[end+1:]
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			return 0, false
		}
		sum, found = sum+f, true
	}
	return sum, found
}

// auditBacklog reads, from the admin listener of the node a bench loaded,
// how many captured records still wait to be relayed to the audit stream,
// in all its outboxes and jurisdictions (nil without --admin, or when the
// node does not say). A bench that leaves a growing backlog measured a
// node whose audit did not keep up.
func auditBacklog(ctx context.Context, admin string) *int64 {
	if admin == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, ok := scrapeValue(ctx, strings.TrimRight(admin, "/")+"/metrics", "buzzer_audit_capture_backlog_records")
	if !ok {
		return nil
	}
	n := int64(v)
	return &n
}

type oddsBenchPlan struct {
	ws               string
	events           []string
	refresh          func(context.Context) ([]string, error) // the live events now
	clients, dialers int
	warmup, duration time.Duration
	published        func() (uint64, bool)
	progress         io.Writer
	cpuProfile       string // file for the bench's CPU profile over the window ("": none)
}

// benchSub is one subscriber: a WebSocket speaking centrifuge's JSON
// protocol, checking the sequence of everything it reads.
type benchSub struct {
	channel string
	// Set by its reader only.
	last          uint64
	seeded        bool
	lat           []float32 // ms, inside the window
	snapshotMs    float64
	deliveries    int64
	bytes         int64 // frame payload bytes read inside the window
	gaps, ooo     int64
	conflated     int64
	continuityLst int64
}

// benchWire is the part of a centrifuge JSON reply or push the bench reads.
type benchWire struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Subscribe *struct {
		Data benchMsg `json:"data"`
	} `json:"subscribe"`
	Push *struct {
		Pub *struct {
			Data benchMsg `json:"data"`
		} `json:"pub"`
		Disconnect *struct {
			Code   uint32 `json:"code"`
			Reason string `json:"reason"`
		} `json:"disconnect"`
	} `json:"push"`
}

// benchMsg is the part of a fanout.Message the bench reads.
type benchMsg struct {
	Type           string `json:"type"`
	Seq            uint64 `json:"seq"`
	From           uint64 `json:"from"`
	Con            bool   `json:"con"`
	ContinuityLost bool   `json:"continuity_lost"`
	Delta          *struct {
		Seq        uint64    `json:"seq"`
		SourceTime time.Time `json:"source_time"`
	} `json:"delta"`
	Deltas []struct {
		SourceTime time.Time `json:"source_time"`
	} `json:"deltas"`
}

func benchOdds(ctx context.Context, p oddsBenchPlan) (OddsBenchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		measuring      atomic.Bool
		disconnects    atomic.Int64
		connectRetries atomic.Int64
		errMu          sync.Mutex
		firstErr       string
		wg             sync.WaitGroup
	)
	fail := func(err error) {
		errMu.Lock()
		defer errMu.Unlock()
		if firstErr == "" {
			firstErr = err.Error()
		}
	}
	subs := make([]*benchSub, p.clients)
	ready := make(chan error, p.clients) // one per subscriber: nil once it has its snapshot
	dialer := &websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}

	sem := make(chan struct{}, p.dialers)
	events, listed := p.events, time.Now()
	for i := range subs {
		// Matches end and new ones start: subscribe to what is live now.
		if p.refresh != nil && time.Since(listed) > 2*time.Second {
			if evs, err := p.refresh(ctx); err == nil && len(evs) > 0 {
				events = evs
			}
			listed = time.Now()
		}
		sb := &benchSub{channel: fanout.EventChannel(events[i%len(events)])}
		subs[i] = sb
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return OddsBenchResult{}, ctx.Err()
		}
		// Up to --dialers subscribers connect and subscribe at once; each
		// frees its slot once it has its snapshot (or failed).
		wg.Add(1)
		go func() {
			defer wg.Done()
			released := false
			release := func(err error) {
				if !released {
					released = true
					<-sem
					ready <- err
				}
			}
			// A server busy accepting thousands of connections may drop one
			// before its handshake: retry a few times, and count it.
			var conn *websocket.Conn
			var err error
			for attempt := 1; ; attempt++ {
				if conn, _, err = dialer.DialContext(ctx, p.ws, nil); err == nil || attempt == 5 || ctx.Err() != nil {
					break
				}
				connectRetries.Add(1)
				time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
			}
			if err != nil {
				release(buzzer.Wrap(err, buzzer.EUNAVAILABLE, "subscriber %d cannot connect", i))
				return
			}
			defer conn.Close()
			defer context.AfterFunc(ctx, func() { _ = conn.Close() })()
			// A subscriber starved of CPU answers a ping late rather than
			// dropping its connection (gorilla's default gives up after 1s).
			conn.SetPingHandler(func(data string) error {
				err := conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(30*time.Second))
				if err == nil || err == websocket.ErrCloseSent {
					return nil
				}
				return err
			})
			connect := `{"id":1,"connect":{"name":"bench"}}` + "\n" + `{"id":2,"subscribe":{"channel":"` + sb.channel + `"}}`
			sent := time.Now()
			if err := conn.WriteMessage(websocket.TextMessage, []byte(connect)); err != nil {
				release(buzzer.Wrap(err, buzzer.EUNAVAILABLE, "subscriber %d cannot subscribe", i))
				return
			}
			var buf bytes.Buffer // reused: one allocation per subscriber, not per message
			for {
				data, err := readFrame(conn, &buf)
				if err != nil {
					err = fmt.Errorf("subscriber %d: %w", i, err)
					if ctx.Err() == nil {
						disconnects.Add(1)
						fail(err)
					}
					release(err)
					return
				}
				now := time.Now()
				if measuring.Load() {
					sb.bytes += int64(len(data))
				}
				for len(data) > 0 {
					var line []byte
					line, data, _ = bytes.Cut(data, []byte("\n"))
					if len(line) == 0 {
						continue
					}
					if err := sb.read(line, now, sent, measuring.Load()); err != nil {
						err = fmt.Errorf("subscriber %d: %w", i, err)
						fail(err)
						release(err)
						return
					}
					if sb.seeded {
						release(nil)
					}
				}
			}
		}()
	}
	// Every subscriber has its snapshot (or failed).
	for got := 0; got < p.clients; got++ {
		select {
		case err := <-ready:
			if err != nil {
				return OddsBenchResult{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "a subscriber failed before its snapshot (%d of %d had one)", got, p.clients)
			}
		case <-ctx.Done():
			return OddsBenchResult{}, ctx.Err()
		case <-time.After(60 * time.Second):
			errMu.Lock()
			e := firstErr
			errMu.Unlock()
			return OddsBenchResult{}, buzzer.Errorf(buzzer.ETIMEOUT, "only %d of %d subscribers got a snapshot within 60s: %s", got, p.clients, e)
		}
	}
	fmt.Fprintf(p.progress, "bench odds: %d subscribers have their snapshot; warming up %s, measuring %s\n", p.clients, p.warmup, p.duration)
	select {
	case <-time.After(p.warmup):
	case <-ctx.Done():
		return OddsBenchResult{}, ctx.Err()
	}
	stopProfile := func() {}
	if p.cpuProfile != "" {
		f, err := os.Create(p.cpuProfile)
		if err != nil {
			return OddsBenchResult{}, buzzer.Wrap(err, buzzer.EINVALID, "cannot create the CPU profile")
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return OddsBenchResult{}, buzzer.Wrap(err, buzzer.EUNAVAILABLE, "cannot start the CPU profile")
		}
		stopProfile = sync.OnceFunc(pprof.StopCPUProfile)
		defer stopProfile()
	}
	pub0, pubOK := p.published()
	measuring.Store(true)
	start := time.Now()
	var lastDeliveries int64
	tk := time.NewTicker(5 * time.Second)
	window := time.NewTimer(p.duration)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			return OddsBenchResult{}, ctx.Err()
		case <-window.C:
			done = true
		case <-tk.C:
			// A racy sum for progress only.
			var d int64
			for _, sb := range subs {
				d += atomic.LoadInt64(&sb.deliveries)
			}
			fmt.Fprintf(p.progress, "bench odds: %.0f deliveries/s\n", float64(d-lastDeliveries)/5)
			lastDeliveries = d
		}
	}
	tk.Stop()
	measuring.Store(false)
	stopProfile()
	elapsed := time.Since(start)
	pub1, pub1OK := p.published()
	cancel() // closes every subscriber's connection
	wg.Wait()

	chans := map[string]bool{}
	for _, sb := range subs {
		chans[sb.channel] = true
	}
	res := OddsBenchResult{Clients: p.clients, Events: len(chans), DurationS: elapsed.Seconds(), DeltasPerS: -1, Load1: loadAverage()}
	var lat []float32
	var snaps []float64
	var bytesRead int64
	for _, sb := range subs {
		if sb.seeded {
			res.Subscribers++
			snaps = append(snaps, sb.snapshotMs)
		}
		lat = append(lat, sb.lat...)
		res.Deliveries += sb.deliveries
		bytesRead += sb.bytes
		res.Gaps += sb.gaps
		res.OutOfOrder += sb.ooo
		res.Conflated += sb.conflated
		res.ContinuityLost += sb.continuityLst
	}
	res.DeliveriesPerS = float64(res.Deliveries) / elapsed.Seconds()
	if res.Deliveries > 0 {
		res.BytesPerDelivery = math.Round(float64(bytesRead) / float64(res.Deliveries))
	}
	if pubOK && pub1OK {
		res.DeltasPerS = float64(pub1-pub0) / elapsed.Seconds()
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return round2(float64(lat[min(len(lat)-1, int(math.Ceil(q*float64(len(lat))))-1)]))
	}
	res.P50ms, res.P95ms, res.P99ms = pct(0.50), pct(0.95), pct(0.99)
	if len(lat) > 0 {
		res.MaxMs = round2(float64(lat[len(lat)-1]))
	}
	sort.Float64s(snaps)
	if len(snaps) > 0 {
		res.SnapshotP99ms = round2(snaps[min(len(snaps)-1, int(math.Ceil(0.99*float64(len(snaps))))-1)])
	}
	res.DeliveriesPerS = math.Round(res.DeliveriesPerS)
	if res.DeltasPerS > 0 {
		res.DeltasPerS = math.Round(res.DeltasPerS)
	}
	res.DurationS = round2(res.DurationS)
	res.Disconnects = disconnects.Load()
	res.ConnectRetries = connectRetries.Load()
	errMu.Lock()
	res.FirstError = firstErr
	errMu.Unlock()
	return res, nil
}

// readFrame reads the next data frame's payload into buf (reset first) and
// returns it; the bytes are valid until the next call.
func readFrame(conn *websocket.Conn, buf *bytes.Buffer) ([]byte, error) {
	_, r, err := conn.NextReader()
	if err != nil {
		return nil, err
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// read handles one protocol line: the subscribe reply (the snapshot), a
// publication (checked against the subscriber's sequence and, inside the
// measurement window, timed), or a disconnect push.
func (sb *benchSub) read(line []byte, now, sent time.Time, measure bool) error {
	if ok, err := sb.readPub(line, now, measure); ok || err != nil {
		return err
	}
	var w benchWire
	if err := json.Unmarshal(line, &w); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "undecodable frame")
	}
	switch {
	case w.Error != nil:
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "command %d refused: %d %s", w.ID, w.Error.Code, w.Error.Message)
	case w.Subscribe != nil:
		m := w.Subscribe.Data
		if m.Type != fanout.TypeSnapshot {
			return buzzer.Errorf(buzzer.EINVALID, "subscribe reply is not a snapshot")
		}
		sb.last, sb.seeded = m.Seq, true
		sb.snapshotMs = float64(now.Sub(sent)) / float64(time.Millisecond)
	case w.Push != nil && w.Push.Disconnect != nil:
		return buzzer.Errorf(buzzer.EUNAVAILABLE, "disconnected by the server: %d %s", w.Push.Disconnect.Code, w.Push.Disconnect.Reason)
	case w.Push != nil && w.Push.Pub != nil:
		m := w.Push.Pub.Data
		if !sb.seeded {
			return buzzer.Errorf(buzzer.EINVALID, "publication before the snapshot")
		}
		if measure {
			atomic.AddInt64(&sb.deliveries, 1)
		}
		timed := func(src time.Time) {
			if measure && !src.IsZero() {
				sb.lat = append(sb.lat, float32(float64(now.Sub(src))/float64(time.Millisecond)))
			}
		}
		switch m.Type {
		case fanout.TypeDelta:
			if m.Delta == nil {
				return buzzer.Errorf(buzzer.EINVALID, "delta publication without a delta")
			}
			sb.order(m.Delta.Seq-1, m.Delta.Seq)
			timed(m.Delta.SourceTime)
		case fanout.TypeConflated:
			if !m.Con {
				return buzzer.Errorf(buzzer.EINVALID, "conflated update without the con flag")
			}
			if measure {
				sb.conflated++
			}
			sb.order(m.From, m.Seq)
			for _, d := range m.Deltas {
				timed(d.SourceTime)
			}
		case fanout.TypeSnapshot:
			if !m.ContinuityLost {
				return buzzer.Errorf(buzzer.EINVALID, "snapshot publication without continuity_lost")
			}
			if measure {
				sb.continuityLst++
			}
			sb.last = m.Seq
		default:
			return buzzer.Errorf(buzzer.EINVALID, "unexpected publication type %q", m.Type)
		}
	}
	return nil
}

var (
	pubPrefix  = []byte(`{"push":{"channel":"`)
	pubType    = []byte(`"pub":{"data":{"type":"`)
	keySeq     = []byte(`"seq":`)
	keyFrom    = []byte(`"from":`)
	keyCon     = []byte(`"con":true`)
	keySrcTime = []byte(`"source_time":"`)
)

// readPub is read's fast path for a delta or conflated publication. The
// fan-out writes fanout.Message and odds.Delta fields in their declared
// order, so the first "seq" after the type is the message's, and every
// "source_time" is a delta's; scanning for them instead of decoding a whole
// document per delivery keeps the client from being the bottleneck. It
// reports false for anything else, which read decodes in full.
func (sb *benchSub) readPub(line []byte, now time.Time, measure bool) (bool, error) {
	if !bytes.HasPrefix(line, pubPrefix) {
		return false, nil
	}
	i := bytes.Index(line, pubType)
	if i < 0 {
		return false, nil
	}
	typ, rest, _ := bytes.Cut(line[i+len(pubType):], []byte(`"`))
	var from, seq uint64
	var ok bool
	switch string(typ) {
	case fanout.TypeDelta:
		if seq, ok = scanUint(rest, keySeq); !ok || seq == 0 {
			return true, buzzer.Errorf(buzzer.EINVALID, "delta publication without a sequence")
		}
		from = seq - 1
	case fanout.TypeConflated:
		if !bytes.Contains(rest, keyCon) {
			return true, buzzer.Errorf(buzzer.EINVALID, "conflated update without the con flag")
		}
		if seq, ok = scanUint(rest, keySeq); !ok {
			return true, buzzer.Errorf(buzzer.EINVALID, "conflated update without a sequence")
		}
		from, _ = scanUint(rest, keyFrom) // omitted when 0
		if measure {
			sb.conflated++
		}
	default:
		return false, nil
	}
	if !sb.seeded {
		return true, buzzer.Errorf(buzzer.EINVALID, "publication before the snapshot")
	}
	sb.order(from, seq)
	if !measure {
		return true, nil
	}
	atomic.AddInt64(&sb.deliveries, 1)
	for {
		j := bytes.Index(rest, keySrcTime)
		if j < 0 {
			return true, nil
		}
		var ts []byte
		ts, rest, _ = bytes.Cut(rest[j+len(keySrcTime):], []byte(`"`))
		t, err := time.Parse(time.RFC3339Nano, string(ts))
		if err != nil {
			return true, buzzer.Wrap(err, buzzer.EINVALID, "bad source_time %q", ts)
		}
		if !t.IsZero() {
			sb.lat = append(sb.lat, float32(float64(now.Sub(t))/float64(time.Millisecond)))
		}
	}
}

// scanUint returns the unsigned integer after the first key in b.
func scanUint(b, key []byte) (uint64, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0, false
	}
	b = b[i+len(key):]
	n, digits := uint64(0), 0
	for ; digits < len(b) && b[digits] >= '0' && b[digits] <= '9'; digits++ {
		n = n*10 + uint64(b[digits]-'0')
	}
	return n, digits > 0
}

// order checks that an update continuing after from up to seq follows the
// subscriber's sequence exactly, counting a skip as a gap and a step back
// as out of order, from the snapshot on (not only inside the window).
func (sb *benchSub) order(from, seq uint64) {
	switch {
	case from == sb.last && seq > from:
		sb.last = seq
	case from > sb.last:
		sb.gaps++
		sb.last = seq
	default:
		sb.ooo++
		sb.last = max(sb.last, seq)
	}
}

// loadAverage is the 1-minute load average, or -1 where /proc has none.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f, err := strconv.ParseFloat(strings.Fields(string(b) + " x")[0], 64)
	if err != nil {
		return -1
	}
	return f
}
