-- The previous schema has no `missing`: a file that is gone reads as one
-- that expired, the closest state it can hold.
UPDATE exports SET status = 'expired' WHERE status = 'missing';
ALTER TABLE exports DROP CONSTRAINT exports_status_check;
ALTER TABLE exports ADD CONSTRAINT exports_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired'));
