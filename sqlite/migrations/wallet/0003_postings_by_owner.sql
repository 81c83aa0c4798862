-- Postings in one b-tree, clustered by owner and time (SQLite only).
--
-- 0001 kept postings as a rowid table with two indexes: the primary key
-- (account_id, txn_id) and the history index (owner, created_at, txn_id).
-- Transaction ids are random, so every posting dirtied a random leaf of
-- each index: about three of the six WAL frames a table stake wrote. Here
-- the row lives in its history order: a player's posting lands on that
-- player's page and a house posting (owner '~house') on the last page.
-- (owner, created_at, txn_id, account_id) is unique exactly where
-- (account_id, txn_id) was: the owner is part of the account id and
-- created_at is the transaction's. PostgreSQL and CockroachDB keep 0001's
-- shape, where the primary key spreads writes across ranges.
CREATE TABLE wallet_postings_by_owner (
    owner      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    txn_id     TEXT NOT NULL,
    account_id TEXT NOT NULL,
    amount     INTEGER NOT NULL CHECK (amount <> 0),
    CONSTRAINT wallet_postings_pkey PRIMARY KEY (owner, created_at, txn_id, account_id)
) WITHOUT ROWID;
INSERT INTO wallet_postings_by_owner (owner, created_at, txn_id, account_id, amount)
    SELECT owner, created_at, txn_id, account_id, amount FROM wallet_postings;
DROP TABLE wallet_postings;
ALTER TABLE wallet_postings_by_owner RENAME TO wallet_postings;
