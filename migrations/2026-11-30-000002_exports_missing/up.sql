-- An export whose file the storage reconciliation found gone: it answers
-- `content_missing` instead of pointing at nothing.
ALTER TABLE exports DROP CONSTRAINT exports_status_check;
ALTER TABLE exports ADD CONSTRAINT exports_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'expired', 'missing'));
