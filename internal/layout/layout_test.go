package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/buzzer-bet/buzzer"

// domains are the packages that hold rules and must stay engine- and
// transport-free (their subpackages too, test helpers included).
var domains = []string{"wallet", "odds", "table", "rng", "geo", "audit", "catalog", "toggle"}

// forbidden are import path prefixes a domain package may not use.
var forbidden = []string{
	module + "/postgres", module + "/sqlite", module + "/nats", module + "/kafka", module + "/redis",
	module + "/inmem", module + "/httpapi", module + "/fanout", module + "/tablefeed", module + "/archive", module + "/cmd",
	"github.com/jackc/", "modernc.org/sqlite", "github.com/nats-io/", "github.com/redis/",
	"github.com/twmb/", "github.com/centrifugal/", "net/http",
}

func root(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("repository root not found from %s", dir)
	}
	return dir
}

type pkgFiles struct {
	dir   string
	files []string // non-test Go files
}

func packages(t *testing.T) []pkgFiles {
	t.Helper()
	base := root(t)
	byDir := map[string][]string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && p != base && (strings.HasPrefix(name, ".") || name == "testdata" || name == "data" || name == "node_modules") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(name, ".go") && !strings.HasSuffix(name, "_test.go") {
			byDir[filepath.Dir(p)] = append(byDir[filepath.Dir(p)], p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out []pkgFiles
	for d, fs := range byDir {
		rel, _ := filepath.Rel(base, d)
		out = append(out, pkgFiles{dir: filepath.ToSlash(rel), files: fs})
	}
	return out
}

func isDomain(rel string) bool {
	for _, d := range domains {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return false
}

func TestDomainPackagesImportNoEngineOrTransport(t *testing.T) {
	checked := 0
	for _, p := range packages(t) {
		if !isDomain(p.dir) {
			continue
		}
		checked++
		for _, f := range p.files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				for _, bad := range forbidden {
					if path == bad || strings.HasPrefix(path, bad) {
						t.Errorf("%s imports %s: a domain package may not import an engine or transport; move the interface into the domain and the implementation into the engine package", f, path)
					}
				}
			}
		}
	}
	t.Logf("checked %d domain packages", checked)
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range packages(t) {
		documented := false
		for _, f := range p.files {
			af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if af.Doc != nil && strings.TrimSpace(af.Doc.Text()) != "" {
				documented = true
				break
			}
		}
		if !documented {
			t.Errorf("package %s has no doc comment saying what it owns and what it must never do", p.dir)
		}
	}
}

// The checks above must be able to fail: a forbidden import is caught.
func TestForbiddenListCatchesEngines(t *testing.T) {
	for _, path := range []string{"net/http", "github.com/jackc/pgx/v5", module + "/postgres"} {
		caught := false
		for _, bad := range forbidden {
			if path == bad || strings.HasPrefix(path, bad) {
				caught = true
			}
		}
		if !caught {
			t.Errorf("%s is not forbidden", path)
		}
	}
}
