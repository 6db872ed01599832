-- Schedules are system-wide (backups, maintenance), not tenant-owned.
CREATE TABLE schedules (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 100),
    cron            text NOT NULL CHECK (char_length(cron) BETWEEN 9 AND 200),
    timezone        text NOT NULL DEFAULT 'UTC' CHECK (char_length(timezone) BETWEEN 1 AND 64),
    routing_key     text NOT NULL CHECK (routing_key ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    payload         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object'),
    enabled         boolean NOT NULL DEFAULT true,
    misfire_policy  text NOT NULL DEFAULT 'coalesce' CHECK (misfire_policy IN ('coalesce', 'skip', 'fire_all')),
    next_run_at     timestamptz NOT NULL,
    last_run_at     timestamptz,
    last_status     text CHECK (last_status IN ('enqueued', 'skipped', 'failed')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The scheduler's claim query: enabled schedules whose time has come.
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;

CREATE TABLE backup_runs (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    trigger             text NOT NULL CHECK (trigger IN ('scheduled', 'manual')),
    status              text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz,
    db_key              text,
    db_bytes            bigint CHECK (db_bytes >= 0),
    db_sha256           bytea CHECK (length(db_sha256) = 32),
    table_counts        jsonb CHECK (jsonb_typeof(table_counts) = 'object'),
    media_manifest_key  text,
    media_objects       bigint CHECK (media_objects >= 0),
    media_bytes         bigint CHECK (media_bytes >= 0),
    media_new_bytes     bigint CHECK (media_new_bytes >= 0),
    verified_at         timestamptz,
    verify_method       text CHECK (verify_method IN ('restore', 'checksum')),
    retention_class     text CHECK (retention_class IN ('daily', 'weekly', 'monthly')),
    error               text,
    CONSTRAINT backup_runs_failed_has_error CHECK (status <> 'failed' OR error IS NOT NULL),
    CONSTRAINT backup_runs_verified_is_succeeded CHECK (verified_at IS NULL OR status = 'succeeded')
);
CREATE INDEX backup_runs_started_idx ON backup_runs (started_at DESC);

-- Jobs written in the same transaction as the row they belong to; a relay
-- publishes them, so a job is never lost while the broker is down.
CREATE TABLE outbox (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    routing_key   text NOT NULL CHECK (routing_key ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
    message       jsonb NOT NULL CHECK (jsonb_typeof(message) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    text
);
CREATE INDEX outbox_unpublished_idx ON outbox (created_at) WHERE published_at IS NULL;
