// Package wallet owns Buzzer's money: the double-entry ledger (accounts,
// transactions, postings in integer minor units), the idempotent money API
// (deposits, withdrawals, bet placement) with IETF Idempotency-Key semantics,
// bet acceptance rules, settlement and resettlement, and the ledger checker.
//
// It declares what it needs from storage (Store, Tx) and from the odds side
// (PriceSource) as interfaces; engine packages implement them. It must never
// import a database engine or a transport (no pgx, no sqlite, no net/http),
// never use a float for money or odds, and never read the wall clock or a
// global random source directly: time and IDs are injected through Config.
package wallet
