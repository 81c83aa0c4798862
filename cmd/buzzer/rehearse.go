package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
)

// `buzzer rehearse` is the Super Bowl rehearsal: an open-loop arrival of
// bets (a baseline, a spike, a recovery) against a running node while
// scheduled faults hit it, then a check that money came through exactly:
// every bet the players were told was accepted exists once, nothing was
// placed that nobody was told about, and the ledger's invariants hold.
// Open loop matters: arrivals do not slow down when the node does, as real
// players' taps do not, so queues show up as latency and shed requests
// rather than as a politely lower rate.

// chaosAction is one scheduled fault.
type chaosAction struct {
	Kind string        `json:"kind"` // pause-bets, upgrade
	At   time.Duration `json:"-"`
	For  time.Duration `json:"-"`
	AtS  float64       `json:"at_s"`
	ForS float64       `json:"for_s,omitempty"`
	Done string        `json:"result,omitempty"`
}

// parseChaos reads "pause-bets@12s+5s,upgrade@20s".
func parseChaos(spec string) ([]*chaosAction, error) {
	var out []*chaosAction
	if strings.TrimSpace(spec) == "" {
		return nil, nil
	}
	for _, part := range strings.Split(spec, ",") {
		kind, when, ok := strings.Cut(strings.TrimSpace(part), "@")
		if !ok {
			return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: want KIND@OFFSET[+DURATION]", part)
		}
		at, dur, hasDur := strings.Cut(when, "+")
		a := &chaosAction{Kind: kind}
		var err error
		if a.At, err = time.ParseDuration(at); err != nil || a.At < 0 {
			return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: bad offset", part)
		}
		if hasDur {
			if a.For, err = time.ParseDuration(dur); err != nil || a.For <= 0 {
				return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: bad duration", part)
			}
		}
		switch kind {
		case "pause-bets":
			if !hasDur {
				return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: pause-bets needs +DURATION", part)
			}
		case "upgrade":
			if hasDur {
				return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: upgrade takes no duration", part)
			}
		default:
			return nil, buzzer.Errorf(buzzer.EINVALID, "--chaos %q: unknown fault (pause-bets, upgrade)", part)
		}
		a.AtS, a.ForS = a.At.Seconds(), a.For.Seconds()
		out = append(out, a)
	}
	return out, nil
}

// rehearsalPhase is one stretch of the arrival curve and what it measured.
type rehearsalPhase struct {
	Name      string  `json:"name"`
	RatePerS  float64 `json:"rate_per_s"`
	DurationS float64 `json:"duration_s"`
	Arrivals  int64   `json:"arrivals"`
	Accepted  int64   `json:"accepted"`
	// Refused are definite answers other than acceptance (price moved,
	// market suspended, betting paused), by reason.
	Refused map[string]int64 `json:"refused"`
	// Errors are answers that leave the outcome unknown until the key is
	// resent (5xx other than a pause, transport failures).
	Errors int64 `json:"errors"`
	// Shed are arrivals the rehearsal could not even send because
	// --max-in-flight requests were already waiting.
	Shed  int64   `json:"shed"`
	P50ms float64 `json:"p50_ms"`
	P95ms float64 `json:"p95_ms"`
	P99ms float64 `json:"p99_ms"`

	mu  sync.Mutex
	lat []time.Duration
}

func (p *rehearsalPhase) record(d time.Duration, accepted bool, reason string, failed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lat = append(p.lat, d)
	switch {
	case accepted:
		p.Accepted++
	case failed:
		p.Errors++
	default:
		p.Refused[reason]++
	}
}

func (p *rehearsalPhase) finish() {
	slices.Sort(p.lat)
	q := func(f float64) float64 {
		if len(p.lat) == 0 {
			return 0
		}
		return float64(p.lat[min(len(p.lat)-1, int(f*float64(len(p.lat))))].Microseconds()) / 1000
	}
	p.P50ms, p.P95ms, p.P99ms = q(0.50), q(0.95), q(0.99)
}

// rehearsalReport is what `buzzer rehearse` prints.
type rehearsalReport struct {
	Phases []*rehearsalPhase `json:"phases"`
	Chaos  []*chaosAction    `json:"chaos"`
	// Resolved are keys whose first answer was unknown, resent afterwards to
	// learn their outcome (idempotency makes that safe).
	Resolved int64 `json:"resolved"`
	// AcceptedTotal counts bets the players were told were accepted.
	AcceptedTotal int64 `json:"accepted_total"`
	// Lost are accepted bets missing from the players' bet lists; Phantom
	// are listed bets no player was told about; Duplicates are accepted
	// bet IDs listed more than once.
	Lost       int64    `json:"lost"`
	Phantom    int64    `json:"phantom"`
	Duplicates int64    `json:"duplicates"`
	LedgerOK   bool     `json:"ledger_ok"`
	Problems   []string `json:"problems,omitempty"`
	OK         bool     `json:"ok"`
}

// rehearsalBet is one bet's outcome as its player saw it.
type rehearsalBet struct {
	player int
	key    string
	body   []byte
	betID  string // set when accepted
	open   bool   // outcome unknown: resend the key after the run
	// mismatch describes a resend of an accepted bet that did not replay it.
	mismatch string
}

func runRehearse(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rehearse", flag.ContinueOnError)
	target := fs.String("target", "http://127.0.0.1:8080", "player listener of the node to rehearse against")
	adminURL := fs.String("admin", "http://127.0.0.1:9090", "its admin listener (toggles, ledger check)")
	dataDir := fs.String("data-dir", "./data", "its data dir (dev keys mint players and the operator; buzzer.pid names the process for upgrade)")
	players := fs.Int("players", 500, "distinct players")
	baseRate := fs.Float64("baseline-rate", 50, "bets per second before and after the spike")
	spikeRate := fs.Float64("spike-rate", 1000, "bets per second during the spike")
	baseline := fs.Duration("baseline", 10*time.Second, "baseline before the spike")
	spike := fs.Duration("spike", 20*time.Second, "length of the spike")
	recovery := fs.Duration("recovery", 10*time.Second, "baseline after the spike")
	maxInFlight := fs.Int("max-in-flight", 1024, "requests waiting at once; later arrivals are counted as shed")
	retryRate := fs.Float64("retry-rate", 0.1, "share of bets resent with the same key, as if the first answer was lost")
	chaosSpec := fs.String("chaos", "", "faults by offset from the start, e.g. pause-bets@12s+5s,upgrade@20s")
	jsonOut := fs.Bool("json", false, "print the report as JSON")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *players < 1 || *players > 1_000_000:
		return buzzer.Errorf(buzzer.EINVALID, "--players must be 1..1000000")
	case *baseRate <= 0 || *spikeRate <= 0 || *baseRate > 100_000 || *spikeRate > 100_000:
		return buzzer.Errorf(buzzer.EINVALID, "--baseline-rate and --spike-rate must be within (0, 100000]")
	case *baseline < 0 || *recovery < 0 || *spike <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "--spike must be > 0, --baseline and --recovery >= 0")
	case *maxInFlight < 1 || *maxInFlight > 100_000:
		return buzzer.Errorf(buzzer.EINVALID, "--max-in-flight must be 1..100000")
	case *retryRate < 0 || *retryRate > 1:
		return buzzer.Errorf(buzzer.EINVALID, "--retry-rate must be within 0..1")
	}
	chaos, err := parseChaos(*chaosSpec)
	if err != nil {
		return err
	}
	// Progress comes from the arrival loop and the fault schedule at once.
	stderr = &lockedWriter{w: stderr}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	total := *baseline + *spike + *recovery
	operator, err := keys.AdminToken("rehearsal", total+10*time.Minute, time.Now())
	if err != nil {
		return err
	}
	base, admin := strings.TrimRight(*target, "/"), strings.TrimRight(*adminURL, "/")
	c, err := devGeoClient(*dataDir, "NJ", benchClient(min(*maxInFlight, 2048)))
	if err != nil {
		return err
	}
	sels, err := openSelections(ctx, c, base)
	if err != nil {
		return err
	}
	run := fmt.Sprintf("%08x", rand.Uint32())
	tokens, err := fundPlayers(ctx, c, keys, base, "rehearse-"+run, *players, 64, 9_000_000, "USD", total+10*time.Minute, stderr)
	if err != nil {
		return err
	}

	phases := []*rehearsalPhase{
		{Name: "baseline", RatePerS: *baseRate, DurationS: baseline.Seconds(), Refused: map[string]int64{}},
		{Name: "spike", RatePerS: *spikeRate, DurationS: spike.Seconds(), Refused: map[string]int64{}},
		{Name: "recovery", RatePerS: *baseRate, DurationS: recovery.Seconds(), Refused: map[string]int64{}},
	}
	var (
		betsMu sync.Mutex
		bets   []*rehearsalBet
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, *maxInFlight)
	place := func(ph *rehearsalPhase, r *rand.Rand) {
		p := r.IntN(*players)
		s := sels[r.IntN(len(sels))]
		b := &rehearsalBet{player: p, key: uuid.NewString(), body: fmt.Appendf(nil,
			`{"stake":100,"currency":"USD","price_change":"any","legs":[{"event_id":%q,"market_id":%q,"selection_id":%q,"price":%q}]}`,
			s.Event, s.Market, s.Selection, s.Price.String())}
		resend := r.Float64() < *retryRate
		betsMu.Lock()
		bets = append(bets, b)
		betsMu.Unlock()
		t0 := time.Now()
		code, body, err := call(ctx, c, http.MethodPost, base+"/v1/bets", tokens[p], b.key, b.body)
		accepted, reason, failed := b.settle(code, body, err)
		if resend && err == nil {
			// The player "lost" the answer and sends the same key again: an
			// accepted bet must come back byte for byte, never as a second
			// bet; any other first answer is replaced by the resend's.
			code2, again, err2 := call(ctx, c, http.MethodPost, base+"/v1/bets", tokens[p], b.key, b.body)
			switch {
			case accepted && err2 == nil && code2 == http.StatusCreated && !bytes.Equal(again, body):
				b.mismatch = fmt.Sprintf("key %s: accepted, then a different 201 on resend: %.200s", b.key, again)
			case !accepted:
				accepted, reason, failed = b.settle(code2, again, err2)
			}
		}
		ph.record(time.Since(t0), accepted, reason, failed)
	}

	// The faults run on their own clock from the start of the arrivals.
	start := time.Now()
	chaosDone := make(chan struct{})
	go func() {
		defer close(chaosDone)
		runChaos(ctx, chaos, start, c, admin, operator, *dataDir, stderr)
	}()

	fmt.Fprintf(stderr, "rehearse: baseline %s at %.0f/s, spike %s at %.0f/s, recovery %s; chaos %q\n",
		*baseline, *baseRate, *spike, *spikeRate, *recovery, *chaosSpec)
	for i, ph := range phases {
		if ph.DurationS == 0 {
			continue
		}
		r := rand.New(rand.NewPCG(uint64(i), rand.Uint64()))
		interval := time.Duration(float64(time.Second) / ph.RatePerS)
		end := time.Now().Add(time.Duration(ph.DurationS * float64(time.Second)))
		next := time.Now()
		lastReport := time.Now()
		for time.Now().Before(end) && ctx.Err() == nil {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(interval)
			ph.Arrivals++
			select {
			case sem <- struct{}{}:
				wg.Add(1)
				seed := r.Uint64()
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					place(ph, rand.New(rand.NewPCG(seed, 1)))
				}()
			default:
				ph.Shed++
			}
			if time.Since(lastReport) >= time.Second {
				lastReport = time.Now()
				ph.mu.Lock()
				fmt.Fprintf(stderr, "rehearse: %5.1fs %-8s arrivals %d accepted %d errors %d shed %d in flight %d\n",
					time.Since(start).Seconds(), ph.Name, ph.Arrivals, ph.Accepted, ph.Errors, ph.Shed, len(sem))
				ph.mu.Unlock()
			}
		}
	}
	wg.Wait()
	<-chaosDone
	for _, ph := range phases {
		ph.finish()
	}
	rep := &rehearsalReport{Phases: phases, Chaos: chaos}
	fmt.Fprintln(stderr, "rehearse: resolving unknown outcomes and checking every bet")
	rep.check(ctx, c, base, admin, operator, tokens, bets)
	if *jsonOut {
		b, _ := json.Marshal(rep)
		fmt.Fprintln(stdout, string(b))
	} else {
		for _, ph := range phases {
			fmt.Fprintf(stdout, "%-8s %6.0f/s x %4.0fs  arrivals %d  accepted %d  refused %v  errors %d  shed %d  p50 %.1f ms  p95 %.1f ms  p99 %.1f ms\n",
				ph.Name, ph.RatePerS, ph.DurationS, ph.Arrivals, ph.Accepted, ph.Refused, ph.Errors, ph.Shed, ph.P50ms, ph.P95ms, ph.P99ms)
		}
		for _, a := range chaos {
			fmt.Fprintf(stdout, "chaos    %s at %.1fs: %s\n", a.Kind, a.AtS, a.Done)
		}
		fmt.Fprintf(stdout, "money    accepted %d  resolved %d  lost %d  phantom %d  duplicates %d  ledger ok %v\n",
			rep.AcceptedTotal, rep.Resolved, rep.Lost, rep.Phantom, rep.Duplicates, rep.LedgerOK)
		for _, p := range rep.Problems {
			fmt.Fprintln(stdout, "PROBLEM:", p)
		}
	}
	if !rep.OK {
		return exitFailure{msg: fmt.Sprintf("rehearsal failed: %d problem(s)", len(rep.Problems))}
	}
	return nil
}

// settle classifies one answer: accepted (the bet's ID is kept), a definite
// refusal (by reason), or unknown (the key is resent after the run).
func (b *rehearsalBet) settle(code int, body []byte, err error) (accepted bool, reason string, failed bool) {
	if err != nil {
		b.open = true
		return false, "", true
	}
	if code == http.StatusCreated {
		var v struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(body, &v) == nil && v.ID != "" {
			b.betID, b.open = v.ID, false
			return true, "", false
		}
		b.open = true
		return false, "", true
	}
	var p struct {
		Reason string `json:"reason"`
		Code   string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	reason = p.Reason
	if reason == "" {
		reason = p.Code
	}
	if reason == "" {
		reason = strconv.Itoa(code)
	}
	// A pause is a definite "not placed" (the key was never claimed); so is
	// any 4xx. Other 5xx and 409 in flight leave the outcome to be learned.
	if code >= 500 && reason != "betting_paused" && reason != "in_play_paused" || code == http.StatusConflict {
		b.open = true
		return false, "", true
	}
	b.open = false
	return false, reason, false
}

// runChaos fires the scheduled faults.
func runChaos(ctx context.Context, chaos []*chaosAction, start time.Time, c *http.Client, admin, operator, dataDir string, stderr io.Writer) {
	type event struct {
		at time.Duration
		do func() string
		a  *chaosAction
	}
	var evs []event
	flip := func(on bool, why string) func() string {
		return func() string {
			body := fmt.Appendf(nil, `{"enabled":%v,"reason":%q}`, on, why)
			code, b, err := call(ctx, c, http.MethodPut, admin+"/admin/v1/toggles/bets.accept", operator, "", body)
			if err != nil || code != http.StatusOK {
				return fmt.Sprintf("flip failed: %d %v %.200s", code, err, b)
			}
			return fmt.Sprintf("bets.accept=%v", on)
		}
	}
	for _, a := range chaos {
		switch a.Kind {
		case "pause-bets":
			evs = append(evs, event{a.At, flip(false, "rehearsal: pause"), a}, event{a.At + a.For, flip(true, "rehearsal: resume"), a})
		case "upgrade":
			evs = append(evs, event{a.At, func() string {
				b, err := readPIDFile(dataDir)
				if err != nil {
					return "no pid file: " + err.Error()
				}
				if err := syscall.Kill(b, syscall.SIGHUP); err != nil {
					return fmt.Sprintf("SIGHUP %d: %v", b, err)
				}
				return fmt.Sprintf("SIGHUP sent to %d", b)
			}, a})
		}
	}
	slices.SortStableFunc(evs, func(x, y event) int { return int(x.at - y.at) })
	for _, e := range evs {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(e.at))):
		}
		res := e.do()
		if e.a.Done == "" {
			e.a.Done = res
		} else {
			e.a.Done += "; " + res
		}
		fmt.Fprintf(stderr, "rehearse: %5.1fs chaos %s: %s\n", time.Since(start).Seconds(), e.a.Kind, res)
	}
}

func readPIDFile(dataDir string) (int, error) {
	b, err := os.ReadFile(pidFile(dataDir))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// check resends every key whose outcome was unknown, then compares the
// accepted bets with the players' own bet lists, and runs the ledger check.
func (rep *rehearsalReport) check(ctx context.Context, c *http.Client, base, admin, operator string, tokens []string, bets []*rehearsalBet) {
	problem := func(format string, a ...any) {
		if len(rep.Problems) < 50 {
			rep.Problems = append(rep.Problems, fmt.Sprintf(format, a...))
		}
	}
	for _, b := range bets {
		if b.open {
			rep.Resolved++
		}
		for attempt := 0; b.open && attempt < 20; attempt++ {
			code, body, err := call(ctx, c, http.MethodPost, base+"/v1/bets", tokens[b.player], b.key, b.body)
			b.settle(code, body, err)
			if b.open {
				time.Sleep(250 * time.Millisecond)
			}
		}
		if b.open {
			problem("bet key %s: outcome still unknown after resending", b.key)
		}
		if b.mismatch != "" {
			rep.Duplicates++
			problem("%s", b.mismatch)
		}
	}
	accepted := map[string]bool{}
	byPlayer := map[int]bool{}
	for _, b := range bets {
		byPlayer[b.player] = true
		if b.betID != "" {
			accepted[b.betID] = true
		}
	}
	rep.AcceptedTotal = int64(len(accepted))
	seen := map[string]int{}
	for p := range byPlayer {
		cursor := ""
		for {
			url := base + "/v1/bets?limit=100"
			if cursor != "" {
				url += "&cursor=" + cursor
			}
			code, body, err := call(ctx, c, http.MethodGet, url, tokens[p], "", nil)
			if err != nil || code != http.StatusOK {
				problem("listing player %d's bets: %d %v", p, code, err)
				break
			}
			var page struct {
				Bets []struct {
					ID string `json:"id"`
				} `json:"bets"`
				Next string `json:"next_cursor"`
			}
			if err := json.Unmarshal(body, &page); err != nil {
				problem("listing player %d's bets: %v", p, err)
				break
			}
			for _, b := range page.Bets {
				seen[b.ID]++
			}
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
	}
	for id := range accepted {
		switch n := seen[id]; {
		case n == 0:
			rep.Lost++
			problem("accepted bet %s is not in its player's bets", id)
		case n > 1:
			rep.Duplicates++
			problem("accepted bet %s is listed %d times", id, n)
		}
	}
	for id := range seen {
		if !accepted[id] {
			rep.Phantom++
			problem("bet %s exists but no player was told it was accepted", id)
		}
	}
	code, body, err := call(ctx, c, http.MethodGet, admin+"/admin/v1/ledger/check", operator, "", nil)
	var lc struct {
		OK       bool     `json:"ok"`
		Problems []string `json:"problems"`
	}
	if err == nil && json.Unmarshal(body, &lc) == nil {
		rep.LedgerOK = lc.OK && code == http.StatusOK
		for _, p := range lc.Problems {
			problem("ledger: %s", p)
		}
	} else {
		problem("ledger check: %d %v", code, err)
	}
	rep.OK = len(rep.Problems) == 0 && rep.LedgerOK
}

// lockedWriter serializes writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
