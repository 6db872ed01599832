-- Progress of `stockflow-worker migrate-storage`, so a copy of millions of
-- objects that is interrupted resumes where it stopped instead of starting
-- over. A run is one attempt to copy every object from one store to another;
-- stores are named by descriptors such as `local:/srv/media` or
-- `s3:media@http://minio:9000`.
CREATE TABLE storage_migrations (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    source       text NOT NULL CHECK (char_length(source) BETWEEN 1 AND 2048),
    target       text NOT NULL CHECK (char_length(target) BETWEEN 1 AND 2048),
    status       text NOT NULL DEFAULT 'in_progress' CHECK (status IN ('in_progress', 'finished')),
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    CONSTRAINT storage_migrations_two_stores CHECK (source <> target),
    CONSTRAINT storage_migrations_finished_has_time CHECK ((status = 'finished') = (finished_at IS NOT NULL))
);
-- One unfinished run per pair: a second start resumes it instead of racing it.
CREATE UNIQUE INDEX storage_migrations_unfinished_idx ON storage_migrations (source, target)
    WHERE status = 'in_progress';

-- One row per object a run dealt with: copied (and verified) or missing at
-- the source. Written as each object completes, never before.
CREATE TABLE storage_migration_objects (
    migration_id  uuid NOT NULL REFERENCES storage_migrations (id) ON DELETE CASCADE,
    key           text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 1024),
    size_bytes    bigint CHECK (size_bytes >= 0),
    sha256        bytea CHECK (length(sha256) = 32),
    status        text NOT NULL CHECK (status IN ('copied', 'missing')),
    recorded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (migration_id, key),
    -- What was verified is kept, so a copy can be checked again later.
    CONSTRAINT storage_migration_objects_copied_is_complete
        CHECK (status <> 'copied' OR (size_bytes IS NOT NULL AND sha256 IS NOT NULL))
);
