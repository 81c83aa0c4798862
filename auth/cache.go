package auth

import (
	"sync"
	"time"
)

// cacheShards splits the verified-token cache so concurrent requests rarely
// wait on one lock.
const cacheShards = 16

// tokenCache remembers verified tokens by the SHA-256 of the token until they
// expire. Each shard is bounded and evicts first-in first-out, so inserting is
// O(1) whatever the load; an evicted token is simply verified again.
type tokenCache struct {
	shards [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.Mutex
	entries map[[32]byte]cacheEntry
	ring    [][32]byte // insertion order; ring[next] is the next victim
	next    int
}

type cacheEntry struct {
	p Principal
	// key is the key that verified the token: the entry is only good while
	// that very key is still trusted.
	key *verifyKey
	// until is exp plus leeway: the instant the full check would reject.
	until time.Time
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{}
	for i := range c.shards {
		per := size / cacheShards // the total is exactly size
		if i < size%cacheShards {
			per++
		}
		c.shards[i].entries = make(map[[32]byte]cacheEntry, per)
		c.shards[i].ring = make([][32]byte, per)
	}
	return c
}

func (c *tokenCache) get(h [32]byte, now time.Time, ks *keySet) (Principal, bool) {
	if c == nil {
		return Principal{}, false
	}
	s := &c.shards[h[0]%cacheShards]
	s.mu.Lock()
	e, ok := s.entries[h]
	s.mu.Unlock()
	if !ok || !now.Before(e.until) || ks.keys[e.key.kid] != e.key {
		return Principal{}, false
	}
	return e.p, true
}

func (c *tokenCache) put(h [32]byte, e cacheEntry) {
	if c == nil {
		return
	}
	s := &c.shards[h[0]%cacheShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ring) == 0 {
		return
	}
	if _, ok := s.entries[h]; ok {
		s.entries[h] = e
		return
	}
	if len(s.entries) >= len(s.ring) {
		delete(s.entries, s.ring[s.next])
	}
	s.ring[s.next] = h
	s.next = (s.next + 1) % len(s.ring)
	s.entries[h] = e
}

func (c *tokenCache) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		c.shards[i].mu.Lock()
		n += len(c.shards[i].entries)
		c.shards[i].mu.Unlock()
	}
	return n
}
