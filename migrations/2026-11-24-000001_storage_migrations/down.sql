DROP TABLE storage_migration_objects;
DROP TABLE storage_migrations;
