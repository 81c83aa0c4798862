package sqlite

import (
	"context"
	"sync"

	"github.com/buzzer-bet/buzzer/internal/migrate"
)

// concurrently calls fn(w, i) for i = 0..each-1 on each of workers
// goroutines at once, and returns when all are done: the shape of the
// store's concurrency tests.
func concurrently(workers, each int, fn func(w, i int)) {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				fn(w, i)
			}
		}()
	}
	wg.Wait()
}

// Concurrently is concurrently for the external tests.
var Concurrently = concurrently

// MigrateBefore applies the embedded migrations older than the named ones
// (component → first version left out): the schema a store had before.
func MigrateBefore(ctx context.Context, db *DB, first map[string]int) error {
	return db.migrate(ctx, func(m migrate.Migration) bool {
		v, ok := first[m.Component]
		return !ok || m.Version < v
	})
}

// WriterCacheKiB is writerCacheKiB for the external tests.
const WriterCacheKiB = writerCacheKiB
