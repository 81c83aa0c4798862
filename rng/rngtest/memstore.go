// Package rngtest holds the conformance suite every rng.Store implementation
// must pass (RunStoreTests), an in-memory Store for the domain's own tests,
// and a fault-injecting Store wrapper. It is for tests only: production code
// must never import it, and MemStore must never back a real log (it is not
// durable).
package rngtest

import (
	"bytes"
	"context"
	"sort"
	"sync"

	"github.com/buzzer-bet/buzzer"
	"github.com/buzzer-bet/buzzer/rng"
	"golang.org/x/mod/sumdb/tlog"
)

// MemStore is an in-memory rng.Store. It implements the full contract
// (atomic appends, conflicts, ordering) so the service's tests exercise the
// same behaviour as the SQL stores, and it lets tests tamper with its contents.
type MemStore struct {
	mu      sync.Mutex
	records []rng.StoredRecord
	ids     map[string]int64
	hashes  []tlog.Hash
	cps     map[int64]rng.SavedCheckpoint
}

var _ rng.Store = (*MemStore)(nil)

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{ids: map[string]int64{}, cps: map[int64]rng.SavedCheckpoint{}}
}

// Append implements rng.Store.
func (m *MemStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	if err := rng.CheckAppend(oldSize, records, hashes); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return buzzer.Wrap(err, buzzer.ETIMEOUT, "append cancelled")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if int64(len(m.records)) != oldSize {
		return buzzer.Errorf(buzzer.ECONFLICT, "the log has %d records, not %d", len(m.records), oldSize)
	}
	seen := map[string]bool{}
	for _, r := range records {
		if _, dup := m.ids[r.ID]; dup || seen[r.ID] {
			return buzzer.Errorf(buzzer.ECONFLICT, "draw %s is already logged", r.ID)
		}
		seen[r.ID] = true
	}
	for _, r := range records {
		m.ids[r.ID] = r.Index
		m.records = append(m.records, rng.StoredRecord{Index: r.Index, ID: r.ID, Data: bytes.Clone(r.Data)})
	}
	m.hashes = append(m.hashes, hashes...)
	return nil
}

// TreeSize implements rng.Store.
func (m *MemStore) TreeSize(ctx context.Context) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return int64(len(m.records)), nil
}

// ReadHashes implements rng.Store.
func (m *MemStore) ReadHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, buzzer.Errorf(buzzer.ENOTFOUND, "no stored hash %d", x)
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

// RecordByID implements rng.Store.
func (m *MemStore) RecordByID(ctx context.Context, id string) (rng.StoredRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.ids[id]
	if !ok {
		return rng.StoredRecord{}, buzzer.Errorf(buzzer.ENOTFOUND, "no draw %s", id)
	}
	r := m.records[i]
	r.Data = bytes.Clone(r.Data)
	return r, nil
}

// Records implements rng.Store.
func (m *MemStore) Records(ctx context.Context, from int64, limit int) ([]rng.StoredRecord, error) {
	if from < 0 || limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "records need from >= 0 and limit > 0")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []rng.StoredRecord
	for i := from; i < int64(len(m.records)) && len(out) < limit; i++ {
		r := m.records[i]
		r.Data = bytes.Clone(r.Data)
		out = append(out, r)
	}
	return out, nil
}

// SaveCheckpoint implements rng.Store.
func (m *MemStore) SaveCheckpoint(ctx context.Context, c rng.SavedCheckpoint) error {
	if c.Size < 0 || len(c.Note) == 0 {
		return buzzer.Errorf(buzzer.EINVALID, "checkpoint needs a size and a note")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cps[c.Size]; ok {
		return buzzer.Errorf(buzzer.ECONFLICT, "a checkpoint of size %d is already stored", c.Size)
	}
	c.Note = bytes.Clone(c.Note)
	m.cps[c.Size] = c
	return nil
}

// LatestCheckpoint implements rng.Store.
func (m *MemStore) LatestCheckpoint(ctx context.Context) (rng.SavedCheckpoint, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	best := int64(-1)
	for s := range m.cps {
		if s > best {
			best = s
		}
	}
	if best < 0 {
		return rng.SavedCheckpoint{}, buzzer.Errorf(buzzer.ENOTFOUND, "no checkpoint stored")
	}
	c := m.cps[best]
	c.Note = bytes.Clone(c.Note)
	return c, nil
}

// Checkpoints implements rng.Store.
func (m *MemStore) Checkpoints(ctx context.Context, fromSize int64, limit int) ([]rng.SavedCheckpoint, error) {
	if limit <= 0 {
		return nil, buzzer.Errorf(buzzer.EINVALID, "checkpoints need limit > 0")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var sizes []int64
	for s := range m.cps {
		if s >= fromSize {
			sizes = append(sizes, s)
		}
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	if len(sizes) > limit {
		sizes = sizes[:limit]
	}
	out := make([]rng.SavedCheckpoint, len(sizes))
	for i, s := range sizes {
		out[i] = m.cps[s]
		out[i].Note = bytes.Clone(out[i].Note)
	}
	return out, nil
}

// TamperRecord overwrites the stored data of record index, as an attacker
// with write access to the database could.
func (m *MemStore) TamperRecord(index int64, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[index].Data = bytes.Clone(data)
}

// TamperHash overwrites stored hash index.
func (m *MemStore) TamperHash(index int64, h tlog.Hash) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hashes[index] = h
}

// FaultStore wraps a Store and fails Append while FailAppend returns an error.
type FaultStore struct {
	rng.Store
	mu         sync.Mutex
	failAppend error
}

// SetAppendError makes every following Append fail with err (nil heals it).
func (f *FaultStore) SetAppendError(err error) {
	f.mu.Lock()
	f.failAppend = err
	f.mu.Unlock()
}

// Append implements rng.Store.
func (f *FaultStore) Append(ctx context.Context, oldSize int64, records []rng.StoredRecord, hashes []tlog.Hash) error {
	f.mu.Lock()
	err := f.failAppend
	f.mu.Unlock()
	if err != nil {
		return err
	}
	return f.Store.Append(ctx, oldSize, records, hashes)
}
