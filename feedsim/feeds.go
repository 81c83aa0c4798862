package feedsim

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
)

// FeedsConfig configures a complete simulated feed setup.
type FeedsConfig struct {
	Sim     Config
	UOF     UOFConfig
	Betfair BetfairConfig
	USOdds  USOddsConfig
	// Host is the listen host for every provider and the control API, each on
	// an ephemeral port (default "127.0.0.1"), unless the listener's own
	// address is set below (e.g. for `buzzer feedsim` with fixed ports).
	Host                                      string
	UOFAddr, BetfairAddr, USOddsAddr, CtlAddr string
	// Manual: do not step the simulation on a timer; the caller calls Sim.Step.
	Manual bool
}

// Feeds is a running simulator with its three providers and control API.
type Feeds struct {
	Sim     *Sim
	UOF     *UOF
	Betfair *Betfair
	USOdds  *USOdds

	ctl    net.Listener
	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the simulator, the providers and the control API on ephemeral
// loopback ports. Stop (or cancelling ctx) stops them all.
func Start(ctx context.Context, cfg FeedsConfig) (*Feeds, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	ctx, cancel := context.WithCancel(ctx)
	f := &Feeds{cancel: cancel}
	f.Sim = New(cfg.Sim)
	cfg.UOF.Seed += cfg.Sim.Seed
	cfg.Betfair.Seed += cfg.Sim.Seed
	cfg.USOdds.Seed += cfg.Sim.Seed
	f.UOF = NewUOF(f.Sim, cfg.UOF)
	f.Betfair = NewBetfair(f.Sim, cfg.Betfair)
	f.USOdds = NewUSOdds(f.Sim, cfg.USOdds)
	addr := func(a string) string {
		if a != "" {
			return a
		}
		return net.JoinHostPort(cfg.Host, "0")
	}
	err := errors.Join(f.UOF.Start(ctx, addr(cfg.UOFAddr)), f.Betfair.Start(ctx, addr(cfg.BetfairAddr)), f.USOdds.Start(ctx, addr(cfg.USOddsAddr)))
	if err == nil {
		f.ctl, err = net.Listen("tcp", addr(cfg.CtlAddr))
	}
	if err != nil {
		cancel()
		return nil, err
	}
	f.srv = &http.Server{Handler: f.controlHandler()}
	f.wg.Add(1)
	go func() { defer f.wg.Done(); _ = f.srv.Serve(f.ctl) }()
	if !cfg.Manual {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.Sim.Run(ctx) }()
	}
	go func() { <-ctx.Done(); _ = f.srv.Close() }()
	return f, nil
}

// ControlURL is the base URL of the fault control API.
func (f *Feeds) ControlURL() string { return "http://" + f.ctl.Addr().String() }

// Endpoints returns where each provider and the control API listen: the UOF
// and US odds base URLs, the Betfair stream host:port and the control URL.
func (f *Feeds) Endpoints() map[string]string {
	return map[string]string{
		ProviderUOF: f.UOF.URL(), ProviderBetfair: f.Betfair.Addr(), ProviderUSOdds: f.USOdds.URL(), "control": f.ControlURL(),
	}
}

// Stop stops everything and waits for it.
func (f *Feeds) Stop() {
	f.cancel()
	f.wg.Wait()
	f.UOF.Wait()
	f.Betfair.Wait()
	f.USOdds.Wait()
}

type faultable interface {
	SetFaults(Faults)
	Faults() Faults
}

func (f *Feeds) provider(name string) faultable {
	switch name {
	case ProviderUOF:
		return f.UOF
	case ProviderBetfair:
		return f.Betfair
	case ProviderUSOdds:
		return f.USOdds
	}
	return nil
}

// SetFaults sets the faults of the named provider.
func (f *Feeds) SetFaults(provider string, fl Faults) bool {
	p := f.provider(provider)
	if p == nil {
		return false
	}
	p.SetFaults(fl)
	return true
}

// controlHandler serves GET /faults (every provider's faults) and
// PUT /faults/{provider} with a Faults JSON body.
func (f *Feeds) controlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]Faults{
			ProviderUOF: f.UOF.Faults(), ProviderBetfair: f.Betfair.Faults(), ProviderUSOdds: f.USOdds.Faults(),
		})
	})
	mux.HandleFunc("PUT /faults/{provider}", func(w http.ResponseWriter, r *http.Request) {
		p := f.provider(r.PathValue("provider"))
		if p == nil {
			http.Error(w, "unknown provider", http.StatusNotFound)
			return
		}
		var fl Faults
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&fl); err != nil || fl.LagMS < 0 || fl.MalformedEvery < 0 || fl.Diverge < 0 {
			http.Error(w, "body must be a Faults JSON object with non-negative values", http.StatusBadRequest)
			return
		}
		p.SetFaults(fl)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(fl)
	})
	return mux
}
