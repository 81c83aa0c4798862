// Package golden compares test output with golden files under testdata/ and
// rewrites them when tests run with -update. It is for the feed adapters'
// tests only and must never be imported by non-test code.
package golden

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Check marshals got as indented JSON and compares it with the file at path.
func Check(t *testing.T, path string, got any) {
	t.Helper()
	b, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, '\n')
	if *update {
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, b) {
		t.Fatalf("%s differs from the output; run with -update after checking the diff.\ngot:\n%s", path, b)
	}
}
