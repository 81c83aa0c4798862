-- The RNG's append-only Merkle log (one log per store, i.e. per jurisdiction).
-- rng_tree holds the log size; its single row is written once per append
-- batch by the log's single writer, so it is not a contended hot row.
CREATE TABLE IF NOT EXISTS rng_tree (
    id   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    size BIGINT NOT NULL CHECK (size >= 0)
);
INSERT INTO rng_tree (id, size) VALUES (TRUE, 0) ON CONFLICT (id) DO NOTHING;

-- One row per draw: leaf index, draw id, canonical record encoding.
CREATE TABLE IF NOT EXISTS rng_records (
    idx     BIGINT NOT NULL CHECK (idx >= 0),
    draw_id UUID NOT NULL,
    data    BYTEA NOT NULL,
    CONSTRAINT rng_records_pkey PRIMARY KEY (idx),
    CONSTRAINT rng_records_draw_id_key UNIQUE (draw_id)
);

-- tlog stored hashes, by tlog.StoredHashIndex.
CREATE TABLE IF NOT EXISTS rng_hashes (
    idx  BIGINT NOT NULL CHECK (idx >= 0),
    hash BYTEA NOT NULL CHECK (length(hash) = 32),
    CONSTRAINT rng_hashes_pkey PRIMARY KEY (idx)
);

-- Signed checkpoints (C2SP signed notes), by tree size.
CREATE TABLE IF NOT EXISTS rng_checkpoints (
    size      BIGINT NOT NULL CHECK (size >= 0),
    note      BYTEA NOT NULL,
    issued_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT rng_checkpoints_pkey PRIMARY KEY (size)
);
