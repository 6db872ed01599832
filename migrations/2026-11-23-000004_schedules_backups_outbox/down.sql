DROP TABLE outbox;
DROP TABLE backup_runs;
DROP TABLE schedules;
