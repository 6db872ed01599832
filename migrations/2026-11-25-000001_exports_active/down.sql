DROP INDEX exports_active_idx;
