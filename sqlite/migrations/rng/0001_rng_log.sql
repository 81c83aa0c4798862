-- The RNG's append-only Merkle log (one log per store, i.e. per jurisdiction).
-- rng_tree's single row holds the log size, written once per append batch.
CREATE TABLE IF NOT EXISTS rng_tree (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL CHECK (size >= 0)
);
INSERT OR IGNORE INTO rng_tree (id, size) VALUES (1, 0);

-- One row per draw: leaf index, draw id (canonical UUID text), record encoding.
CREATE TABLE IF NOT EXISTS rng_records (
    idx     INTEGER PRIMARY KEY CHECK (idx >= 0),
    draw_id TEXT NOT NULL UNIQUE,
    data    BLOB NOT NULL
);

-- tlog stored hashes, by tlog.StoredHashIndex.
CREATE TABLE IF NOT EXISTS rng_hashes (
    idx  INTEGER PRIMARY KEY CHECK (idx >= 0),
    hash BLOB NOT NULL CHECK (length(hash) = 32)
);

-- Signed checkpoints (C2SP signed notes), by tree size; issued_at in Unix microseconds.
CREATE TABLE IF NOT EXISTS rng_checkpoints (
    size      INTEGER PRIMARY KEY CHECK (size >= 0),
    note      BLOB NOT NULL,
    issued_at INTEGER NOT NULL
);
