-- An idempotency key is written twice in one group commit: claimed (a
-- small row) and then completed with the stored answer. With full pages
-- the completed row never fits beside the claimed one, so the update is
-- not HOT: it writes a new entry into both of the table's indexes. Room
-- on each page lets the completion stay on its page and leave the indexes
-- alone. Takes effect on pages written from now on.
ALTER TABLE wallet_idempotency_keys SET (fillfactor = 40);
