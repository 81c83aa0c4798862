-- SQLite: times are INTEGER Unix microseconds (UTC).
-- The audit capture: a transactional outbox written in the same transaction
-- as every captured change, and the per-stream-key sequence counters that
-- order it. A row leaves audit_outbox only when the archiver's
-- acknowledgement floor on the audit stream has passed it (docs/audit.md).

-- The last sequence captured per stream key (jurisdiction/component/key).
CREATE TABLE IF NOT EXISTS audit_sequences (
    stream_key TEXT NOT NULL,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    CONSTRAINT audit_sequences_pkey PRIMARY KEY (stream_key)
);

-- Captured records. stream_seq is NULL while pending and the audit stream's
-- sequence once the stream acknowledged the record (sent); resends counts
-- how often the stream lost it and it went back to pending.
CREATE TABLE IF NOT EXISTS audit_outbox (
    stream_key   TEXT NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    id           TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    record       BLOB NOT NULL,
    captured_at  INTEGER NOT NULL,
    stream_seq   INTEGER,
    resends      INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT audit_outbox_pkey PRIMARY KEY (stream_key, seq)
);
CREATE INDEX IF NOT EXISTS audit_outbox_pending ON audit_outbox (captured_at, stream_key, seq) WHERE stream_seq IS NULL;
CREATE INDEX IF NOT EXISTS audit_outbox_sent ON audit_outbox (stream_seq) WHERE stream_seq IS NOT NULL;
