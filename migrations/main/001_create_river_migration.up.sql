-- The bookkeeping table in its first layout: one row per applied version of line "main".
-- Version 5 rebuilds it with a "line" column so that other migration lines can share it.
CREATE TABLE /* schema */river_migration (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    version bigint NOT NULL,
    CONSTRAINT version_gte_1 CHECK (version >= 1)
);

CREATE UNIQUE INDEX river_migration_version_idx ON /* schema */river_migration USING btree (version);
