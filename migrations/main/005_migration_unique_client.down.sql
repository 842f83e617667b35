-- Back to the single-line layout of version 1. Versions of other lines have no place in it, so
-- this refuses to run while any are recorded (they must be migrated down first).
DO $$
BEGIN
    IF to_regclass('/* schema */river_migration') IS NULL THEN
        RETURN;
    END IF;

    IF EXISTS (SELECT 1 FROM /* schema */river_migration WHERE line <> 'main') THEN
        RAISE EXCEPTION 'river_migration records versions of migration lines other than "main"'
            USING HINT = 'Migrate those lines down first; version 4 of "main" has no line column.';
    END IF;

    ALTER TABLE /* schema */river_migration RENAME TO river_migration_old;

    CREATE TABLE /* schema */river_migration (
        id bigserial PRIMARY KEY,
        created_at timestamptz NOT NULL DEFAULT now(),
        version bigint NOT NULL,
        CONSTRAINT version_gte_1 CHECK (version >= 1)
    );

    CREATE UNIQUE INDEX river_migration_version_idx ON /* schema */river_migration
        USING btree (version);

    INSERT INTO /* schema */river_migration (created_at, version)
    SELECT created_at, version
    FROM /* schema */river_migration_old
    ORDER BY version;

    DROP TABLE /* schema */river_migration_old;
END;
$$;

DROP INDEX IF EXISTS /* schema */river_job_kind_unique_key_idx;
ALTER TABLE /* schema */river_job DROP COLUMN IF EXISTS unique_key;

DROP TABLE /* schema */river_client_queue;
DROP TABLE /* schema */river_client;
