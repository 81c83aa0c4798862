// Package migrate reads Buzzer's embedded, versioned SQL migrations. Each engine
// package embeds its own files as migrations/<component>/NNNN_name.sql, with an
// optional NNNN_name.crdb.sql variant where CockroachDB's DDL differs; this
// package only orders and selects them. Applying them is the engine's job.
package migrate

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
)

// Migration is one versioned step of one component's schema.
type Migration struct {
	Component string
	Version   int
	Name      string
	SQL       string
}

// ID names the migration in logs and errors.
func (m Migration) ID() string { return fmt.Sprintf("%s/%04d_%s", m.Component, m.Version, m.Name) }

// Load returns every migration under root in fsys, ordered by component name
// ("core" first) then version. With crdb set, a NNNN_name.crdb.sql file
// replaces its plain sibling; otherwise .crdb.sql files are ignored. Two files
// with one version in one component are an error.
func Load(fsys fs.FS, root string, crdb bool) ([]Migration, error) {
	comps, err := fs.ReadDir(fsys, root)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, c := range comps {
		if !c.IsDir() {
			continue
		}
		files, err := fs.ReadDir(fsys, path.Join(root, c.Name()))
		if err != nil {
			return nil, err
		}
		byVersion := map[int]Migration{}
		for _, f := range files {
			name := f.Name()
			if f.IsDir() || !strings.HasSuffix(name, ".sql") {
				continue
			}
			isCRDB := strings.HasSuffix(name, ".crdb.sql")
			if isCRDB && !crdb {
				continue
			}
			base := strings.TrimSuffix(strings.TrimSuffix(name, ".sql"), ".crdb")
			num, label, ok := strings.Cut(base, "_")
			v, err := strconv.Atoi(num)
			if !ok || err != nil || v <= 0 {
				return nil, fmt.Errorf("migration %s/%s: name must be NNNN_name.sql", c.Name(), name)
			}
			body, err := fs.ReadFile(fsys, path.Join(root, c.Name(), name))
			if err != nil {
				return nil, err
			}
			m := Migration{Component: c.Name(), Version: v, Name: label, SQL: string(body)}
			if prev, dup := byVersion[v]; dup {
				// The only allowed pair is a plain file and its .crdb variant.
				if prev.Name != label || !crdb {
					return nil, fmt.Errorf("migration %s: version %d defined twice", c.Name(), v)
				}
				if !isCRDB {
					continue // keep the .crdb variant already read
				}
			}
			byVersion[v] = m
		}
		for _, m := range byVersion {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Component != b.Component {
			if a.Component == "core" || b.Component == "core" {
				return a.Component == "core"
			}
			return a.Component < b.Component
		}
		return a.Version < b.Version
	})
	return out, nil
}
