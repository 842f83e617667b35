-- args becomes mandatory. Old rows without args get an empty object; no default stays behind,
-- so an insert that forgets args fails instead of silently running with none.
UPDATE /* schema */river_job SET args = '{}' WHERE args IS NULL;
ALTER TABLE /* schema */river_job ALTER COLUMN args SET NOT NULL;
ALTER TABLE /* schema */river_job ALTER COLUMN args DROP DEFAULT;

-- metadata: default first, then backfill, then NOT NULL (re-asserted for databases whose column
-- was loosened by hand or by an older down migration).
ALTER TABLE /* schema */river_job ALTER COLUMN metadata SET DEFAULT '{}';
UPDATE /* schema */river_job SET metadata = '{}' WHERE metadata IS NULL;
ALTER TABLE /* schema */river_job ALTER COLUMN metadata SET NOT NULL;

-- Tolerant: a database migrated down from here keeps the value (enum values cannot be removed),
-- and some installations added it by hand. Position matters to ordering by state.
ALTER TYPE /* schema */river_job_state ADD VALUE IF NOT EXISTS 'pending' AFTER 'discarded';

-- The finalized rule becomes two-sided: finalized_at is set exactly for finalized states.
ALTER TABLE /* schema */river_job DROP CONSTRAINT finalized_or_finalized_at_null;
ALTER TABLE /* schema */river_job ADD CONSTRAINT finalized_or_finalized_at_null CHECK (
    (finalized_at IS NULL AND state NOT IN ('cancelled', 'completed', 'discarded'))
    OR (finalized_at IS NOT NULL AND state IN ('cancelled', 'completed', 'discarded'))
);

-- Insert notifications move out of the database: clients send them in their insert statements.
DROP TRIGGER IF EXISTS river_notify ON /* schema */river_job;
DROP FUNCTION IF EXISTS /* schema */river_job_notify();

-- One row per queue: pause state, metadata, and a liveness stamp kept fresh by producers.
CREATE TABLE /* schema */river_queue (
    name text PRIMARY KEY NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    paused_at timestamptz,
    updated_at timestamptz NOT NULL
);

-- A single leader row named 'default'. A row under any other name is an expired lease of an old
-- client at worst: removing it only means the next election starts from an empty table.
ALTER TABLE /* schema */river_leader ALTER COLUMN name SET DEFAULT 'default';
DELETE FROM /* schema */river_leader WHERE name <> 'default';
-- The constraint keeps its historic name although it no longer checks a length.
ALTER TABLE /* schema */river_leader DROP CONSTRAINT name_length;
ALTER TABLE /* schema */river_leader ADD CONSTRAINT name_length CHECK (name = 'default');
