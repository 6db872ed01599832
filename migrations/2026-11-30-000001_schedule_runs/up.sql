-- Schedules belong to an organization (its scheduled exports) or, with a
-- NULL org_id, to the installation (backups and maintenance, written from
-- the environment at start). Names are unique per owner.
ALTER TABLE schedules DROP CONSTRAINT schedules_name_key;
-- Aliases such as '@daily' are shorter than the 9 characters of '* * * * *'.
ALTER TABLE schedules DROP CONSTRAINT schedules_cron_check;
ALTER TABLE schedules ADD CONSTRAINT schedules_cron_check CHECK (char_length(cron) BETWEEN 1 AND 200);
-- 'succeeded' and 'lost' come from runs that report, or never do.
ALTER TABLE schedules DROP CONSTRAINT schedules_last_status_check;
ALTER TABLE schedules ADD CONSTRAINT schedules_last_status_check
    CHECK (last_status IN ('enqueued', 'skipped', 'succeeded', 'failed', 'lost'));
DROP INDEX schedules_due_idx;

ALTER TABLE schedules
    ADD COLUMN org_id               uuid REFERENCES organizations (id) ON DELETE CASCADE,
    ADD COLUMN created_by           uuid REFERENCES users (id) ON DELETE SET NULL,
    ADD COLUMN paused               boolean NOT NULL DEFAULT false,
    ADD COLUMN pause_note           text CHECK (char_length(pause_note) <= 500),
    ADD COLUMN catchup_window_secs  integer NOT NULL DEFAULT 3600 CHECK (catchup_window_secs BETWEEN 1 AND 604800),
    ADD COLUMN overlap_policy       text NOT NULL DEFAULT 'skip' CHECK (overlap_policy IN ('skip', 'allow')),
    ADD COLUMN jitter_secs          integer NOT NULL DEFAULT 0 CHECK (jitter_secs BETWEEN 0 AND 3600),
    -- A run whose job has not reported after this long is 'lost' and no
    -- longer holds back the next slot of an overlap 'skip' schedule.
    ADD COLUMN run_timeout_secs     integer NOT NULL DEFAULT 3600 CHECK (run_timeout_secs BETWEEN 60 AND 604800),
    ADD CONSTRAINT schedules_note_only_when_paused CHECK (pause_note IS NULL OR paused);
ALTER TABLE schedules ADD CONSTRAINT schedules_owner_name UNIQUE NULLS NOT DISTINCT (org_id, name);

-- The scheduler's claim query: schedules that may fire, by due time.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled AND NOT paused;
-- An organization's list, newest first, for keyset pages.
CREATE INDEX schedules_org_list_idx ON schedules (org_id, created_at DESC, id DESC) WHERE org_id IS NOT NULL;

-- Every slot a schedule dealt with, and every manual run. The unique
-- (schedule_id, slot) makes firing a slot twice impossible, whatever a
-- scheduler replica does.
CREATE TABLE schedule_runs (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    slot         timestamptz NOT NULL,
    trigger      text NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    fired_at     timestamptz NOT NULL DEFAULT now(),
    -- The id of the message sent (the outbox row and the envelope); none
    -- for a skipped slot.
    job_id       uuid,
    -- The export a run of an organization's export schedule made.
    export_id    uuid REFERENCES exports (id) ON DELETE SET NULL,
    outcome      text NOT NULL DEFAULT 'enqueued'
                 CHECK (outcome IN ('enqueued', 'skipped', 'succeeded', 'failed', 'lost')),
    finished_at  timestamptz,
    detail       text CHECK (char_length(detail) <= 1000),
    CONSTRAINT schedule_runs_slot UNIQUE (schedule_id, slot),
    CONSTRAINT schedule_runs_job_when_sent CHECK ((outcome = 'skipped') = (job_id IS NULL)),
    CONSTRAINT schedule_runs_finished_when_done CHECK ((outcome = 'enqueued') = (finished_at IS NULL))
);
-- Recent runs of a schedule, newest first.
CREATE INDEX schedule_runs_recent_idx ON schedule_runs (schedule_id, fired_at DESC);
-- Runs still waiting for their job: the overlap check, and consumers that report.
CREATE INDEX schedule_runs_open_idx ON schedule_runs (schedule_id) WHERE finished_at IS NULL;
CREATE UNIQUE INDEX schedule_runs_job_idx ON schedule_runs (job_id);
