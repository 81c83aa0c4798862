// Package table owns live blackjack: the pure rules engine (cards, hands,
// rounds, settlement, basic strategy), the table service that runs rounds for
// seated players with betting windows and action timeouts, and the small
// interfaces it needs from the outside — Store (fenced single-writer state and
// the ordered event log), Wallet (stakes and payouts with idempotency keys),
// Shuffler (shoes from the RNG service) and Publisher (live fan-out).
//
// It must never import a storage engine or a transport, never hold money as
// anything but buzzer.Amount, never draw randomness itself (every shoe comes
// from the Shuffler), and never put an unrevealed card — the dealer's hole
// card or any undealt card of the shoe — into an Event or a View.
//
// # Rules and rounding
//
// Round is a pure state machine: given Rules, bets, the shoe's cards and the
// players' decisions it always reaches the same state. Every amount is an
// integer of minor units. A natural pays floor(stake × 3/2) (or × 6/5): a
// fraction of a minor unit is rounded down, in the house's favour, as
// buzzer.Payout does — 3:2 on a stake of 5 pays 7; DefaultTableConfig uses an
// even minimum bet. Surrender returns floor(stake/2); insurance may be 1 up to
// floor(bet/2) and pays 2:1. Doubling under the 9–11 and 10–11 rules means
// hard totals only. Any two ten-value cards may be split. Split aces get one
// card each; 21 after a split is not a natural. Without a peek (no hole card
// checked) a dealer natural takes doubles and splits too, and a surrender is
// void against it.
//
// # One writer per table
//
// A node serves a table only while it holds the table's Lease; every state
// write carries the lease's epoch and the version it read, and the Store
// refuses stale ones, so a paused or partitioned node cannot write after
// another took over. Every accepted decision appends events numbered by the
// table's sequence; subscribers take a View snapshot (any node can serve it
// from the Store), then apply events, resuming with Events after their last
// sequence.
//
// Money moves in this order, so a crash at any point loses or repeats
// nothing: a stake's intent (the request and its wallet op) is written
// first, then the wallet is debited with the op's idempotency key, then the
// action and its events are written. Settlement writes the results and the
// payouts owed in one write, then credits them, then opens the next round.
// Whichever node holds the table next finishes what is left, with the same
// keys (WalletKey(table, round, seat, action)), so the wallet applies each
// once. Table IDs must therefore never be reused for a new table.
package table
