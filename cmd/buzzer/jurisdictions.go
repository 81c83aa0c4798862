package main

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/sqlite"
)

// validateJurisdictions checks the jurisdictions a node holds and where
// each one's regulated data goes: every store named, none shared.
func (c *Config) validateJurisdictions() error {
	if len(c.Jurisdictions) == 0 || c.Jurisdictions[0] != c.Jurisdiction {
		return buzzer.Errorf(buzzer.EINVALID, "jurisdictions must start with the home jurisdiction %s", c.Jurisdiction)
	}
	seen := map[string]bool{}
	for _, j := range c.Jurisdictions {
		if !validJurisdiction(j) {
			return buzzer.Errorf(buzzer.EINVALID, "jurisdictions: %q is not 2..8 upper-case letters or digits", j)
		}
		if seen[j] {
			return buzzer.Errorf(buzzer.EINVALID, "jurisdictions: %s is listed twice", j)
		}
		seen[j] = true
	}
	if c.Edge && len(c.Jurisdictions) > 1 {
		return buzzer.Errorf(buzzer.EINVALID, "an edge holds exactly one jurisdiction (--jurisdiction); run one edge per jurisdiction")
	}
	for j := range c.Stores {
		if !seen[j] {
			return buzzer.Errorf(buzzer.EINVALID, "stores: %s is not one of the jurisdictions held (%s)", j, strings.Join(c.Jurisdictions, ", "))
		}
	}
	owner := map[string]string{}
	for _, j := range c.Jurisdictions {
		pc := c.forJurisdiction(j)
		if pc.Store == "" {
			return buzzer.Errorf(buzzer.EINVALID, "stores.%s must be set: the home store is PostgreSQL, and %s's regulated data goes only to a store named for it", j, j)
		}
		key := pc.Store
		if p, ok := sqlite.PathFromURL(pc.Store); ok {
			key = "sqlite:" + filepath.Clean(p)
		} else if err := pc.Postgres.Validate(); err != nil {
			return buzzer.Wrap(err, buzzer.EINVALID, "stores.%s: %s", j, buzzer.ErrorMessage(err))
		}
		if o, dup := owner[key]; dup {
			return buzzer.Errorf(buzzer.EINVALID, "%s and %s name the same store; each jurisdiction's data must stay in its own", o, j)
		}
		owner[key] = j
	}
	return nil
}

// forJurisdiction is the configuration of jurisdiction j's regulated parts.
// The home jurisdiction's is c itself; another one's differs in everything
// that holds regulated data: its store, its RNG log (origin and key), its
// audit stream, archive and seal key, and its tables' Redis keys.
func (c *Config) forJurisdiction(j string) *Config {
	if j == c.Jurisdiction {
		return c
	}
	pc := *c
	pc.Jurisdiction = j
	pc.Jurisdictions = []string{j}
	dir := filepath.Join(c.DataDir, j)
	pc.Store = c.Stores[j]
	if _, homeLite := sqlite.PathFromURL(c.Store); pc.Store == "" && homeLite {
		pc.Store = "sqlite://" + filepath.Join(dir, "buzzer.db")
	}
	if p, ok := sqlite.PathFromURL(pc.Store); ok {
		pc.SQLite.Path = p
	} else {
		pc.Postgres.URL = pc.Store
	}
	pc.RNG.Origin = "buzzer.local/rng/" + j
	pc.RNG.KeyFile = filepath.Join(dir, "keys", "rng.key")
	pc.Audit.Dir = filepath.Join(dir, "audit")
	pc.Audit.KeyFile = filepath.Join(dir, "keys", "audit.key")
	// Each jurisdiction's audit stream takes subjects no other one's
	// matches: audit.records.> is the home's; audit.PA.records.> is PA's.
	as := c.Audit.Stream.WithDefaults()
	as.Stream, as.DeadStream = as.Stream+"_"+j, as.DeadStream+"_"+j
	as.Subject, as.DeadSubject = subjectFor(as.Subject, j), subjectFor(as.DeadSubject, j)
	pc.Audit.Stream = as
	if c.Tables.KeyPrefix != "" {
		pc.Tables.KeyPrefix = c.Tables.KeyPrefix + j + ":"
	} else {
		pc.Tables.KeyPrefix = "" // startTables derives buzzer:<j>:
	}
	return &pc
}

// subjectFor puts j after the first token of subject: audit.records →
// audit.PA.records.
func subjectFor(subject, j string) string {
	first, rest, ok := strings.Cut(subject, ".")
	if !ok {
		return subject + "." + j
	}
	return first + "." + j + "." + rest
}

// listFlag is a comma-separated list flag.
type listFlag struct{ v *[]string }

func (f listFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strings.Join(*f.v, ",")
}

func (f listFlag) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	*f.v = out
	return nil
}

// mapFlag is a K=V,K=V flag (a value may not contain a comma).
type mapFlag struct{ v *map[string]string }

func (f mapFlag) String() string {
	if f.v == nil || len(*f.v) == 0 {
		return ""
	}
	keys := make([]string, 0, len(*f.v))
	for k := range *f.v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + (*f.v)[k] // parse re-applies it: never masked
	}
	return strings.Join(parts, ",")
}

func (f mapFlag) Set(s string) error {
	m := map[string]string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" || v == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", p)
		}
		if _, dup := m[k]; dup {
			return fmt.Errorf("%s given twice", k)
		}
		m[k] = v
	}
	*f.v = m
	return nil
}
