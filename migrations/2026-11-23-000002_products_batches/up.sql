CREATE TABLE products (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    sku            text NOT NULL CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$'),
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    unit           text NOT NULL CHECK (char_length(unit) BETWEEN 1 AND 32),
    custom_fields  jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(custom_fields) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT products_org_sku_key UNIQUE (org_id, sku),
    -- Target of the composite foreign key below: a batch can only name a
    -- product of its own organization.
    CONSTRAINT products_org_id_id_key UNIQUE (org_id, id)
);
-- SKU-prefix filters (`sku LIKE 'AB%'`) whatever the database collation.
CREATE INDEX products_org_sku_prefix_idx ON products (org_id, sku text_pattern_ops);
-- Default list order, newest first, for keyset pagination.
CREATE INDEX products_org_created_idx ON products (org_id, created_at DESC, id DESC);

CREATE TABLE batches (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id       uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    product_id   uuid NOT NULL,
    code         text NOT NULL CHECK (code ~ '^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$'),
    quantity     numeric(20, 6) NOT NULL CHECK (quantity >= 0),
    produced_at  timestamptz NOT NULL,
    status       text NOT NULL DEFAULT 'planned'
                 CHECK (status IN ('planned', 'in_progress', 'completed', 'cancelled')),
    notes        text NOT NULL DEFAULT '' CHECK (char_length(notes) <= 10000),
    metadata     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT batches_org_code_key UNIQUE (org_id, code),
    CONSTRAINT batches_org_id_id_key UNIQUE (org_id, id),
    CONSTRAINT batches_product_fkey FOREIGN KEY (org_id, product_id)
        REFERENCES products (org_id, id) ON DELETE RESTRICT
);
-- List order and the filters of GET /v1/batches, each usable with keyset
-- pagination on (produced_at, id).
CREATE INDEX batches_org_produced_idx ON batches (org_id, produced_at DESC, id DESC);
CREATE INDEX batches_org_product_produced_idx ON batches (org_id, product_id, produced_at DESC, id DESC);
CREATE INDEX batches_org_status_produced_idx ON batches (org_id, status, produced_at DESC, id DESC);
