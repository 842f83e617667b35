-- Whether bit(8) mask `bitmask` has the bit of `state` set. Bit positions follow the enum order
-- from the right: available is the rightmost character (get_bit position 7), scheduled the
-- leftmost (position 0), so the integer 1 << n cast to bit(8) selects the n-th state.
-- IMMUTABLE because the unique index predicate below calls it.
CREATE OR REPLACE FUNCTION /* schema */river_job_state_in_bitmask(
    bitmask bit(8),
    state /* schema */river_job_state
) RETURNS boolean
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT CASE state
        WHEN 'available' THEN get_bit(bitmask, 7)
        WHEN 'cancelled' THEN get_bit(bitmask, 6)
        WHEN 'completed' THEN get_bit(bitmask, 5)
        WHEN 'discarded' THEN get_bit(bitmask, 4)
        WHEN 'pending' THEN get_bit(bitmask, 3)
        WHEN 'retryable' THEN get_bit(bitmask, 2)
        WHEN 'running' THEN get_bit(bitmask, 1)
        WHEN 'scheduled' THEN get_bit(bitmask, 0)
        ELSE 0
    END = 1;
$$;

-- Tolerant, like unique_key in version 5.
ALTER TABLE /* schema */river_job ADD COLUMN IF NOT EXISTS unique_states bit(8);

-- Unique jobs from this version on: one row per unique_key among the rows whose state is in
-- their own unique_states. Inserts name exactly these three terms in ON CONFLICT so that
-- Postgres infers this index; changing any of them breaks every client's unique inserts.
CREATE UNIQUE INDEX IF NOT EXISTS river_job_unique_idx ON /* schema */river_job
    USING btree (unique_key)
    WHERE unique_key IS NOT NULL
        AND unique_states IS NOT NULL
        AND /* schema */river_job_state_in_bitmask(unique_states, state);

DROP INDEX IF EXISTS /* schema */river_job_kind_unique_key_idx;
