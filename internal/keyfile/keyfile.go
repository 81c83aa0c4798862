// Package keyfile creates secret key files exactly once, safely against a
// crash and against other processes starting at the same moment.
package keyfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// Create writes data as a new file at path, readable by its owner only,
// and never replaces an existing file. The data goes to a temporary file in
// the same directory, is synced, and is hard-linked into place — a link
// fails if the name exists, so a crash never leaves a half-written key under
// the real name and two processes starting at once agree on one key — then
// the directory is synced so the new name survives a crash.
//
// If path already exists (another process won), Create returns its contents
// and created false; the caller uses that key.
func Create(path string, data []byte) (contents []byte, created bool, err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp")
	if err != nil {
		return nil, false, err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			cur, rerr := os.ReadFile(path)
			return cur, false, rerr
		}
		return nil, false, err
	}
	if d, err := os.Open(dir); err == nil {
		serr := d.Sync()
		d.Close()
		if serr != nil {
			return nil, false, serr
		}
	}
	return data, true, nil
}
