// Package wallettest holds what every wallet.Store implementation must pass:
// the conformance suite (RunStoreTests), the bank-style concurrent workload
// with its end-to-end checks (RunBank, Bank), a deterministic price source
// and clock for tests, and MemStore, an in-process Store that the domain's
// own unit tests run on. It is for tests and benchmarks only and must never
// be wired into a production binary.
package wallettest
