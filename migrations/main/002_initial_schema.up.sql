-- Job states. "pending" joins the type in version 4; Postgres keeps enum values in this order.
CREATE TYPE /* schema */river_job_state AS ENUM (
    'available',
    'cancelled',
    'completed',
    'discarded',
    'retryable',
    'running',
    'scheduled'
);

-- Column order is part of what clients may see (SELECT *), so later versions only append.
CREATE TABLE /* schema */river_job (
    id bigserial PRIMARY KEY,
    state /* schema */river_job_state NOT NULL DEFAULT 'available',
    attempt smallint NOT NULL DEFAULT 0,
    max_attempts smallint NOT NULL,
    attempted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    finalized_at timestamptz,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    priority smallint NOT NULL DEFAULT 1,
    args jsonb,
    attempted_by text[],
    errors jsonb[],
    kind text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    queue text NOT NULL DEFAULT 'default',
    tags varchar(255)[],
    -- One-sided at this version: a finalized job must carry finalized_at. Version 4 makes the
    -- rule two-sided.
    CONSTRAINT finalized_or_finalized_at_null CHECK (
        finalized_at IS NOT NULL OR state NOT IN ('cancelled', 'completed', 'discarded')
    ),
    CONSTRAINT max_attempts_is_positive CHECK (max_attempts > 0),
    CONSTRAINT priority_in_range CHECK (priority >= 1 AND priority <= 4),
    CONSTRAINT queue_length CHECK (char_length(queue) > 0 AND char_length(queue) < 128),
    CONSTRAINT kind_length CHECK (char_length(kind) > 0 AND char_length(kind) < 128)
);

CREATE INDEX river_job_kind ON /* schema */river_job USING btree (kind);

-- Serves the cleaner, which deletes finalized jobs by age.
CREATE INDEX river_job_state_and_finalized_at_index ON /* schema */river_job
    USING btree (state, finalized_at) WHERE finalized_at IS NOT NULL;

-- Serves the fetch query: available jobs of one queue by priority, then due time, then id.
CREATE INDEX river_job_prioritized_fetching_index ON /* schema */river_job
    USING btree (state, queue, priority, scheduled_at, id);

CREATE INDEX river_job_args_index ON /* schema */river_job USING gin (args);

CREATE INDEX river_job_metadata_index ON /* schema */river_job USING gin (metadata);

-- Insert notifications came from a trigger at this version (channel without schema prefix).
-- Version 4 removes it: applications send their own notifications since.
CREATE OR REPLACE FUNCTION /* schema */river_job_notify() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.state = 'available' THEN
        PERFORM pg_notify('river_insert', json_build_object('queue', NEW.queue)::text);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER river_notify
    AFTER INSERT ON /* schema */river_job
    FOR EACH ROW
    EXECUTE FUNCTION /* schema */river_job_notify();

-- The leader lease is worthless after a crash, so the table skips the WAL.
CREATE UNLOGGED TABLE /* schema */river_leader (
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    leader_id text NOT NULL,
    name text PRIMARY KEY,
    CONSTRAINT name_length CHECK (char_length(name) > 0 AND char_length(name) < 128),
    CONSTRAINT leader_id_length CHECK (char_length(leader_id) > 0 AND char_length(leader_id) < 128)
);
