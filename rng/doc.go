// Package rng owns Buzzer's random number service and its tamper-evident log.
//
// Every draw (uniform integers, shuffles, raw bytes) is taken from an injected
// CSPRNG (crypto/rand in production) at request time, encoded as a canonical,
// versioned record, and appended to a Merkle-tree log (golang.org/x/mod/sumdb/tlog
// hashing) through a group-commit batcher; the values are returned only after
// the append is durable. Signed checkpoints (C2SP tlog-checkpoint bodies in the
// signed-note format) commit to the log, and the offline verification functions
// (OpenCheckpoint, VerifyDraw, VerifyConsistency, Audit) let anyone holding the
// public verifier key check a draw's inclusion and that the log was only ever
// appended to.
//
// The package must never pre-generate, cache or reuse randomness, never reveal
// a value that is not durably logged, and never import a storage engine or a
// transport: engines implement Store, transports call Service.
package rng
