// Package redis holds Buzzer's Redis implementations of interfaces other
// packages define: the live tables' store (TableStore, a table.Store: a
// lease with a fencing epoch and compare-and-set writes) and the gateway's
// shared token-bucket rate limiter (RateLimiter, a gateway.Limiter). It owns
// key layouts and the Lua scripts that keep each operation atomic, and is
// tested against a real Redis. It holds no policy, and it must never treat
// a Redis error as permission: errors go back to the caller, which decides
// (the gateway falls back to its in-process buckets; tables fail the write).
package redis
