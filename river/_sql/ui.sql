-- Queries of the dashboard (river/ui). Same conventions as job.sql. They only read, except the
-- bulk actions at the end, which apply the rules of the single-job admin statements of job.sql
-- (job_retry, job_cancel, job_delete) to a batch of ids in one statement each.

-- name: ui_session_setup
-- Run on every new connection of the dashboard's own pool: a dashboard query must never hold
-- a connection (or a lock) for long, whatever the server's default.
SELECT set_config('statement_timeout', %(statement_timeout)s, false)

-- name: ui_counts
-- Jobs per queue and state, every state, in one pass (the overview and the state tabs; the
-- per-state totals are sums of these). Exact, as `SELECT state, count(*) ... GROUP BY state`.
SELECT queue, state::text, count(*)
FROM /* schema */river_job
GROUP BY queue, state

-- name: ui_throughput
-- Jobs finalized per minute (completed, cancelled, discarded) over the last %(minutes)s
-- minutes, by calendar minute of the database clock. Reads river_job_state_and_finalized_at_index
-- (state, finalized_at), so its cost is the number of rows finalized in the window, never the
-- table. Each row: minute index (0 = the oldest minute of the window), series, count. A first
-- row with index -1 carries the start of the window (as a Unix time) so that an empty window
-- still has one.
WITH bounds AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1) AS since
)
SELECT -1, 'since', extract(epoch FROM b.since)::bigint
FROM bounds AS b
UNION ALL
SELECT floor(extract(epoch FROM date_trunc('minute', j.finalized_at) - b.since) / 60)::int,
       j.state::text,
       count(*)
FROM /* schema */river_job AS j, bounds AS b
WHERE j.state IN ('completed', 'cancelled', 'discarded')
  AND j.finalized_at >= b.since
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
GROUP BY 1, 2

-- name: ui_failures
-- Failed attempts per minute over the same window: errors whose "at" falls in it. Errors are
-- read from the jobs that can hold a recent one without scanning the table: jobs now retryable
-- or running (index ranges of river_job_prioritized_fetching_index, whose first column is the
-- state), and jobs finalized within the window. A job that failed, was retried and waits in
-- available or scheduled is missed until it runs again (a short gap, said in docs/ui.md).
-- "at" is written by every River client in RFC 3339; anything else is skipped, not an error.
WITH bounds AS (
    SELECT date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1) AS since
),
candidates AS (
    SELECT j.errors
    FROM /* schema */river_job AS j
    WHERE j.state IN ('retryable', 'running')
      AND j.errors IS NOT NULL
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
    UNION ALL
    SELECT j.errors
    FROM /* schema */river_job AS j, bounds AS b
    WHERE j.state IN ('completed', 'cancelled', 'discarded')
      AND j.finalized_at >= b.since
      AND j.errors IS NOT NULL
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
),
attempts AS (
    SELECT (e ->> 'at')::timestamptz AS at
    FROM candidates AS c, unnest(c.errors) AS e
    WHERE jsonb_typeof(e -> 'at') = 'string'
      AND (e ->> 'at') ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$'
)
SELECT floor(extract(epoch FROM date_trunc('minute', a.at) - b.since) / 60)::int, count(*)
FROM attempts AS a, bounds AS b
WHERE a.at >= b.since
GROUP BY 1

-- name: ui_active_clients
-- Clients seen working jobs: the last entry of attempted_by of running jobs, and of the latest
-- completions (at most 5,000, newest first through river_job_state_and_finalized_at_index)
-- within %(minutes)s minutes. River's schema has no client registry, so an idle client is not
-- seen here.
WITH seen AS (
    SELECT attempted_by[cardinality(attempted_by)] AS client_id,
           1 AS running,
           attempted_at AS at
    FROM /* schema */river_job
    WHERE state = 'running' AND cardinality(attempted_by) > 0
    UNION ALL
    SELECT recent.client_id, 0, recent.at
    FROM (
        SELECT attempted_by[cardinality(attempted_by)] AS client_id, finalized_at AS at
        FROM /* schema */river_job
        WHERE state = 'completed'
          AND finalized_at >= now() - make_interval(mins => %(minutes)s::int)
        ORDER BY finalized_at DESC
        LIMIT 5000
    ) AS recent
    WHERE recent.client_id IS NOT NULL
)
SELECT client_id, sum(running)::bigint, max(at)
FROM seen
GROUP BY client_id
ORDER BY client_id
LIMIT 200

-- name: ui_now
SELECT now()

-- name: ui_kinds
-- Distinct kinds (the kind filter's suggestions) by a loose index scan of river_job_kind: one
-- index probe per kind, instead of reading every entry as SELECT DISTINCT would.
WITH RECURSIVE kinds AS (
    (SELECT kind FROM /* schema */river_job ORDER BY kind LIMIT 1)
    UNION ALL
    SELECT (SELECT j.kind FROM /* schema */river_job AS j WHERE j.kind > k.kind
            ORDER BY j.kind LIMIT 1)
    FROM kinds AS k
    WHERE k.kind IS NOT NULL
)
SELECT kind FROM kinds WHERE kind IS NOT NULL LIMIT %(limit)s

-- name: ui_periodic_runs
-- Periodic jobs seen in the table (metadata "periodic": true, set by river-queue and River
-- (Go) on the jobs they enqueue), by periodic job id, kind and queue: how many rows are kept
-- and the latest one. Uses river_job_metadata_index (GIN, jsonb containment).
SELECT metadata ->> 'river:periodic_job_id', kind, queue, count(*), max(created_at), max(id)
FROM /* schema */river_job
WHERE metadata @> '{"periodic": true}'
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
LIMIT 500

-- fragment: ui_job_list
-- A page of the job list. {where} is ui_filter_* fragments joined with AND, {order} a
-- ui_order_* fragment. Same row shape as job.sql's, except that args are cut to a preview,
-- metadata is left out (null), and only the last error is kept; then the number of errors.
SELECT
    id, kind, queue, state::text, left(args::text, %(preview)s), attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors[cardinality(errors):cardinality(errors)], NULL, tags,
    unique_key, unique_states::integer,
    coalesce(cardinality(errors), 0)
FROM /* schema */river_job
WHERE {where}
ORDER BY {order}
LIMIT %(limit)s

-- fragment: ui_job_count
-- How many jobs match a filter, and the highest id among them: a bulk action over "all
-- matching" acts on rows up to that id only, so it never reaches jobs inserted after the
-- count was shown.
SELECT count(*), max(id)
FROM /* schema */river_job
WHERE {where}

-- fragment: ui_job_ids
-- The next batch of ids matching a filter, at most %(max_id)s, after %(after_id)s (keyset
-- over the primary key: each batch costs the same however far the action has gone).
SELECT id
FROM /* schema */river_job
WHERE {where} AND id > %(after_id)s AND id <= %(max_id)s
ORDER BY id
LIMIT %(limit)s

-- fragment: ui_filter_none
true

-- fragment: ui_filter_ids
id = ANY(%(ids)s::bigint[])

-- fragment: ui_filter_kinds
kind = ANY(%(kinds)s::text[])

-- fragment: ui_filter_queues
queue = ANY(%(queues)s::text[])

-- fragment: ui_filter_states
-- Compared as the enum (not as text), so that the indexes leading with state can serve it.
state = ANY(%(states)s::/* schema */river_job_state[])

-- fragment: ui_filter_state
-- One state: an equality, not ANY(array), because only then does an index scan of
-- river_job_state_and_finalized_at_index return rows in finalized_at order (Postgres 15 does
-- not keep the order across the elements of an array).
state = %(state)s::/* schema */river_job_state

-- fragment: ui_filter_finalized
-- Always true of finalized rows (a check constraint since version 4), said here so that the
-- planner may use the partial index river_job_state_and_finalized_at_index.
finalized_at IS NOT NULL

-- fragment: ui_filter_priorities
priority = ANY(%(priorities)s::smallint[])

-- fragment: ui_filter_tags
tags @> %(tags)s::varchar(255)[]

-- fragment: ui_filter_text
-- Free text in args or metadata, as a case-insensitive substring (%(text)s arrives with its
-- own % and _ escaped). No index serves it: with the default order the primary key is walked
-- newest first and the scan stops at a page of matches.
(args::text ILIKE %(text)s OR metadata::text ILIKE %(text)s)

-- fragment: ui_filter_json
-- A JSON object typed in the search box: containment in args or in metadata, served by the
-- GIN indexes river_job_args_index and river_job_metadata_index.
(args @> %(json)s::jsonb OR metadata @> %(json)s::jsonb)

-- fragment: ui_after_id
-- Keyset pagination past the cursor's row: {op} is > ascending, < descending.
id {op} %(cursor_id)s

-- fragment: ui_after_time
-- Keyset pagination on a time column ({column}: an identifier, or ui_column_attempted_at),
-- ties broken by id.
({column}, id) {op} (%(cursor_time)s::timestamptz, %(cursor_id)s)

-- fragment: ui_column_attempted_at
-- attempted_at may be null (never on a running row written by a River client): nulls sort as
-- +infinity, as Postgres orders them, and a cursor carries them as 'infinity'.
coalesce(attempted_at, 'infinity'::timestamptz)

-- fragment: ui_order_id
id {direction}

-- fragment: ui_order_time
{column} {direction}, id {direction}

-- name: ui_job_retry_many
-- job_retry for a batch of ids: rows locked in id order (two writers cannot deadlock), then
-- made available now unless running, or available and already due; one more attempt when all
-- were used. Returns the ids changed.
WITH locked AS (
    SELECT id
    FROM /* schema */river_job
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
)
UPDATE /* schema */river_job AS j
SET state = 'available',
    finalized_at = NULL,
    scheduled_at = now(),
    max_attempts = CASE WHEN j.attempt = j.max_attempts THEN j.max_attempts + 1
                        ELSE j.max_attempts END
FROM locked
WHERE j.id = locked.id
  AND j.state <> 'running'
  AND NOT (j.state = 'available' AND j.scheduled_at <= now())
RETURNING j.id

-- name: ui_job_cancel_many
-- job_cancel for a batch of ids: rows not finalized get cancel_attempted_at; those not running
-- are cancelled now. The cancel notification goes out for each running row only (in the same
-- statement, so commit-bound): the client working it cancels the attempt. Rows that were not
-- running need no notification (nothing runs them), and a bulk cancel of thousands of waiting
-- jobs must not flood every listener. Returns the ids changed.
WITH locked AS (
    SELECT id, state
    FROM /* schema */river_job
    WHERE id = ANY(%(ids)s::bigint[])
    ORDER BY id
    FOR UPDATE
),
updated AS (
    UPDATE /* schema */river_job AS j
    SET state = CASE WHEN l.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN l.state = 'running' THEN j.finalized_at ELSE now() END,
        metadata = j.metadata || jsonb_build_object('cancel_attempted_at', %(now)s::text)
    FROM locked AS l
    WHERE j.id = l.id AND l.state NOT IN ('cancelled', 'completed', 'discarded')
    RETURNING j.id, j.queue, l.state = 'running' AS was_running
)
SELECT u.id,
       CASE WHEN u.was_running THEN pg_notify(
           coalesce(%(schema)s::text, current_schema()) || '.river_control',
           json_build_object('action', 'cancel', 'job_id', u.id, 'queue', u.queue)::text
       ) END
FROM updated AS u

-- name: ui_job_delete_many
-- job_delete for a batch of ids: rows locked in id order, running ones left alone (the lock
-- re-checks the state, so a row fetched meanwhile is not deleted). Returns the ids deleted.
WITH locked AS (
    SELECT id
    FROM /* schema */river_job
    WHERE id = ANY(%(ids)s::bigint[]) AND state <> 'running'
    ORDER BY id
    FOR UPDATE
)
DELETE FROM /* schema */river_job AS j
USING locked
WHERE j.id = locked.id AND j.state <> 'running'
RETURNING j.id
