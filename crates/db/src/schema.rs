// The Diesel view of the tables in `migrations/`. A test
// (`tests/schema.rs`) checks every table and column here against a migrated
// database, so this file cannot drift from the SQL.

diesel::table! {
    organizations (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    users (id) {
        id -> Uuid,
        org_id -> Uuid,
        email -> Text,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Uuid,
        user_id -> Uuid,
        name -> Text,
        token_sha256 -> Bytea,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        operator -> Bool,
    }
}

diesel::table! {
    products (id) {
        id -> Uuid,
        org_id -> Uuid,
        sku -> Text,
        name -> Text,
        unit -> Text,
        custom_fields -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    batches (id) {
        id -> Uuid,
        org_id -> Uuid,
        product_id -> Uuid,
        code -> Text,
        quantity -> Numeric,
        produced_at -> Timestamptz,
        status -> Text,
        notes -> Text,
        metadata -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    attachments (id) {
        id -> Uuid,
        org_id -> Uuid,
        batch_id -> Uuid,
        storage_key -> Text,
        filename -> Text,
        content_type -> Text,
        size_bytes -> Int8,
        sha256 -> Nullable<Bytea>,
        state -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    exports (id) {
        id -> Uuid,
        org_id -> Uuid,
        requested_by -> Nullable<Uuid>,
        kind -> Text,
        format -> Text,
        filters -> Jsonb,
        status -> Text,
        attempts -> Int4,
        storage_key -> Nullable<Text>,
        row_count -> Nullable<Int8>,
        size_bytes -> Nullable<Int8>,
        sha256 -> Nullable<Bytea>,
        error -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        created_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    schedules (id) {
        id -> Uuid,
        name -> Text,
        cron -> Text,
        timezone -> Text,
        routing_key -> Text,
        payload -> Jsonb,
        enabled -> Bool,
        misfire_policy -> Text,
        next_run_at -> Timestamptz,
        last_run_at -> Nullable<Timestamptz>,
        last_status -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        org_id -> Nullable<Uuid>,
        created_by -> Nullable<Uuid>,
        paused -> Bool,
        pause_note -> Nullable<Text>,
        catchup_window_secs -> Int4,
        overlap_policy -> Text,
        jitter_secs -> Int4,
        run_timeout_secs -> Int4,
    }
}

diesel::table! {
    schedule_runs (id) {
        id -> Uuid,
        schedule_id -> Uuid,
        slot -> Timestamptz,
        trigger -> Text,
        fired_at -> Timestamptz,
        job_id -> Nullable<Uuid>,
        export_id -> Nullable<Uuid>,
        outcome -> Text,
        finished_at -> Nullable<Timestamptz>,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    backup_runs (id) {
        id -> Uuid,
        trigger -> Text,
        status -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        db_key -> Nullable<Text>,
        db_bytes -> Nullable<Int8>,
        db_sha256 -> Nullable<Bytea>,
        table_counts -> Nullable<Jsonb>,
        media_manifest_key -> Nullable<Text>,
        media_objects -> Nullable<Int8>,
        media_bytes -> Nullable<Int8>,
        media_new_bytes -> Nullable<Int8>,
        verified_at -> Nullable<Timestamptz>,
        verify_method -> Nullable<Text>,
        retention_class -> Nullable<Text>,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    outbox (id) {
        id -> Uuid,
        routing_key -> Text,
        message -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    storage_migrations (id) {
        id -> Uuid,
        source -> Text,
        target -> Text,
        status -> Text,
        started_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    storage_migration_objects (migration_id, key) {
        migration_id -> Uuid,
        key -> Text,
        size_bytes -> Nullable<Int8>,
        sha256 -> Nullable<Bytea>,
        status -> Text,
        recorded_at -> Timestamptz,
    }
}

diesel::joinable!(users -> organizations (org_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(products -> organizations (org_id));
diesel::joinable!(batches -> organizations (org_id));
diesel::joinable!(attachments -> organizations (org_id));
diesel::joinable!(batches -> products (product_id));
diesel::joinable!(attachments -> batches (batch_id));
diesel::joinable!(attachments -> users (created_by));
diesel::joinable!(exports -> organizations (org_id));
diesel::joinable!(exports -> users (requested_by));
diesel::joinable!(schedules -> organizations (org_id));
diesel::joinable!(schedule_runs -> schedules (schedule_id));
diesel::joinable!(schedule_runs -> exports (export_id));
diesel::joinable!(storage_migration_objects -> storage_migrations (migration_id));

diesel::allow_tables_to_appear_in_same_query!(
    organizations,
    users,
    api_tokens,
    products,
    batches,
    attachments,
    exports,
    schedules,
    schedule_runs,
    backup_runs,
    outbox,
    storage_migrations,
    storage_migration_objects,
);
