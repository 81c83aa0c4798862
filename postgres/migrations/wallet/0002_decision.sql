-- The compliance decision (geolocation) that authorized a deposit,
-- withdrawal or bet, stored with its ledger transaction and its bet. NULL
-- where there was none (settlements, table money, rows from before).
-- Plain ADD COLUMN IF NOT EXISTS: the same DDL runs on CockroachDB.
ALTER TABLE wallet_transactions
    ADD COLUMN IF NOT EXISTS decision_jurisdiction TEXT,
    ADD COLUMN IF NOT EXISTS decision_token_hash   TEXT,
    ADD COLUMN IF NOT EXISTS decision_at           TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS decision_source       TEXT;
ALTER TABLE wallet_bets
    ADD COLUMN IF NOT EXISTS decision_jurisdiction TEXT,
    ADD COLUMN IF NOT EXISTS decision_token_hash   TEXT,
    ADD COLUMN IF NOT EXISTS decision_at           TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS decision_source       TEXT;
