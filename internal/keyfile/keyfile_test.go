package keyfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestCreateOnceAmongRacers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	var wg sync.WaitGroup
	results := make([][]byte, 16)
	created := make([]bool, 16)
	errs := make([]error, 16)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], created[i], errs[i] = Create(path, []byte(fmt.Sprint("key-", i)))
		}()
	}
	wg.Wait()
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	winners := 0
	for i := range results {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if created[i] {
			winners++
		}
		if !bytes.Equal(results[i], onDisk) {
			t.Fatalf("racer %d uses %q, the file holds %q", i, results[i], onDisk)
		}
	}
	if winners != 1 {
		t.Fatalf("%d racers created the key, want 1", winners)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", fi.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestCreateInAMissingDirFails(t *testing.T) {
	if _, _, err := Create(filepath.Join(t.TempDir(), "no", "such", "key"), []byte("k")); err == nil {
		t.Fatal("created a key in a directory that does not exist")
	}
}
