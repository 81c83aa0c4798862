// Package audit owns Buzzer's compliance trail: the record format every
// captured change is written in, the archiver that moves records from the
// audit stream into a write-once, hash-chained log, the Checker that verify
// runs over every archived record, and Replay, which rebuilds balances,
// bets, market results, RNG log sizes and table sequences from the archive
// alone.
//
// It must never import a database engine, a stream client, a transport or
// the archive's file engine: the stream is the Source interface, the log
// the Log/LogOpener/Records interfaces (package archive implements them and
// owns the file format, seal keys and segment verification) and the store
// comparison the StateReader interface, all implemented by engine packages.
// It must never
// acknowledge a record before the flush holding it has been fsynced, never
// drop a record (a full buffer stops consumption instead), and never sit on
// the bet-placement path: capture writes into the wallet's own transaction
// and everything here runs behind the stream.
//
// # Records and their canonical encoding
//
// A Record is one captured change: id (unique, for de-duplication),
// source (jurisdiction and component: wallet, bet, settlement, rng, table),
// key (what it is ordered under), seq (its position within
// jurisdiction/component/key: 1, 2, 3, ... with no gap, assigned in the
// capturing transaction), time, type and a JSON-object payload. The archive
// holds each record as canonical JSON, which is what is hashed and signed:
//
//   - one object with exactly the keys component, id, jurisdiction, key,
//     payload, seq, time, type;
//   - every object's keys sorted by byte value, no duplicate keys, no
//     whitespace outside strings;
//   - numbers are integers in 64 bits, written in shortest decimal form (no
//     fraction, exponent, plus sign or leading zero); decimals such as prices
//     are strings ("2.5"), money is integer minor units;
//   - strings are UTF-8, escaping only '"', '\' and control characters below
//     U+0020 (as \b \f \n \r \t, others as \u00xx with lower-case hex);
//   - time is RFC 3339 in UTC with 'Z' and only the significant fractional
//     digits (Go's time.RFC3339Nano).
//
// Decode accepts any valid JSON layout of a record; Encode always produces
// the canonical bytes; the archiver stores Encode(Decode(message)). See
// testdata/record_v1.json for an example. Records already in canonical form
// (all that Buzzer captures) are read in one pass that checks the form as it
// goes (scan.go); anything else is canonicalised first, at twenty times the
// cost.
//
// # Payload contract (what the capture emits, what Replay checks)
//
// ledger.transaction — component wallet, key = the player (for a house-only
// transaction, the first posting's account ID); payload LedgerTransaction:
// tx_id (unique in the archive), kind (deposit, withdrawal, bet_placed,
// bet_settled, ...), player, reference, effect_key, and at least two
// postings {account (wallet AccountKey.ID()), currency, amount (signed minor
// units, non-zero)}, at most one per account, summing to zero per currency.
// Replay adds each posting to its account's balance.
//
// bet.placed — component bet, key = bet_id, seq 1; payload BetPlaced:
// bet_id, player, currency, stake (> 0), potential_payout, legs
// [{event_id, market_id, selection_id, price ("2.5")}], tx_id of the stake's
// ledger transaction. Replay records the bet as "open".
//
// bet.settled — component bet, key = bet_id, seq 2, 3, ...; payload
// BetSettled: bet_id, revision (1 for the first settlement, +1 per
// resettlement), status (the wallet's bet status after it, "settled"),
// payout (the bet's total return at this revision, >= 0), tx_id of the
// ledger transaction that moved the difference (omitted when none moved),
// settled_by. Keeping placement and settlement on one key keeps a bet's
// history in order.
//
// market.settled — component settlement, key = market_id; payload
// MarketSettled: market_id, result_version (strictly increasing), outcomes
// (verbatim), settled_by. Replay tracks each market's result version.
//
// rng.draw — component rng, key = the RNG log's name (its checkpoint
// origin), seq = index + 1; payload RNGDraw: draw_id, log, index (0-based
// leaf index in the log), purpose, ref, requester, kind, n, count and
// leaf_hash (hex tlog record hash of the leaf), never the drawn values
// (rng.go; the capture is the stores' AuditedRNGStore). Replay's RNG log
// size is the number of draws and its root the Merkle root of the leaf
// hashes, compared with the store's by RNGLogState.
//
// table.event — component table, key = table_id, seq = table_seq; payload
// TableEvent: table_id, table_seq, round, action (the event kind), detail
// (the event as seats see it). Replay tracks each table's last sequence
// number. TableCapture (table.go) captures them from the table store's
// event log, whose state lives outside the SQL store.
//
// Payloads are decoded strictly: an unknown field in a known type is a
// contract breach and stops Replay. Records of other types are archived and
// counted in State.Other.
//
// # Delivery
//
// The archiver acknowledges a record to its Source only after the fsync of
// the flush holding it; a record re-sent after that is recognised by id (a
// bounded index of recent ids) or by its stream key's high-water mark and
// acknowledged without being written again; a record that arrives before
// its predecessor on the same stream key is sent back (Nak) to come again.
// The relay may therefore delete a captured change from the database when,
// and only when, that acknowledgement reaches it end to end (the Source
// implementation forwards it), never on the stream's own publish
// acknowledgement.
//
// Capture and relay (capture.go, relay.go; docs/audit.md): stores write
// records through an Outbox inside the changing transaction (Prepare gives
// each the next sequence of its stream key); Relay publishes them to the
// Stream and deletes them from the store's CaptureStore only when the
// archiver's acknowledgement floor has passed them while the stream still
// held them, re-sending whatever the stream lost.
//
// A record the archiver can never write (malformed, oversized) is rejected
// to the Source's dead letters; later records on its stream key then wait
// (Nak) for a predecessor that cannot come, visible as a rising
// buzzer_audit_records_out_of_order_total, rather than being archived with a
// hole in their order.
package audit
