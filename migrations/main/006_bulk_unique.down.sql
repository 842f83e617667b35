DROP INDEX IF EXISTS /* schema */river_job_unique_idx;
ALTER TABLE /* schema */river_job DROP COLUMN IF EXISTS unique_states;
DROP FUNCTION IF EXISTS /* schema */river_job_state_in_bitmask(bit(8), /* schema */river_job_state);

-- Version 5's index comes back. It fails if two live rows of one kind share a unique_key, which
-- version 6 allowed as long as their states differed.
CREATE UNIQUE INDEX IF NOT EXISTS river_job_kind_unique_key_idx ON /* schema */river_job
    USING btree (kind, unique_key) WHERE unique_key IS NOT NULL;
