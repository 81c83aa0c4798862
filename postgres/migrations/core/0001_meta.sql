-- Node-wide facts every part may read: which jurisdiction this store serves,
-- so a store can never be attached to the wrong jurisdiction's edge by mistake.
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
