-- Queries of the maintenance services (run by the elected leader only; PROTOCOL.md section 9).

-- name: scheduler_promote
-- One transaction per run. Candidates: retryable or scheduled rows due within the next 5 s
-- (fetching still waits for scheduled_at), locked in priority order. A candidate with a unique
-- key is discarded when a row outside the candidates holds the same key in a state covered by
-- that row's own mask, or when another candidate with the key ranks before it; every other
-- candidate becomes available. Returns the queues of promoted rows with whether any of them is
-- due now (those queues get an insert notification).
WITH candidates AS (
    SELECT id, unique_key, unique_states, priority, scheduled_at
    FROM /* schema */river_job
    WHERE state IN ('retryable', 'scheduled')
      AND scheduled_at <= now() + interval '5 seconds'
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE
),
ranked AS (
    SELECT id, unique_key,
           row_number() OVER (
               PARTITION BY unique_key ORDER BY priority, scheduled_at, id
           ) AS rank
    FROM candidates
    WHERE unique_key IS NOT NULL AND unique_states IS NOT NULL
),
conflicting AS (
    SELECT r.id
    FROM ranked AS r
    WHERE r.rank > 1
       OR EXISTS (
           SELECT 1
           FROM /* schema */river_job AS holder
           WHERE holder.unique_key = r.unique_key
             AND holder.id NOT IN (SELECT id FROM candidates)
             AND holder.unique_states IS NOT NULL
             AND /* schema */river_job_state_in_bitmask(holder.unique_states, holder.state)
       )
),
discarded AS (
    UPDATE /* schema */river_job AS j
    SET state = 'discarded',
        finalized_at = now(),
        metadata = j.metadata || '{"unique_key_conflict": "scheduler_discarded"}'::jsonb
    WHERE j.id IN (SELECT id FROM conflicting)
    RETURNING j.id
),
promoted AS (
    UPDATE /* schema */river_job AS j
    SET state = 'available'
    WHERE j.id IN (SELECT id FROM candidates)
      AND j.id NOT IN (SELECT id FROM conflicting)
    RETURNING j.queue, j.scheduled_at
)
-- One row per queue with promoted jobs, plus one row (queue NULL) counting the discards.
SELECT queue, bool_or(scheduled_at <= now() + interval '5 milliseconds') AS due_now,
       count(*) AS n
FROM promoted
GROUP BY queue
UNION ALL
SELECT NULL, false, (SELECT count(*) FROM discarded)

-- name: rescuer_select
-- Running jobs whose attempt started before the horizon (database clock), all queues.
SELECT id, kind, queue, state::text, args::text, attempt, max_attempts, priority, created_at,
       scheduled_at, attempted_at, finalized_at, attempted_by, errors, metadata::text, tags,
       unique_key, unique_states::integer
FROM /* schema */river_job
WHERE state = 'running'
  AND attempted_at < now() - make_interval(secs => %(after)s)
  AND id > %(after_id)s
ORDER BY id
LIMIT %(limit)s

-- name: rescuer_now
-- The database clock, read right after rescuer_select: each job's timeout is judged by it, not
-- by the client's clock (which may be skewed).
SELECT now()

-- name: rescuer_update
-- Guarded write: a row changes only if it is still running with the attempt and attempted_at
-- seen at selection, and that attempted_at is still older than the horizon by the database
-- clock. A job that completed (or was rescued and fetched again) meanwhile is left alone.
WITH params AS (
    SELECT *
    FROM unnest(
        %(id)s::bigint[],
        %(attempt)s::smallint[],
        %(attempted_at)s::timestamptz[],
        %(state)s::text[],
        %(scheduled_at)s::timestamptz[],
        %(error)s::jsonb[]
    ) AS t(id, attempt, attempted_at, state, scheduled_at, error)
)
UPDATE /* schema */river_job AS j
SET state = p.state::/* schema */river_job_state,
    errors = array_append(j.errors, p.error),
    finalized_at = CASE WHEN p.state IN ('cancelled', 'discarded') THEN now() END,
    scheduled_at = coalesce(p.scheduled_at, j.scheduled_at),
    metadata = j.metadata || jsonb_build_object(
        'river:rescue_count',
        CASE WHEN jsonb_typeof(j.metadata -> 'river:rescue_count') = 'number'
             THEN (j.metadata ->> 'river:rescue_count')::numeric::bigint + 1
             ELSE 1 END
    )
FROM params AS p
WHERE j.id = p.id
  AND j.state = 'running'
  AND j.attempt = p.attempt
  AND j.attempted_at = p.attempted_at
  AND j.attempted_at < now() - make_interval(secs => %(after)s)
RETURNING j.id, j.state::text

-- name: cleaner_delete
-- Finalized rows past their retention, in id order, one batch per statement. A retention of
-- NULL (configured as -1) keeps that state forever.
WITH doomed AS (
    SELECT id
    FROM /* schema */river_job
    WHERE (state = 'cancelled' AND %(cancelled)s::float8 IS NOT NULL
           AND finalized_at < now() - make_interval(secs => %(cancelled)s::float8))
       OR (state = 'completed' AND %(completed)s::float8 IS NOT NULL
           AND finalized_at < now() - make_interval(secs => %(completed)s::float8))
       OR (state = 'discarded' AND %(discarded)s::float8 IS NOT NULL
           AND finalized_at < now() - make_interval(secs => %(discarded)s::float8))
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM /* schema */river_job AS j
USING doomed
WHERE j.id = doomed.id

-- name: queue_cleaner_delete
WITH doomed AS (
    SELECT name
    FROM /* schema */river_queue
    WHERE updated_at < now() - make_interval(secs => %(idle)s)
    ORDER BY name
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM /* schema */river_queue AS q
USING doomed
WHERE q.name = doomed.name

-- name: reindex_artifacts
-- Leftovers of an interrupted REINDEX CONCURRENTLY of one index: <index>_ccnew[N] / _ccold[N].
SELECT c.relname
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = coalesce(%(schema)s::text, current_schema())
  AND c.relkind = 'i'
  AND c.relname ~ ('^' || %(index)s || '_cc(new|old)[0-9]*$')

-- fragment: reindex_index
-- {index}: the schema-qualified identifier (psycopg.sql.Identifier). CONCURRENTLY cannot run
-- in a transaction block: the reindexer runs it on a dedicated autocommit connection.
REINDEX INDEX CONCURRENTLY {index}

-- name: reindex_session
-- The reindexer's connection: each REINDEX is bounded by the server (statement_timeout), which
-- ends it cleanly (the connection stays usable) where a client-side timeout would leave it
-- running on the server.
SELECT set_config('statement_timeout', %(timeout_ms)s, false)

-- name: reindex_cancel_backend
-- Cancels the reindexer's own REINDEX that its client gave up on (a timeout, a stop): the
-- server does not notice a client that went away while the statement waits for locks, and
-- would go on with it. Only that backend, and only while it still runs a REINDEX.
SELECT pg_cancel_backend(a.pid)
FROM pg_stat_activity AS a
WHERE a.pid = %(pid)s
  AND a.state <> 'idle'
  AND a.query ILIKE 'REINDEX INDEX CONCURRENTLY%%'

-- fragment: reindex_drop_leftover
-- Drops one leftover found by reindex_artifacts (autocommit, as reindex_index).
DROP INDEX CONCURRENTLY IF EXISTS {index}

-- name: queue_depth
-- Jobs not yet finalized per queue and state, for the leader's queue depth gauge (river.queue.
-- depth, river worker's river_queue_depth): one grouped count every queue_depth_interval.
-- Finalized states are left out on purpose: completed rows can number millions while the
-- cleaner keeps them, and counting them every few seconds would not be cheap; the five states
-- listed lead river_job_prioritized_fetching_index (state, queue, ...), so the count can read
-- their entries only. Queues of river_queue with none of these jobs come back once with a
-- NULL state, so that their depth reads 0 instead of vanishing.
WITH counts AS (
    SELECT queue, state::text AS state, count(*) AS n
    FROM /* schema */river_job
    WHERE state IN ('available', 'pending', 'retryable', 'running', 'scheduled')
    GROUP BY queue, state
)
SELECT queue, state, n
FROM counts
UNION ALL
SELECT q.name, NULL, 0
FROM /* schema */river_queue AS q
WHERE NOT EXISTS (SELECT 1 FROM counts WHERE counts.queue = q.name)
