-- The migrator never deletes version 1's row: this drops the whole table instead.
DROP TABLE /* schema */river_migration;
