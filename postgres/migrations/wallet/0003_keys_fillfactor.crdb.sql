-- CockroachDB variant: its storage has no pages to leave room on (an
-- update writes a new MVCC version wherever it goes), so there is no
-- fillfactor to set; this migration only keeps the version numbers in step.
SELECT 1;
