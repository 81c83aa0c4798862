-- SQLite: times are INTEGER Unix microseconds (UTC); documents are JSON text.
-- The wallet's ledger, bets and idempotency keys. Player rows lead with
-- player_id (or an account ID that starts with the owner); house accounts
-- are bucketed rows; IDs are random UUIDs. No sequence anywhere.

-- Idempotency keys, scoped per player; the record commits with the effect.
CREATE TABLE IF NOT EXISTS wallet_idempotency_keys (
    player_id    TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('in_flight', 'completed')),
    owner        TEXT NOT NULL,
    locked_until INTEGER NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    body         BLOB,
    effect_id    TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    CONSTRAINT wallet_idempotency_keys_pkey PRIMARY KEY (player_id, key)
);
CREATE INDEX IF NOT EXISTS wallet_idempotency_keys_expiry ON wallet_idempotency_keys (expires_at);

-- Accounts: id is owner|jurisdiction|currency|kind|bucket.
CREATE TABLE IF NOT EXISTS wallet_accounts (
    id           TEXT NOT NULL,
    owner        TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    currency     TEXT NOT NULL,
    kind         TEXT NOT NULL,
    bucket       INTEGER NOT NULL,
    balance      INTEGER NOT NULL,
    CONSTRAINT wallet_accounts_pkey PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS wallet_accounts_owner ON wallet_accounts (owner);

CREATE TABLE IF NOT EXISTS wallet_transactions (
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL,
    player_id  TEXT NOT NULL,
    reference  TEXT NOT NULL,
    effect_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT wallet_transactions_pkey PRIMARY KEY (id)
);

-- Postings lead with their account; the owner index serves a player's history.
CREATE TABLE IF NOT EXISTS wallet_postings (
    account_id TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    owner      TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount <> 0),
    created_at INTEGER NOT NULL,
    CONSTRAINT wallet_postings_pkey PRIMARY KEY (account_id, txn_id)
);
CREATE INDEX IF NOT EXISTS wallet_postings_history ON wallet_postings (owner, created_at, txn_id);

-- Bets: the document is the domain's JSON encoding of the bet.
CREATE TABLE IF NOT EXISTS wallet_bets (
    player_id TEXT NOT NULL,
    id        TEXT NOT NULL,
    status    TEXT NOT NULL,
    placed_at INTEGER NOT NULL,
    doc       TEXT NOT NULL,
    CONSTRAINT wallet_bets_pkey PRIMARY KEY (player_id, id)
);
CREATE INDEX IF NOT EXISTS wallet_bets_by_time ON wallet_bets (player_id, placed_at, id);

-- One row per leg, so settlement finds a market's bets not yet at a version.
CREATE TABLE IF NOT EXISTS wallet_bet_legs (
    market_id      TEXT NOT NULL,
    bet_id         TEXT NOT NULL,
    player_id      TEXT NOT NULL,
    result_version INTEGER NOT NULL,
    CONSTRAINT wallet_bet_legs_pkey PRIMARY KEY (market_id, bet_id)
);
CREATE INDEX IF NOT EXISTS wallet_bet_legs_pending ON wallet_bet_legs (market_id, result_version, bet_id);

CREATE TABLE IF NOT EXISTS wallet_market_results (
    market_id      TEXT NOT NULL,
    result_version INTEGER NOT NULL,
    fingerprint    TEXT NOT NULL,
    outcomes       TEXT NOT NULL,
    settled_by     TEXT NOT NULL,
    done           INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    CONSTRAINT wallet_market_results_pkey PRIMARY KEY (market_id)
);
CREATE INDEX IF NOT EXISTS wallet_market_results_unfinished ON wallet_market_results (done, market_id);
