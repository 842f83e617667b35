-- Queries of the migrator on river_migration (PROTOCOL.md 2.7), used by river/migrate.py.
-- Two layouts exist: versions 1 to 4 of line "main" keep (id, created_at, version); version 5
-- rebuilds the table as (line, version, created_at). "unlined" queries are for the first layout.

-- name: state
-- One round trip to learn where the migrator stands: the schema that unqualified names resolve
-- to, whether the configured schema exists, whether river_migration exists, and its layout.
-- Columns are named so that a caller's dict row factory keeps all four.
SELECT
    current_schema() AS current_schema,
    coalesce(%(schema)s::text, current_schema()::text) IN (
        SELECT nspname::text FROM pg_catalog.pg_namespace
    ) AS schema_exists,
    to_regclass(%(table)s::text) IS NOT NULL AS table_exists,
    EXISTS (
        SELECT 1
        FROM pg_catalog.pg_attribute
        WHERE attrelid = to_regclass(%(table)s::text)
            AND attname = 'line'
            AND attnum > 0
            AND NOT attisdropped
    ) AS lined

-- name: rows
-- Every line's rows: the migrator needs its own line's versions and whether other lines exist.
SELECT line, version, created_at
FROM /* schema */river_migration
ORDER BY line, version

-- name: rows_unlined
SELECT 'main' AS line, version, created_at
FROM /* schema */river_migration
ORDER BY version

-- name: lock
-- Serialises migrators of this library on one schema until the end of the version's
-- transaction; the key is derived from the schema name (river/migrate.py).
SELECT pg_advisory_xact_lock(%(key)s::bigint)

-- name: record
INSERT INTO /* schema */river_migration (line, version)
VALUES (%(line)s, %(version)s)

-- name: record_unlined
INSERT INTO /* schema */river_migration (version)
VALUES (%(version)s)

-- name: unrecord
DELETE FROM /* schema */river_migration
WHERE line = %(line)s AND version = %(version)s

-- name: unrecord_unlined
DELETE FROM /* schema */river_migration
WHERE version = %(version)s
