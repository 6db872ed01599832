-- Exports queued or running, by organization: counted on every export
-- request against the per-organization limit (EXPORTS_MAX_ACTIVE_PER_ORG).
-- Finished exports, the bulk of the table, stay out of it.
CREATE INDEX exports_active_idx ON exports (org_id) WHERE status IN ('queued', 'running');
