package rng

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// frontier holds the right edge of a tlog tree of a given size: the roots of
// its complete subtrees, one per set bit of the size. They are exactly the
// stored hashes tlog.StoredHashes reads to append the next record and
// tlog.TreeHash reads to compute the root, so appending and checkpointing
// never go back to the store.
type frontier struct {
	size   int64
	hashes map[int64]tlog.Hash // stored-hash index -> hash, only frontierIndexes(size)
}

// frontierIndexes returns the stored-hash indexes of the complete subtrees
// that make up a tree of n records, largest first.
func frontierIndexes(n int64) []int64 {
	var idx []int64
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(int64(1)<<level) != 0 {
			idx = append(idx, tlog.StoredHashIndex(level, start>>level))
			start += int64(1) << level
		}
	}
	return idx
}

func newFrontier(size int64, hashes []tlog.Hash) (*frontier, error) {
	idx := frontierIndexes(size)
	if len(hashes) != len(idx) {
		return nil, fmt.Errorf("rng: frontier of size %d needs %d hashes, got %d", size, len(idx), len(hashes))
	}
	f := &frontier{size: size, hashes: make(map[int64]tlog.Hash, len(idx))}
	for i, x := range idx {
		f.hashes[x] = hashes[i]
	}
	return f, nil
}

// ReadHashes implements tlog.HashReader over the frontier.
func (f *frontier) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		h, ok := f.hashes[x]
		if !ok {
			return nil, fmt.Errorf("rng: stored hash %d is not on the frontier of size %d", x, f.size)
		}
		out[i] = h
	}
	return out, nil
}

// clone returns an independent copy, so a batch can be staged without
// touching the committed frontier.
func (f *frontier) clone() *frontier {
	c := &frontier{size: f.size, hashes: make(map[int64]tlog.Hash, len(f.hashes)+1)}
	for k, v := range f.hashes {
		c.hashes[k] = v
	}
	return c
}

// append adds one record's leaf data and returns the stored hashes it creates
// (to be written at stored-hash index tlog.StoredHashCount(old size)).
func (f *frontier) append(data []byte) ([]tlog.Hash, error) {
	hs, err := tlog.StoredHashes(f.size, data, f)
	if err != nil {
		return nil, err
	}
	base := tlog.StoredHashCount(f.size)
	for i, h := range hs {
		f.hashes[base+int64(i)] = h
	}
	f.size++
	keep := make(map[int64]bool)
	for _, x := range frontierIndexes(f.size) {
		keep[x] = true
	}
	for x := range f.hashes {
		if !keep[x] {
			delete(f.hashes, x)
		}
	}
	return hs, nil
}

// root returns the tree hash of the frontier's tree.
func (f *frontier) root() (tlog.Hash, error) {
	return tlog.TreeHash(f.size, f)
}
