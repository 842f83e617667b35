-- river_migration gains a "line" column so that several migration lines (River Pro adds its
-- own) can record their versions in one table. The table is rebuilt instead of altered: its
-- primary key changes from a surrogate id to (line, version). Every existing row belongs to
-- line "main". Skipped when the table does not exist.
DO $$
BEGIN
    IF to_regclass('/* schema */river_migration') IS NULL THEN
        RETURN;
    END IF;

    ALTER TABLE /* schema */river_migration RENAME TO river_migration_old;

    CREATE TABLE /* schema */river_migration (
        line text NOT NULL,
        version bigint NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT line_length CHECK (char_length(line) > 0 AND char_length(line) < 128),
        CONSTRAINT version_gte_1 CHECK (version >= 1),
        -- The renamed table still owns the index name river_migration_pkey at this point, which
        -- is why the key of the new table has always been called river_migration_pkey1.
        CONSTRAINT river_migration_pkey1 PRIMARY KEY (line, version)
    );

    INSERT INTO /* schema */river_migration (line, version, created_at)
    SELECT 'main', version, created_at
    FROM /* schema */river_migration_old;

    DROP TABLE /* schema */river_migration_old;
END;
$$;

-- Tolerant: some installations added the column by hand ahead of this version.
ALTER TABLE /* schema */river_job ADD COLUMN IF NOT EXISTS unique_key bytea;

-- Unique jobs at this version: one live row per (kind, unique_key). Version 6 replaces it.
CREATE UNIQUE INDEX IF NOT EXISTS river_job_kind_unique_key_idx ON /* schema */river_job
    USING btree (kind, unique_key) WHERE unique_key IS NOT NULL;

-- Client registry tables. No released client ever wrote to them; version 7 drops them.
CREATE UNLOGGED TABLE /* schema */river_client (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);

CREATE UNLOGGED TABLE /* schema */river_client_queue (
    river_client_id text NOT NULL REFERENCES /* schema */river_client (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (river_client_id, name)
);
