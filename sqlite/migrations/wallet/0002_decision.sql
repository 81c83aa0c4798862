-- The compliance decision (geolocation) that authorized a deposit,
-- withdrawal or bet, stored with its ledger transaction and its bet. NULL
-- where there was none. decision_at is Unix microseconds (UTC).
ALTER TABLE wallet_transactions ADD COLUMN decision_jurisdiction TEXT;
ALTER TABLE wallet_transactions ADD COLUMN decision_token_hash TEXT;
ALTER TABLE wallet_transactions ADD COLUMN decision_at INTEGER;
ALTER TABLE wallet_transactions ADD COLUMN decision_source TEXT;
ALTER TABLE wallet_bets ADD COLUMN decision_jurisdiction TEXT;
ALTER TABLE wallet_bets ADD COLUMN decision_token_hash TEXT;
ALTER TABLE wallet_bets ADD COLUMN decision_at INTEGER;
ALTER TABLE wallet_bets ADD COLUMN decision_source TEXT;
