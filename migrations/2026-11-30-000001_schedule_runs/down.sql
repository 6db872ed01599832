DROP TABLE schedule_runs;

DROP INDEX schedules_org_list_idx;
DROP INDEX schedules_due_idx;
-- What the previous schema cannot hold goes: organization schedules (it had
-- none), and system schedules whose pattern is an alias shorter than its
-- CHECK allowed (the scheduler writes them again at its next start).
DELETE FROM schedules WHERE org_id IS NOT NULL OR char_length(cron) < 9;
UPDATE schedules SET last_status = CASE last_status WHEN 'succeeded' THEN 'enqueued' ELSE 'failed' END
    WHERE last_status IN ('succeeded', 'lost');
-- A paused schedule was a disabled one.
UPDATE schedules SET enabled = false WHERE paused;
ALTER TABLE schedules DROP CONSTRAINT schedules_owner_name;
ALTER TABLE schedules
    DROP COLUMN run_timeout_secs,
    DROP COLUMN jitter_secs,
    DROP COLUMN overlap_policy,
    DROP COLUMN catchup_window_secs,
    DROP COLUMN pause_note,
    DROP COLUMN paused,
    DROP COLUMN created_by,
    DROP COLUMN org_id;
ALTER TABLE schedules DROP CONSTRAINT schedules_last_status_check;
ALTER TABLE schedules ADD CONSTRAINT schedules_last_status_check CHECK (last_status IN ('enqueued', 'skipped', 'failed'));
ALTER TABLE schedules DROP CONSTRAINT schedules_cron_check;
ALTER TABLE schedules ADD CONSTRAINT schedules_cron_check CHECK (char_length(cron) BETWEEN 9 AND 200);
ALTER TABLE schedules ADD CONSTRAINT schedules_name_key UNIQUE (name);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;
