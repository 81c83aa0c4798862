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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
	"github.com/buzzer-bet/buzzer/internal/loadgen"
)

// benchClient is an HTTP client sized for clients concurrent connections.
func benchClient(clients int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = clients * 2
	tr.MaxIdleConnsPerHost = clients * 2
	tr.MaxConnsPerHost = clients * 2
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// call sends one JSON request and returns status and body.
func call(ctx context.Context, c *http.Client, method, url, token, key string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// postBet sends one JSON POST with a bearer token and an idempotency key and
// returns the status and the body, read into buf's storage.
func postBet(ctx context.Context, c *http.Client, url, token, key string, body, buf []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, buf, err
	}
	// Canonical header names, set directly: no canonicalization per call.
	req.Header["Content-Type"] = []string{"application/json"}
	req.Header["Authorization"] = []string{"Bearer " + token}
	req.Header["Idempotency-Key"] = []string{key}
	resp, err := c.Do(req)
	if err != nil {
		return 0, buf, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf)
	_, err = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.Bytes(), err
}

// selection is one open price the bench can bet on.
type selection struct {
	Event, Market, Selection string
	Price                    buzzer.Price
}

// openSelections reads the public catalog.
func openSelections(ctx context.Context, c *http.Client, target string) ([]selection, error) {
	code, body, err := call(ctx, c, http.MethodGet, target+"/v1/events", "", "", nil)
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/events: %d %v %.200s", code, err, body)
	}
	var cat struct {
		Events []struct {
			ID      string `json:"event_id"`
			Markets []struct {
				ID         string `json:"id"`
				Status     string `json:"status"`
				Selections []struct {
					ID    string       `json:"id"`
					Price buzzer.Price `json:"price"`
				} `json:"selections"`
			} `json:"markets"`
		} `json:"events"`
	}
	if err := json.Unmarshal(body, &cat); err != nil {
		return nil, fmt.Errorf("decode catalog: %w", err)
	}
	var out []selection
	for _, e := range cat.Events {
		for _, m := range e.Markets {
			if m.Status != "open" {
				continue
			}
			for _, s := range m.Selections {
				if s.Price == 0 {
					continue // no price quoted: not bettable
				}
				out = append(out, selection{e.ID, m.ID, s.ID, s.Price})
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the catalog has no open selection to bet on")
	}
	return out, nil
}

// fundPlayers mints a token for each of n players named prefix-i and
// deposits amount for each, with up to workers deposits in flight.
func fundPlayers(ctx context.Context, c *http.Client, keys *auth.DevKeys, base, prefix string, n, workers int, amount int64,
	currency string, ttl time.Duration, stderr io.Writer) ([]string, error) {
	tokens := make([]string, n)
	fmt.Fprintf(stderr, "funding %d players\n", n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var fundErr atomic.Value
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				tok, err := keys.PlayerToken(fmt.Sprintf("%s-%d", prefix, i), "NJ", ttl, time.Now())
				if err != nil {
					fundErr.CompareAndSwap(nil, err)
					return
				}
				tokens[i] = tok
				body := fmt.Sprintf(`{"amount":%d,"currency":%q}`, amount, currency)
				code, b, err := call(ctx, c, http.MethodPost, base+"/v1/wallet/deposits", tok, uuid.NewString(), []byte(body))
				if err != nil || code != http.StatusCreated && code != http.StatusOK {
					fundErr.CompareAndSwap(nil, fmt.Errorf("deposit: %d %v %.200s", code, err, b))
					return
				}
			}
		}()
	}
	wg.Wait()
	if e, ok := fundErr.Load().(error); ok {
		return nil, e
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return tokens, nil
}

// betsResult is the JSON `buzzer bench bets` prints.
type betsResult struct {
	BetsPerS   float64 `json:"bets_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P95ms      float64 `json:"p95_ms"`
	P99ms      float64 `json:"p99_ms"`
	Errors     int64   `json:"errors"`
	Retries    int64   `json:"retries"`
	Duplicates int64   `json:"duplicates"`
	Bets       int64   `json:"bets"`
	Clients    int     `json:"clients"`
	Players    int     `json:"players"`
	DurationS  float64 `json:"duration_s"`
	FirstError string  `json:"first_error,omitempty"`
	// AuditBacklog: captured records not yet relayed to the audit stream
	// when the run ended (with --admin).
	AuditBacklog *int64 `json:"audit_backlog_records,omitempty"`
}

func runBenchBets(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench bets", flag.ContinueOnError)
	target := fs.String("target", "http://127.0.0.1:8080", "player listener of the Buzzer to load")
	dataDir := fs.String("data-dir", "./data", "data dir of the dev-mode serve (its keys mint the players' tokens)")
	clients := fs.Int("clients", 64, "concurrent clients")
	duration := fs.Duration("duration", 30*time.Second, "how long to place bets")
	players := fs.Int("players", 1000, "distinct players")
	retryRate := fs.Float64("retry-rate", 0.1, "share of bets re-sent with the same key, as if the first response was lost")
	stake := fs.Int64("stake", 100, "stake per bet in minor units")
	currency := fs.String("currency", "USD", "currency")
	jsonOut := fs.Bool("json", false, "print the result as JSON")
	admin := fs.String("admin", "", "admin listener of --target: its /metrics gives the audit backlog left at the end (optional)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	switch {
	case *clients < 1 || *clients > 10000:
		return buzzer.Errorf(buzzer.EINVALID, "--clients must be 1..10000")
	case *players < 1 || *players > 1_000_000:
		return buzzer.Errorf(buzzer.EINVALID, "--players must be 1..1000000")
	case *retryRate < 0 || *retryRate > 1:
		return buzzer.Errorf(buzzer.EINVALID, "--retry-rate must be within 0..1")
	case *duration <= 0:
		return buzzer.Errorf(buzzer.EINVALID, "--duration must be > 0")
	case *stake < 1:
		return buzzer.Errorf(buzzer.EINVALID, "--stake must be >= 1")
	}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	base := strings.TrimRight(*target, "/")
	// Each simulated player's app locates itself (in Trenton, NJ) once per
	// session; its later requests ride on the session's cached decision.
	c, err := devGeoClient(*dataDir, "NJ", benchClient(*clients))
	if err != nil {
		return err
	}
	sels, err := openSelections(ctx, c, base)
	if err != nil {
		return err
	}

	// Every player gets a token and enough money for the whole run.
	run := fmt.Sprintf("%08x", rand.Uint32())
	tokens, err := fundPlayers(ctx, c, keys, base, "bench-"+run, *players, *clients, 9_000_000, *currency, *duration+10*time.Minute, stderr)
	if err != nil {
		return err
	}

	var retries, dups, bets atomic.Int64
	// The load generator shares the cores with the server, so each op does
	// as little as it can: bodies are encoded once per selection, keys are
	// the run, client and a counter (unique per player, as keys must be),
	// and every client keeps its own random source and response buffer.
	bodies := make([][]byte, len(sels))
	for i, s := range sels {
		bodies[i] = fmt.Appendf(nil, `{"stake":%d,"currency":%q,"price_change":"any","legs":[{"event_id":%q,"market_id":%q,"selection_id":%q,"price":%q}]}`,
			*stake, *currency, s.Event, s.Market, s.Selection, s.Price.String())
	}
	type benchClientState struct {
		r         *rand.Rand
		prefix    string
		n         uint64
		buf, buf2 []byte
	}
	states := make([]*benchClientState, *clients)
	for c := range states {
		states[c] = &benchClientState{r: rand.New(rand.NewPCG(uint64(c), rand.Uint64())), prefix: run + "-" + strconv.Itoa(c) + "-"}
	}
	betsURL := base + "/v1/bets"
	fmt.Fprintf(stderr, "bench: placing bets with %d clients for %s\n", *clients, *duration)
	res := loadgen.Run(ctx, *clients, *duration, stderr, func(ctx context.Context, client int) error {
		st := states[client]
		p := st.r.IntN(*players)
		body := bodies[st.r.IntN(len(bodies))]
		st.n++
		key := st.prefix + strconv.FormatUint(st.n, 10)
		code, first, err := postBet(ctx, c, betsURL, tokens[p], key, body, st.buf[:0])
		st.buf = first
		if err != nil {
			return err
		}
		if st.r.Float64() < *retryRate {
			// The client "lost" the first response: send the same request
			// again. It must come back byte for byte, never as a second bet.
			retries.Add(1)
			for attempt := 0; ; attempt++ {
				code2, again, err := postBet(ctx, c, betsURL, tokens[p], key, body, st.buf2[:0])
				st.buf2 = again
				if err != nil {
					return err
				}
				if code2 == http.StatusConflict && attempt < 50 {
					time.Sleep(2 * time.Millisecond) // still in flight
					continue
				}
				if code2 != code || !bytes.Equal(again, first) {
					dups.Add(1)
					return fmt.Errorf("replay differs: %d %.200s vs %d %.200s", code, first, code2, again)
				}
				break
			}
		}
		if code != http.StatusCreated {
			return fmt.Errorf("POST /v1/bets: %d %.200s", code, first)
		}
		bets.Add(1)
		return nil
	})
	out := betsResult{
		BetsPerS: float64(bets.Load()) / res.Elapsed.Seconds(), P50ms: res.P50ms, P95ms: res.P95ms, P99ms: res.P99ms,
		Errors: res.Errors, Retries: retries.Load(), Duplicates: dups.Load(), Bets: bets.Load(),
		Clients: *clients, Players: *players, DurationS: res.Elapsed.Seconds(), FirstError: res.FirstErr,
		AuditBacklog: auditBacklog(ctx, *admin),
	}
	if *jsonOut {
		b, _ := json.Marshal(out)
		fmt.Fprintln(stdout, string(b))
		return nil
	}
	fmt.Fprintf(stdout, "bets/s %.0f  p50 %.2f ms  p95 %.2f ms  p99 %.2f ms  errors %d  retries %d  duplicates %d\n",
		out.BetsPerS, out.P50ms, out.P95ms, out.P99ms, out.Errors, out.Retries, out.Duplicates)
	return nil
}
