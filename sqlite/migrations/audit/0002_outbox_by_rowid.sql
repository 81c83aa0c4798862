-- The outbox without its (stream_key, seq) primary key (SQLite only).
--
-- That key was a second b-tree ordered by stream key: one per player or
-- table, so every capture inserted into a random leaf page, and every
-- release deleted from one. The relay now finds a record by its rowid
-- (audit.Captured.Ref), and the audit_sequences counter, written in the
-- same transaction, is what gives each stream key its sequence once.
-- Rows, the pending index and the sent index are all in capture order, so
-- captures append and releases trim. PostgreSQL and CockroachDB keep the
-- primary key.
CREATE TABLE audit_outbox_by_rowid (
    stream_key   TEXT NOT NULL,
    seq          INTEGER NOT NULL CHECK (seq > 0),
    id           TEXT NOT NULL,
    jurisdiction TEXT NOT NULL,
    record       BLOB NOT NULL,
    captured_at  INTEGER NOT NULL,
    stream_seq   INTEGER,
    resends      INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_outbox_by_rowid (rowid, stream_key, seq, id, jurisdiction, record, captured_at, stream_seq, resends)
    SELECT rowid, stream_key, seq, id, jurisdiction, record, captured_at, stream_seq, resends FROM audit_outbox;
DROP TABLE audit_outbox;
ALTER TABLE audit_outbox_by_rowid RENAME TO audit_outbox;
CREATE INDEX audit_outbox_pending ON audit_outbox (captured_at, stream_key, seq) WHERE stream_seq IS NULL;
CREATE INDEX audit_outbox_sent ON audit_outbox (stream_seq) WHERE stream_seq IS NOT NULL;
