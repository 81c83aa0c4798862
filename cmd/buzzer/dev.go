package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/auth"
)

func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return buzzer.Wrap(err, buzzer.EINVALID, "%v", err)
	}
	if fs.NArg() > 0 {
		return buzzer.Errorf(buzzer.EINVALID, "unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func runDevToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "data dir of the dev-mode serve that must accept the token")
	player := fs.String("player", "", "player id (required)")
	jur := fs.String("jurisdiction", "NJ", "jurisdiction code")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *player == "" {
		return buzzer.Errorf(buzzer.EINVALID, "--player is required")
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return buzzer.Errorf(buzzer.EINVALID, "--ttl must be between 0 and 720h")
	}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	tok, err := keys.PlayerToken(*player, *jur, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func runDevAdminToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev admin-token", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "./data", "data dir of the dev-mode serve that must accept the token")
	operator := fs.String("operator", "dev-operator", "operator id recorded on every admin action")
	ttl := fs.Duration("ttl", time.Hour, "token lifetime")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *ttl <= 0 || *ttl > 30*24*time.Hour {
		return buzzer.Errorf(buzzer.EINVALID, "--ttl must be between 0 and 720h")
	}
	keys, err := auth.LoadOrCreateDevKeys(*dataDir)
	if err != nil {
		return err
	}
	tok, err := keys.AdminToken(*operator, *ttl, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
