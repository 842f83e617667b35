-- Queries of the dashboard (river/ui). Same conventions as job.sql. They only read, except the
-- bulk actions at the end, which apply the rules of the single-job admin statements of job.sql
-- (job_retry, job_cancel, job_delete) to a batch of ids in one statement each.

-- name: ui_transaction_setup
-- First statement of every transaction of the dashboard (river/ui/_store.py): a dashboard query
-- must never hold a connection (or a lock) for long, whatever the server's or the pool's
-- default. Local to the transaction, so it holds on a pool the application lends the dashboard
-- and never outlives the request on that pool's connection.
SELECT set_config('statement_timeout', %(statement_timeout)s, true)

-- name: ui_counts
-- Jobs per queue and state, each count capped at %(count_limit)s rows (the caller passes its cap
-- plus one, so that a count at the limit reads "at least the cap"). The (state, queue) pairs come
-- from a loose index scan of river_job_prioritized_fetching_index (state, queue, ...): one index
-- probe per pair; each pair's rows are then counted in the same index, up to the limit. Exact
-- below the cap (as `SELECT queue, state, count(*) ... GROUP BY queue, state`), and on a table of
-- millions of rows the cost is bounded by pairs x cap instead of the table's size. At most
-- %(max_pairs)s pairs.
WITH RECURSIVE pairs AS (
    (SELECT state, queue FROM /* schema */river_job ORDER BY state, queue LIMIT 1)
    UNION ALL
    SELECT nxt.state, nxt.queue
    FROM pairs AS p
    CROSS JOIN LATERAL (
        SELECT j.state, j.queue
        FROM /* schema */river_job AS j
        WHERE (j.state, j.queue) > (p.state, p.queue)
        ORDER BY j.state, j.queue
        LIMIT 1
    ) AS nxt
)
SELECT p.queue, p.state::text, c.n
FROM (SELECT state, queue FROM pairs LIMIT %(max_pairs)s) AS p
CROSS JOIN LATERAL (
    SELECT count(*) AS n
    FROM (
        SELECT 1
        FROM /* schema */river_job AS j
        WHERE j.state = p.state AND j.queue = p.queue
        LIMIT %(count_limit)s
    ) AS capped
) AS c

-- name: ui_throughput
-- Jobs finalized per minute (completed, cancelled, discarded) over the last %(minutes)s
-- minutes, by calendar minute of the database clock. An index-only scan of
-- river_job_state_and_finalized_at_index (state, finalized_at): its cost is the number of rows
-- finalized in the window, never the table. Each row: the minute, the series, the count,
-- grouped by the truncated time itself (the minute's index is computed by the caller: half
-- the cost of computing it per row). A first row named 'since' carries the start of the
-- window, so that an empty window still has one.
SELECT date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1), 'since', 0
UNION ALL
SELECT date_trunc('minute', j.finalized_at), j.state::text, count(*)
FROM /* schema */river_job AS j
WHERE j.state IN ('completed', 'cancelled', 'discarded')
  -- The window's start written out: the planner then estimates how many rows it holds.
  AND j.finalized_at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1)
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
GROUP BY 1, 2

-- name: ui_failures
-- Failed attempts per minute over the same window: errors whose "at" falls in it, by minute.
-- Errors are read from the jobs that can hold a recent one without scanning the table: jobs
-- now retryable or running (index ranges of river_job_prioritized_fetching_index, whose first
-- column is the state), and jobs finalized within the window. A job that failed, was retried
-- and waits in available or scheduled is missed until it runs again (a short gap, said in
-- docs/ui.md). "at" is written by every River client in RFC 3339; anything else is skipped,
-- not an error: one job with an impossible date ("2024-02-30T00:00:00Z", written by some other
-- program) must not fail the whole series. Each value goes through a CASE, the one construct
-- whose order of evaluation Postgres keeps:
-- 1. a value whose date is more than a day before the window is skipped at once, by comparing
--    text (byte order): whatever its offset (at most 15:59), its instant is before the window.
--    Exact, and most errors of retryable jobs (every error of every one is read: no index
--    bounds them, see docs/ui.md) stop here, before the pattern and the cast;
-- 2. the pattern of RFC 3339, then its fields are read at their fixed positions: a month 1
--    to 12, a day of that month (a leap day of a leap year only), a time up to 23:59:59, an
--    offset up to 15:59 (as Postgres allows); only then is it cast.
WITH candidates AS (
    SELECT j.errors
    FROM /* schema */river_job AS j
    WHERE j.state IN ('retryable', 'running')
      AND j.errors IS NOT NULL
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
    UNION ALL
    SELECT j.errors
    FROM /* schema */river_job AS j
    WHERE j.state IN ('completed', 'cancelled', 'discarded')
      AND j.finalized_at >= date_trunc('minute', now())
                            - make_interval(mins => %(minutes)s::int - 1)
      AND j.errors IS NOT NULL
      AND (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
),
attempts AS (
    SELECT CASE
        WHEN t.text COLLATE "C" < (
            SELECT to_char(
                (date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1)
                 - interval '1 day') AT TIME ZONE 'UTC',
                'YYYY-MM-DD'
            )
        ) THEN NULL
        WHEN t.text ~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$' THEN CASE
            WHEN substr(t.text, 1, 4)::int >= 1
                AND substr(t.text, 6, 2)::int BETWEEN 1 AND 12
                AND substr(t.text, 9, 2)::int BETWEEN 1 AND CASE
                    WHEN substr(t.text, 6, 2)::int IN (4, 6, 9, 11) THEN 30
                    WHEN substr(t.text, 6, 2)::int <> 2 THEN 31
                    WHEN mod(substr(t.text, 1, 4)::int, 4) = 0
                         AND (mod(substr(t.text, 1, 4)::int, 100) <> 0
                              OR mod(substr(t.text, 1, 4)::int, 400) = 0) THEN 29
                    ELSE 28 END
                AND substr(t.text, 12, 2)::int <= 23
                AND substr(t.text, 15, 2)::int <= 59
                AND substr(t.text, 18, 2)::int <= 59
                AND coalesce(substring(t.text FROM '[+-](\d{2}):?\d{2}$')::int, 0) <= 15
                AND coalesce(substring(t.text FROM '[+-]\d{2}:?(\d{2})$')::int, 0) <= 59
            THEN t.text::timestamptz END
    END AS at
    -- ->> gives a number or an object as its JSON text, which the pattern refuses.
    FROM candidates AS c, unnest(c.errors) AS e, LATERAL (SELECT e ->> 'at' AS text) AS t
)
SELECT date_trunc('minute', a.at), count(*)
FROM attempts AS a
WHERE a.at >= date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int - 1)
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
-- count was shown. A filter no index serves (a text or tag search) is counted one window of
-- ids at a time ({where} then holds ui_window_from and ui_window_to), newest first, so that no
-- statement reads the whole table.
SELECT count(*), max(id)
FROM /* schema */river_job
WHERE {where}

-- fragment: ui_job_count_upto
-- How many jobs match a filter up to %(max_id)s, counting no further than %(limit)s: whether
-- more jobs match than a bulk action was confirmed for, at the cost of the confirmed count.
-- For a filter no index serves, one window of ids at a time ({where} holds ui_window_from).
SELECT count(*)
FROM (
    SELECT 1
    FROM /* schema */river_job
    WHERE {where} AND id <= %(max_id)s
    LIMIT %(limit)s
) AS matching

-- name: ui_id_bounds
-- The lowest and the highest id (two probes of the primary key): the range a bounded scan
-- (a text or tag search) walks window by window.
SELECT min(id), max(id)
FROM /* schema */river_job

-- fragment: ui_job_ids
-- The next batch of ids matching a filter, after %(after_id)s and at most %(upper_id)s (the
-- max_id of the confirmed count, or the end of the current window of a bounded scan): keyset
-- over the primary key, so each batch costs the same however far the action has gone.
SELECT id
FROM /* schema */river_job
WHERE {where} AND id > %(after_id)s AND id <= %(upper_id)s
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

-- fragment: ui_filter_queue
-- One queue: an equality, so that river_job_prioritized_fetching_index (state, queue, priority,
-- scheduled_at, id) returns one state, queue and priority in scheduled_at order.
queue = %(queue)s::text

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
-- planner may use the partial index river_job_state_and_finalized_at_index. The tabs of one
-- finalized state are in that order by default: by id, no index returns one state's rows, so
-- the list by id reads a bounded window of ids per page (ui_window_*).
finalized_at IS NOT NULL

-- fragment: ui_filter_priorities
priority = ANY(%(priorities)s::smallint[])

-- fragment: ui_filter_priority
-- One priority: an equality (see ui_filter_queue).
priority = %(priority)s::smallint

-- fragment: ui_filter_tags
-- No index serves it: a list filtered by tags reads a bounded window of ids (ui_window_*).
tags @> %(tags)s::varchar(255)[]

-- fragment: ui_filter_text
-- Free text in args or metadata, as a case-insensitive substring (%(text)s arrives with its
-- own % and _ escaped). No index serves it: the list walks the primary key within a bounded
-- window of ids (ui_window_*) and stops at a page of matches.
(args::text ILIKE %(text)s OR metadata::text ILIKE %(text)s)

-- fragment: ui_filter_json
-- A JSON object typed in the search box: containment in args or in metadata, served by the
-- GIN indexes river_job_args_index and river_job_metadata_index.
(args @> %(json)s::jsonb OR metadata @> %(json)s::jsonb)

-- fragment: ui_window_from
-- The lower end of the window of ids a bounded scan reads on this page (newest first), or
-- that a windowed count reads.
id >= %(window_low)s

-- fragment: ui_window_to
-- The upper end of the window of ids a bounded scan reads on this page (oldest first), or
-- that a windowed count reads.
id <= %(window_high)s

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

-- The bulk actions below take a batch of ids (%(batch)s) and {where}, the filter the action was
-- confirmed for (ui_filter_* fragments, or ui_filter_none for a selection of ids). Each locks
-- its rows in id order (two writers cannot deadlock) with the filter in the same statement: a
-- row that stopped matching since it was listed (a job that completed meanwhile) is not
-- locked, so not touched; under READ COMMITTED the lock re-checks the filter on the row's
-- latest version. The state rules of the single-job statements are repeated in the UPDATE or
-- DELETE itself for the same reason.

-- fragment: ui_job_retry_many
-- job_retry for a batch: made available now unless running, or available and already due;
-- one more attempt when all were used. A row whose unique key another job holds (or that a
-- lower id of the same batch takes first) is left alone and returned as a conflict, where
-- job_retry would fail with a unique violation. Returns (id, conflict) for the rows changed and
-- the conflicts.
WITH locked AS (
    SELECT id, state, scheduled_at, unique_key, unique_states
    FROM /* schema */river_job
    WHERE id = ANY(%(batch)s::bigint[]) AND {where}
    ORDER BY id
    FOR UPDATE
),
wanted AS (
    SELECT l.id, l.state, l.unique_key, l.unique_states
    FROM locked AS l
    WHERE l.state <> 'running'
      AND NOT (l.state = 'available' AND l.scheduled_at <= now())
),
conflicts AS (
    SELECT w.id
    FROM wanted AS w
    WHERE w.unique_key IS NOT NULL
      AND w.unique_states IS NOT NULL
      AND /* schema */river_job_state_in_bitmask(w.unique_states, 'available')
      AND NOT /* schema */river_job_state_in_bitmask(w.unique_states, w.state)
      AND (
          EXISTS (
              SELECT 1
              FROM /* schema */river_job AS o
              WHERE o.unique_key = w.unique_key
                AND o.id <> w.id
                AND o.unique_key IS NOT NULL
                AND o.unique_states IS NOT NULL
                AND /* schema */river_job_state_in_bitmask(o.unique_states, o.state)
          )
          OR EXISTS (
              SELECT 1
              FROM wanted AS v
              WHERE v.unique_key = w.unique_key
                AND v.id < w.id
                AND v.unique_states IS NOT NULL
                AND /* schema */river_job_state_in_bitmask(v.unique_states, 'available')
          )
      )
),
updated AS (
    UPDATE /* schema */river_job AS j
    SET state = 'available',
        finalized_at = NULL,
        scheduled_at = now(),
        max_attempts = CASE WHEN j.attempt = j.max_attempts THEN j.max_attempts + 1
                            ELSE j.max_attempts END,
        -- As job_retry: a retried job starts over, not as one being cancelled.
        metadata = j.metadata - 'cancel_attempted_at'
    FROM wanted AS w
    WHERE j.id = ANY(%(batch)s::bigint[])
      AND j.id = w.id
      AND NOT EXISTS (SELECT 1 FROM conflicts AS c WHERE c.id = w.id)
      AND j.state <> 'running'
      AND NOT (j.state = 'available' AND j.scheduled_at <= now())
    RETURNING j.id
)
SELECT u.id, false FROM updated AS u
UNION ALL
SELECT c.id, true FROM conflicts AS c

-- fragment: ui_job_cancel_many
-- job_cancel for a batch: rows not finalized get cancel_attempted_at; those not running are
-- cancelled now. The cancel notification goes out for each running row only (in the same
-- statement, so commit-bound): the client working it cancels the attempt. Rows that were not
-- running need no notification (nothing runs them), and a bulk cancel of thousands of waiting
-- jobs must not flood every listener. Returns (id, false) for the rows changed.
WITH locked AS (
    SELECT id, state
    FROM /* schema */river_job
    WHERE id = ANY(%(batch)s::bigint[]) AND {where}
    ORDER BY id
    FOR UPDATE
),
updated AS (
    UPDATE /* schema */river_job AS j
    SET state = CASE WHEN l.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN l.state = 'running' THEN j.finalized_at ELSE now() END,
        metadata = j.metadata || jsonb_build_object('cancel_attempted_at', %(now)s::text)
    FROM locked AS l
    WHERE j.id = ANY(%(batch)s::bigint[])
      AND j.id = l.id
      AND l.state NOT IN ('cancelled', 'completed', 'discarded')
    RETURNING j.id, j.queue, l.state = 'running' AS was_running
)
SELECT u.id,
       false,
       CASE WHEN u.was_running THEN pg_notify(
           coalesce(%(schema)s::text, current_schema()) || '.river_control',
           json_build_object('action', 'cancel', 'job_id', u.id, 'queue', u.queue)::text
       ) END
FROM updated AS u

-- fragment: ui_job_delete_many
-- job_delete for a batch: running rows left alone. Returns (id, false) for the rows deleted.
WITH locked AS (
    SELECT id
    FROM /* schema */river_job
    WHERE id = ANY(%(batch)s::bigint[]) AND {where} AND state <> 'running'
    ORDER BY id
    FOR UPDATE
)
DELETE FROM /* schema */river_job AS j
USING locked
-- The batch again: the planner then reads the primary key, where a join on the CTE alone
-- may hash the whole table.
WHERE j.id = ANY(%(batch)s::bigint[]) AND j.id = locked.id AND j.state <> 'running'
RETURNING j.id, false
