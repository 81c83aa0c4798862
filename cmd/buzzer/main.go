// Command buzzer is the one binary of Buzzer: one subcommand per role. `buzzer
// serve` runs every role in one process on embedded engines. main reads the
// configuration, builds every part and wires them by hand; no part builds
// another.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/buzzer-bet/buzzer"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

// command is one subcommand; run gets the arguments after its name.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	cmds := map[string]command{
		"serve":           {"run every role in one process on embedded engines", runServe},
		"edge":            {"run one jurisdiction's regulated services (serve with a required --jurisdiction)", runEdge},
		"migrate":         {"apply the store's schema migrations and exit", runMigrate},
		"version":         {"print the version", runVersion},
		"config print":    {"print the effective configuration, secrets masked", runConfigPrint},
		"dev token":       {"print a player token a dev-mode serve accepts", runDevToken},
		"dev admin-token": {"print an admin token a dev-mode serve accepts", runDevAdminToken},
		"bench bets":      {"place bets over HTTP with idempotency keys and re-sends; print throughput and latency", runBenchBets},
		"rehearse":        {"Super Bowl rehearsal: open-loop baseline, spike and recovery of bets with scheduled faults, then an exactly-once money check", runRehearse},
		"ledger check":    {"verify the ledger invariants of a store (exit 1 on any violation)", runLedgerCheck},
	}
	// Each part's commands live in its own file.
	for _, set := range []map[string]command{rngCommands(), auditCommands(), gatewayCommands(), oddsCommands(), tableCommands()} {
		maps.Copy(cmds, set)
	}
	return cmds
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintf(os.Stderr, "buzzer: %s\n", describe(err))
		}
		os.Exit(exitCode(err))
	}
}

var errUsage = errors.New("usage")

// exitFailure is returned by checks (ledger check, audits) that ran fine but
// found a failure: exit 1, distinct from a usage error (2).
type exitFailure struct{ msg string }

func (e exitFailure) Error() string { return e.msg }

func exitCode(err error) int {
	var ef exitFailure
	switch {
	case errors.As(err, &ef):
		return 1
	case errors.Is(err, errUsage), buzzer.ErrorCode(err) == buzzer.EINVALID:
		return 2
	default:
		return 1
	}
}

// describe shows a typed error's human message (with its cause for an
// operator at a terminal).
func describe(err error) string {
	var be *buzzer.Error
	if errors.As(err, &be) {
		if be.Err != nil && be.Code != buzzer.EINVALID {
			return fmt.Sprintf("%s (%s): %v", be.Message, be.Code, be.Err)
		}
		return be.Message
	}
	return err.Error()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmds := commands()
	for n := 2; n >= 1; n-- {
		if len(args) >= n {
			if c, ok := cmds[strings.Join(args[:n], " ")]; ok {
				return c.run(ctx, args[n:], stdout, stderr)
			}
		}
	}
	usage(stderr, cmds)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		return errUsage
	}
	fmt.Fprintf(stderr, "\nunknown command %q\n", strings.Join(args, " "))
	return errUsage
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "Buzzer: a backend for live sports betting and live table games.")
	fmt.Fprintln(w, "\nUsage: buzzer COMMAND [flags]   (buzzer COMMAND -h for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, n := range names {
		fmt.Fprintf(w, "  %-18s %s\n", n, cmds[n].summary)
	}
}

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) > 0 {
		return buzzer.Errorf(buzzer.EINVALID, "version takes no arguments")
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = " " + s.Value
			}
		}
	}
	fmt.Fprintf(stdout, "buzzer %s%s %s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

func runConfigPrint(_ context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newConfigFlags("config print", stderr)
	cfg, err := cf.parse(args)
	if err != nil {
		return err
	}
	b, err := masked(cfg)
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
