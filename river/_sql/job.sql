-- Queries on river_job. Each query starts with a "-- name: <name>" line and runs until the next;
-- a "-- fragment: <name>" is a piece composed into statements (river/_driver.py explains both).
-- "/* schema */" before an object name is replaced by the quoted schema and a dot, or nothing.
-- Row shape returned by every query that returns jobs (river/_driver.py job_from_row decodes it):
--   id, kind, queue, state, args, attempt, max_attempts, priority, created_at, scheduled_at,
--   attempted_at, finalized_at, attempted_by, errors, metadata::text, tags, unique_key, unique_states

-- name: job_insert_many  returning: job_insert_returning_row
-- name: job_insert_many_new  returning: job_insert_returning_new
-- One statement for 1..n jobs. Rows come in as parallel arrays (one element per job) and are
-- unnested in order; WITH ORDINALITY keeps the input order so results can be returned in it.
-- Tags travel joined by "," (tags cannot contain commas) because Postgres arrays of arrays must
-- be rectangular. The notify CTE is cross-joined so that it runs exactly once, in the same
-- statement and so in the same transaction: commit-bound, never sent on rollback.
-- Array parameters travel as text literals built by river/_pgarray.py (psycopg adapts a list
-- element by element in Python, several µs of client CPU per job for the whole row), except
-- scheduled_at, a binary timestamptz[] (formatting and parsing timestamps as text costs more on
-- both sides). A column that is NULL for every job (scheduled_at, unique_key, unique_states
-- of a plain batch, and metadata when every job has the empty object, which coalesce restores)
-- travels as one NULL: unnest pads a NULL array with NULLs like the others. args and metadata
-- are unnested as text and cast to jsonb one by one: building a jsonb[] first cost the server
-- about 0.5 µs more per job.
-- ON CONFLICT repeats the three terms of river_job_unique_idx's predicate so Postgres infers
-- that partial index; the no-op update returns the existing row, whose xmax is then non-zero.
-- Two variants differ only in their RETURNING list (the fragments after job_insert_one).
WITH notified AS (
    SELECT count(pg_notify(
        coalesce(%(schema)s::text, current_schema()) || '.river_insert', payload
    )) AS n
    FROM unnest(%(notify_payloads)s::text[]) AS payload
),
input AS (
    SELECT *
    FROM unnest(
        %(args)s::text[],
        %(kind)s::text[],
        %(queue)s::text[],
        %(priority)s::smallint[],
        %(max_attempts)s::smallint[],
        %(state)s::text[],
        %(scheduled_at)b::timestamptz[],
        %(tags)s::text[],
        %(metadata)s::text[],
        %(unique_key)s::bytea[],
        %(unique_states)s::integer[]
    ) WITH ORDINALITY AS t(
        args, kind, queue, priority, max_attempts, state, scheduled_at, tags, metadata,
        unique_key, unique_states, ord
    )
    CROSS JOIN notified
),
inserted AS (
    INSERT INTO /* schema */river_job AS j (
        args, kind, queue, priority, max_attempts, state, scheduled_at, tags, metadata,
        unique_key, unique_states
    )
    SELECT
        args::jsonb, kind, queue, priority, max_attempts,
        state::/* schema */river_job_state,
        coalesce(scheduled_at, now()),
        coalesce(string_to_array(nullif(tags, ''), ','), '{}')::varchar(255)[],
        coalesce(metadata::jsonb, '{}'),
        unique_key,
        unique_states::bit(8)
    FROM input
    ORDER BY ord
    ON CONFLICT (unique_key)
        WHERE unique_key IS NOT NULL
          AND unique_states IS NOT NULL
          AND /* schema */river_job_state_in_bitmask(unique_states, state)
        DO UPDATE SET kind = EXCLUDED.kind
    RETURNING /* returning */
)
SELECT * FROM inserted

-- name: job_insert_one  returning: job_insert_returning_row
-- name: job_insert_one_new  returning: job_insert_returning_new
-- job_insert_many for exactly one job, with plain parameters instead of one-element arrays
-- (a single insert is latency- and CPU-bound on the client: converting a dozen arrays and
-- unnesting them cost more than the insert itself). Same row, same conflict handling, same
-- commit-bound notification (sent when notify_payload is not null).
WITH notified AS (
    SELECT count(pg_notify(
        coalesce(%(schema)s::text, current_schema()) || '.river_insert', payload
    )) AS n
    FROM (SELECT %(notify_payload)s::text AS payload) AS p
    WHERE payload IS NOT NULL
)
INSERT INTO /* schema */river_job AS j (
    args, kind, queue, priority, max_attempts, state, scheduled_at, tags, metadata,
    unique_key, unique_states
)
SELECT
    %(args)s::jsonb,
    %(kind)s::text,
    %(queue)s::text,
    %(priority)s::smallint,
    %(max_attempts)s::smallint,
    %(state)s::/* schema */river_job_state,
    coalesce(%(scheduled_at)s::timestamptz, now()),
    coalesce(string_to_array(nullif(%(tags)s::text, ''), ','), '{}')::varchar(255)[],
    coalesce(%(metadata)s::jsonb, '{}'),
    %(unique_key)s::bytea,
    %(unique_states)s::integer::bit(8)
FROM notified
ON CONFLICT (unique_key)
    WHERE unique_key IS NOT NULL
      AND unique_states IS NOT NULL
      AND /* schema */river_job_state_in_bitmask(unique_states, state)
    DO UPDATE SET kind = EXCLUDED.kind
RETURNING /* returning */

-- fragment: job_insert_returning_row
-- The whole row, and whether it is an existing row returned for a unique key already held.
j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer,
j.xmax <> 0 AS unique_skipped_as_duplicate

-- fragment: job_insert_returning_new
-- For batches without unique keys (the *_new variants): such a row cannot conflict, so the row
-- stored is the row sent, and only what the server chose comes back (id, args as jsonb
-- normalised them, created_at, scheduled_at; river/_driver.py _new_rows builds the rest).
-- Returning and decoding whole rows cost about a fifth of a batch insert. scheduled_at comes
-- back NULL when it is created_at (a job not scheduled for later), which spares the client
-- decoding a second timestamp per row.
j.id, j.args::text, j.created_at, nullif(j.scheduled_at, j.created_at)

-- name: job_copy
COPY /* schema */river_job (
    args, created_at, kind, max_attempts, metadata, priority, queue, scheduled_at, state, tags,
    unique_key, unique_states
) FROM STDIN

-- name: notify_many
-- Sends each payload on <schema>.<topic>; with no schema configured the channel uses
-- current_schema(), as River (Go) does.
SELECT count(pg_notify(coalesce(%(schema)s::text, current_schema()) || '.' || %(topic)s, payload))
FROM unnest(%(payloads)s::text[]) AS payload

-- name: job_fetch
-- Candidates are picked in a sub-select with FOR UPDATE SKIP LOCKED, so concurrent fetchers (in
-- any language) never take the same row and never wait on each other. attempted_by keeps the
-- last 99 entries before appending this client's id (at most 100).
WITH locked AS (
    SELECT id
    FROM /* schema */river_job
    WHERE state = 'available'
      AND queue = %(queue)s
      AND scheduled_at <= now()
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE /* schema */river_job AS j
SET state = 'running',
    attempt = j.attempt + 1,
    attempted_at = now(),
    attempted_by = array_append(
        (coalesce(j.attempted_by, '{}'::text[]))[greatest(cardinality(j.attempted_by) - 98, 1):],
        %(client_id)s::text
    )
FROM locked
WHERE j.id = locked.id
RETURNING
    j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
    j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
    j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer

-- name: job_kinds_distinct
-- The distinct kinds of river_job, by a skip scan of the river_job_kind index: one index probe
-- per kind, not a scan of the table (the Django admin's kind filter).
WITH RECURSIVE kinds(kind) AS (
    (SELECT kind FROM /* schema */river_job ORDER BY kind LIMIT 1)
    UNION ALL
    SELECT (SELECT j.kind FROM /* schema */river_job AS j
            WHERE j.kind > k.kind ORDER BY j.kind LIMIT 1)
    FROM kinds AS k
    WHERE k.kind IS NOT NULL
)
SELECT kind FROM kinds WHERE kind IS NOT NULL LIMIT %(limit)s

-- name: job_fetch_limited
-- job_fetch for a rate-limited queue (river.RateLimit): a token bucket in the queue's
-- river_queue row (metadata river_py.bucket: tokens left, and when, in epoch seconds) refills
-- at %(rate)s jobs per second up to %(capacity)s. The row is locked, so fetchers of every
-- client take tokens one after the other; at most floor(tokens) jobs are fetched, and only
-- what was fetched is spent. Jobs over the limit stay available, untouched.
-- The row is locked with SKIP LOCKED: while another transaction holds it (an application's
-- queue_pause_tx, a hand edit), the fetch takes nothing instead of waiting.
-- The stored values are untrusted: anything but numbers reads as a full bucket, tokens are
-- clamped to [0, capacity], and a time in the future (the clock stepped back) refills nothing
-- rather than freezing the bucket until the clock catches up.
-- One row per fetched job, or one row of NULL job columns when none was; the last two
-- columns: the tokens the bucket held before this fetch (NULL: the row was locked or is
-- missing), and whether the queue has a river_queue row at all.
WITH queue_row AS (
    SELECT q.name, q.metadata
    FROM /* schema */river_queue AS q
    WHERE q.name = %(queue)s
    FOR UPDATE SKIP LOCKED
),
stored AS (
    SELECT r.name,
           CASE WHEN jsonb_typeof(r.metadata) = 'object'
                THEN r.metadata ELSE '{}'::jsonb END AS base,
           CASE WHEN jsonb_typeof(r.metadata -> 'river_py') = 'object'
                THEN r.metadata -> 'river_py' ELSE '{}'::jsonb END AS ours,
           n.now_s,
           CASE WHEN jsonb_typeof(r.metadata #> '{river_py,bucket,tokens}') = 'number'
                THEN least(greatest((r.metadata #>> '{river_py,bucket,tokens}')::numeric, 0),
                           %(capacity)s::numeric)::float8
                ELSE %(capacity)s::float8 END AS tokens,
           CASE WHEN jsonb_typeof(r.metadata #> '{river_py,bucket,at}') = 'number'
                THEN least(greatest((r.metadata #>> '{river_py,bucket,at}')::numeric, 0),
                           n.now_s::numeric + 1)::float8
                ELSE 0 END AS at,
           -- A stored time further ahead than that is rewritten even when nothing is fetched.
           jsonb_typeof(r.metadata #> '{river_py,bucket,at}') = 'number'
               AND (r.metadata #>> '{river_py,bucket,at}')::numeric > n.now_s::numeric + 1
               AS ahead
    FROM queue_row AS r,
         LATERAL (SELECT extract(epoch FROM now())::float8 AS now_s) AS n
),
bucket AS (
    SELECT s.name, s.base, s.ours, s.now_s, s.ahead,
           -- at is ahead of now() by up to the 1 s kept below (transaction start times of
           -- concurrent fetchers differ a little): no refill then, never a negative one.
           least(%(capacity)s::float8,
                 s.tokens + %(rate)s::float8 * greatest(s.now_s - s.at, 0)) AS tokens,
           greatest(s.now_s, s.at) AS at
    FROM stored AS s
),
locked AS (
    SELECT id
    FROM /* schema */river_job
    WHERE state = 'available'
      AND queue = %(queue)s
      AND scheduled_at <= now()
    ORDER BY priority, scheduled_at, id
    LIMIT least(%(limit)s, coalesce((SELECT floor(b.tokens)::bigint FROM bucket AS b), 0))
    FOR UPDATE SKIP LOCKED
),
fetched AS (
    UPDATE /* schema */river_job AS j
    SET state = 'running',
        attempt = j.attempt + 1,
        attempted_at = now(),
        attempted_by = array_append(
            (coalesce(j.attempted_by, '{}'::text[]))[greatest(cardinality(j.attempted_by) - 98, 1):],
            %(client_id)s::text
        )
    FROM locked
    WHERE j.id = locked.id
    RETURNING
        j.id, j.kind, j.queue, j.state::text AS state, j.args::text AS args, j.attempt,
        j.max_attempts, j.priority, j.created_at, j.scheduled_at, j.attempted_at,
        j.finalized_at, j.attempted_by, j.errors, j.metadata::text AS metadata, j.tags,
        j.unique_key, j.unique_states::integer AS unique_states
),
spent AS (
    UPDATE /* schema */river_queue AS q
    SET metadata = b.base || jsonb_build_object(
        'river_py',
        b.ours || jsonb_build_object(
            'bucket',
            jsonb_build_object('tokens', b.tokens - (SELECT count(*) FROM fetched), 'at', b.at)
        )
    )
    FROM bucket AS b
    WHERE q.name = b.name AND (EXISTS (SELECT 1 FROM fetched) OR b.ahead)
)
SELECT f.id, f.kind, f.queue, f.state, f.args, f.attempt, f.max_attempts, f.priority,
       f.created_at, f.scheduled_at, f.attempted_at, f.finalized_at, f.attempted_by, f.errors,
       f.metadata, f.tags, f.unique_key, f.unique_states, b.tokens,
       EXISTS (SELECT 1 FROM /* schema */river_queue WHERE name = %(queue)s) AS present
FROM (SELECT 1) AS one
LEFT JOIN bucket AS b ON true
LEFT JOIN fetched AS f ON true

-- name: job_set_state_many  returning: job_set_state_returning_state
-- name: job_set_state_many_rows  returning: job_set_state_returning_row
-- The completer's batch write (PROTOCOL.md 3.6). Every outcome is fenced by the attempt that
-- produced it (seen_attempt and seen_attempted_at, the row's attempt and attempted_at when it
-- was fetched): it applies only to the row at that attempt. The attempt number alone can come
-- back: a snooze or an interruption gives it back, and a write of one whose reply was lost
-- (committed, then retried by the completer) would otherwise match the next fetch's attempt;
-- attempted_at, which every fetch sets, tells the two apart. An attempt that outlived the rescuer (its row re-fetched, attempt + 1) must
-- never write its outcome over the newer attempt's, or a job whose attempts all overrun would
-- livelock (each stale failure sending the row back to available while the newer attempt runs).
-- Rows at another attempt are locked but neither written nor returned: the completer counts
-- the outcomes missing from the result as stale. Rows are locked in id order first so
-- that two writers touching overlapping rows cannot deadlock. State, attempt, errors,
-- finalized_at and scheduled_at change only while the row is still running; staged metadata is
-- merged (shallow, top level) even when it is not (the same attempt completed it in the
-- worker's own transaction through job_complete_tx). A running row marked with
-- cancel_attempted_at whose requested state is retryable or scheduled becomes cancelled instead
-- (remote cancel seen). Requested available (a retry or snooze due within the scheduler's
-- interval) is not converted: River (Go) does not, and PROTOCOL.md 3.6 asks for identical
-- outcomes. Only the stricter WHERE differs from River (Go)'s write, so rows stay as River
-- (Go) writes them. job_set_state_many_rows returns whole rows instead of the state
-- (used only while someone subscribes to job events).
-- Each outcome is identified by its ordinal (ord) through the statement, and the attempt is
-- compared as a column, not joined on: a join on (id, attempt) made the planner expect a
-- handful of rows where there are thousands and loop over the locked rows once per outcome
-- (a 2,000-outcome batch took 300 ms of server CPU instead of 20).
-- Array parameters travel as text literals built by river/_pgarray.py, timestamps as binary
-- timestamptz[] (see job_insert_many), and a column that is NULL for every outcome
-- (scheduled_at, attempt, error and metadata of a batch of completions) as one NULL, which
-- unnest pads with NULLs like an array of NULLs.
WITH params AS (
    SELECT *
    FROM unnest(
        %(id)s::bigint[],
        %(seen_attempt)s::smallint[],
        %(seen_attempted_at)b::timestamptz[],
        %(state)s::text[],
        %(finalized_at)b::timestamptz[],
        %(scheduled_at)b::timestamptz[],
        %(attempt)s::smallint[],
        %(error)s::jsonb[],
        %(metadata)s::jsonb[]
    ) WITH ORDINALITY AS t(
        id, seen_attempt, seen_attempted_at, state, finalized_at, scheduled_at, attempt, error,
        metadata, ord
    )
),
locked AS (
    SELECT p.ord,
           j.id,
           j.attempt = p.seen_attempt
             AND j.attempted_at IS NOT DISTINCT FROM p.seen_attempted_at AS same_attempt,
           j.state = 'running' AS is_running,
           j.state = 'running'
             AND p.state IN ('retryable', 'scheduled')
             AND j.metadata ? 'cancel_attempted_at' AS to_cancel
    FROM /* schema */river_job AS j
    JOIN params AS p ON p.id = j.id
    ORDER BY j.id
    FOR UPDATE OF j
)
UPDATE /* schema */river_job AS j
SET state = CASE
        WHEN l.to_cancel THEN 'cancelled'
        WHEN l.is_running THEN p.state::/* schema */river_job_state
        ELSE j.state
    END,
    attempt = CASE
        WHEN l.is_running AND NOT l.to_cancel THEN coalesce(p.attempt, j.attempt)
        ELSE j.attempt
    END,
    errors = CASE
        WHEN l.is_running AND p.error IS NOT NULL THEN array_append(j.errors, p.error)
        ELSE j.errors
    END,
    finalized_at = CASE
        WHEN l.to_cancel THEN now()
        WHEN l.is_running THEN p.finalized_at
        ELSE j.finalized_at
    END,
    scheduled_at = CASE
        WHEN l.is_running AND NOT l.to_cancel AND p.scheduled_at IS NOT NULL THEN p.scheduled_at
        ELSE j.scheduled_at
    END,
    metadata = CASE
        WHEN p.metadata IS NOT NULL THEN j.metadata || p.metadata
        ELSE j.metadata
    END
FROM locked AS l
JOIN params AS p ON p.ord = l.ord
WHERE j.id = l.id AND l.same_attempt
RETURNING /* returning */

-- fragment: job_set_state_returning_state
p.seen_attempt, j.id, j.state::text

-- fragment: job_set_state_returning_row
p.seen_attempt,
j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer

-- name: job_complete_fenced
-- job_complete_tx: complete one job inside the caller's transaction, only if it is still
-- running at the attempt the caller saw (its number and attempted_at, as job_set_state_many).
UPDATE /* schema */river_job
SET state = 'completed',
    finalized_at = coalesce(%(finalized_at)s, now()),
    metadata = CASE
        WHEN %(metadata)s::jsonb IS NULL THEN metadata
        ELSE metadata || %(metadata)s::jsonb
    END
WHERE id = %(id)s
  AND state = 'running'
  AND attempt = %(attempt)s
  AND attempted_at IS NOT DISTINCT FROM %(attempted_at)s::timestamptz
RETURNING
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer

-- name: job_get
SELECT
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer
FROM /* schema */river_job
WHERE id = %(id)s

-- name: job_get_by_kinds
-- The test kit's assertions (river.testing): every job of these kinds, in insertion order.
SELECT
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer
FROM /* schema */river_job
WHERE kind = ANY(%(kinds)s::text[])
ORDER BY id

-- name: job_fetch_by_id
-- The test kit's work_job (river.testing): take exactly this job as job_fetch would (running,
-- attempt + 1), leaving every other job of the database alone.
UPDATE /* schema */river_job
SET state = 'running',
    attempt = attempt + 1,
    attempted_at = now(),
    attempted_by = array_append(attempted_by, %(client_id)s)
WHERE id = %(id)s
RETURNING
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer

-- fragment: job_list
-- The admin job list (river/_admin.py), composed with psycopg.sql: {where} is job_filter_*
-- fragments joined with AND (job_filter_none without filters), {order} a job_order_* fragment.
SELECT
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer
FROM /* schema */river_job
WHERE {where}
ORDER BY {order}
LIMIT %(limit)s

-- fragment: job_delete_many
-- The admin bulk delete (river/_admin.py): up to %(limit)s jobs that are not running and match
-- {where} (job_filter_* fragments joined with AND), in id order; a NULL limit is no limit
-- (LIMIT NULL is LIMIT ALL). Rows locked by someone else (a fetch, a completion) are skipped
-- rather than waited for.
WITH doomed AS (
    SELECT id
    FROM /* schema */river_job
    WHERE state <> 'running' AND {where}
    ORDER BY id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM /* schema */river_job AS j
USING doomed
WHERE j.id = doomed.id
RETURNING
    j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
    j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
    j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer

-- fragment: job_filter_none
true

-- fragment: job_filter_ids
id = ANY(%(ids)s::bigint[])

-- fragment: job_filter_kinds
kind = ANY(%(kinds)s::text[])

-- fragment: job_filter_queues
queue = ANY(%(queues)s::text[])

-- fragment: job_filter_states
-- Compared as the enum, not as text: only then can the indexes leading with state serve it.
state = ANY(%(states)s::/* schema */river_job_state[])

-- fragment: job_filter_priorities
priority = ANY(%(priorities)s::smallint[])

-- fragment: job_filter_tags_all
tags @> %(tags_all)s::varchar(255)[]

-- fragment: job_filter_tags_any
tags && %(tags_any)s::varchar(255)[]

-- fragment: job_filter_metadata
metadata @> %(metadata)s::jsonb

-- fragment: job_filter_after_id
-- Keyset pagination past the cursor's row: {op} is > ascending, < descending.
id {op} %(cursor_id)s

-- fragment: job_filter_after_time
-- Keyset pagination on a time column ({column}), ties broken by id. Nulls sort as +infinity,
-- as Postgres (and so River (Go)) orders them: last ascending, first descending; a cursor row
-- without a value carries the zero time, which the caller sends as 'infinity'.
(coalesce({column}, 'infinity'), id) {op} (%(cursor_time)s::timestamptz, %(cursor_id)s)

-- fragment: job_order_id
id {direction}

-- fragment: job_order_time
-- Matches job_filter_after_time: nulls as +infinity, then id.
coalesce({column}, 'infinity') {direction}, id {direction}

-- name: job_cancel
-- Lock the row; if it is not finalized, mark cancel_attempted_at and, unless it is running,
-- cancel it now. A running row stays running: the client working it cancels the attempt when
-- the control notification, sent here in the same statement (so commit-bound), reaches it.
-- json_build_object renders the payload as River (Go) does: {"action" : "cancel", ...}.
-- Every decision and the row returned unchanged come from `locked`: after waiting for another
-- transaction's lock, FOR UPDATE yields the row as that transaction left it, while a plain read
-- of river_job in this statement would still see the version from before the wait.
WITH locked AS (
    SELECT
        id, kind, queue, state, args, attempt, max_attempts, priority, created_at,
        scheduled_at, attempted_at, finalized_at, attempted_by, errors, metadata, tags,
        unique_key, unique_states
    FROM /* schema */river_job
    WHERE id = %(id)s
    FOR UPDATE
),
updated AS (
    UPDATE /* schema */river_job AS j
    SET state = CASE WHEN l.state = 'running' THEN j.state ELSE 'cancelled' END,
        finalized_at = CASE WHEN l.state = 'running' THEN j.finalized_at ELSE now() END,
        metadata = j.metadata || jsonb_build_object('cancel_attempted_at', %(now)s::text)
    FROM locked AS l
    WHERE j.id = l.id AND l.state NOT IN ('cancelled', 'completed', 'discarded')
    RETURNING
        j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
        j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
        j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer,
        pg_notify(
            coalesce(%(schema)s::text, current_schema()) || '.river_control',
            json_build_object('action', 'cancel', 'job_id', j.id, 'queue', j.queue)::text
        ) AS notified
)
SELECT
    id, kind, queue, state, args, attempt, max_attempts, priority, created_at, scheduled_at,
    attempted_at, finalized_at, attempted_by, errors, metadata, tags, unique_key, unique_states
FROM updated
UNION ALL
SELECT
    l.id, l.kind, l.queue, l.state::text, l.args::text, l.attempt, l.max_attempts,
    l.priority, l.created_at, l.scheduled_at, l.attempted_at, l.finalized_at,
    l.attempted_by, l.errors, l.metadata::text, l.tags, l.unique_key, l.unique_states::integer
FROM locked AS l
WHERE NOT EXISTS (SELECT 1 FROM updated)

-- name: job_retry
-- Unless running, or available and already due: make it available now, keeping attempt and
-- errors; grant one more attempt when it has used them all. A cancel mark
-- (cancel_attempted_at, left by job_cancel) is removed: a retried job is wanted again, and the
-- mark would turn its next failure into a cancellation (job_set_state_many). Not when another
-- job holds the unique key the job would take back (both rows under river_job_unique_idx's
-- predicate: the other in its state, this one as available): the row is returned unchanged,
-- with that job's id and state in the next two columns (NULL otherwise), instead of the update
-- failing on the index and aborting the caller's transaction. The last column says whether
-- the row changed (false: running, already due, or held).
-- Decisions and the unchanged row come from `locked`, the row as it is after any lock wait
-- (see job_cancel).
WITH locked AS (
    SELECT
        id, kind, queue, state, args, attempt, max_attempts, priority, created_at,
        scheduled_at, attempted_at, finalized_at, attempted_by, errors, metadata, tags,
        unique_key, unique_states,
        state <> 'running' AND NOT (state = 'available' AND scheduled_at <= now()) AS retriable
    FROM /* schema */river_job WHERE id = %(id)s FOR UPDATE
),
holder AS (
    SELECT o.id, o.state
    FROM /* schema */river_job AS o
    JOIN locked ON o.unique_key = locked.unique_key
    WHERE o.id <> locked.id
      AND o.unique_states IS NOT NULL
      AND /* schema */river_job_state_in_bitmask(o.unique_states, o.state)
      -- Only when the job itself enters the index as available (a row without unique states
      -- never does).
      AND locked.unique_states IS NOT NULL
      AND /* schema */river_job_state_in_bitmask(locked.unique_states, 'available')
    LIMIT 1
),
updated AS (
    UPDATE /* schema */river_job AS j
    SET state = 'available',
        finalized_at = NULL,
        scheduled_at = now(),
        max_attempts = CASE WHEN j.attempt = j.max_attempts THEN j.max_attempts + 1
                            ELSE j.max_attempts END,
        metadata = j.metadata - 'cancel_attempted_at'
    FROM locked
    WHERE j.id = locked.id
      AND locked.retriable
      AND NOT EXISTS (SELECT 1 FROM holder)
    RETURNING
        j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
        j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
        j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer
)
SELECT *, NULL::bigint, NULL::text, true FROM updated
UNION ALL
SELECT
    l.id, l.kind, l.queue, l.state::text, l.args::text, l.attempt, l.max_attempts,
    l.priority, l.created_at, l.scheduled_at, l.attempted_at, l.finalized_at,
    l.attempted_by, l.errors, l.metadata::text, l.tags, l.unique_key, l.unique_states::integer,
    h.id, h.state::text, false
FROM locked AS l
LEFT JOIN holder AS h ON l.retriable
WHERE NOT EXISTS (SELECT 1 FROM updated)

-- name: job_delete
WITH locked AS (
    SELECT id, state FROM /* schema */river_job WHERE id = %(id)s FOR UPDATE
),
deleted AS (
    DELETE FROM /* schema */river_job AS j
    USING locked AS l
    WHERE j.id = l.id AND l.state <> 'running'
    RETURNING
        j.id, j.kind, j.queue, j.state::text, j.args::text, j.attempt, j.max_attempts,
        j.priority, j.created_at, j.scheduled_at, j.attempted_at, j.finalized_at,
        j.attempted_by, j.errors, j.metadata::text, j.tags, j.unique_key, j.unique_states::integer
)
SELECT (SELECT state::text FROM locked) AS locked_state, d.*
FROM (SELECT 1) AS one
LEFT JOIN deleted AS d ON true

-- name: job_update_metadata
-- Shallow merge into metadata (e.g. {"output": ...}); allowed while the job runs.
UPDATE /* schema */river_job
SET metadata = metadata || %(metadata)s::jsonb
WHERE id = %(id)s
RETURNING
    id, kind, queue, state::text, args::text, attempt, max_attempts,
    priority, created_at, scheduled_at, attempted_at, finalized_at,
    attempted_by, errors, metadata::text, tags, unique_key, unique_states::integer

-- name: job_count_by_queue_and_state
-- Jobs waiting or running per queue, for `river queue list`. state leads
-- river_job_prioritized_fetching_index (state, queue, ...), so the planner can read the four
-- states' index ranges instead of the finalized bulk of the table. Queues without a
-- river_queue row show up here too (jobs inserted for a queue no client works).
SELECT queue, state::text, count(*)
FROM /* schema */river_job
WHERE state IN ('available', 'running', 'retryable', 'scheduled')
GROUP BY queue, state
