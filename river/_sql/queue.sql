-- Queries on river_queue (PROTOCOL.md section 10). Same conventions as job.sql.
-- Row shape: name, created_at, metadata, paused_at, updated_at

-- name: queue_upsert
-- Producer start: create the row, or only bump updated_at (paused_at and metadata are kept).
INSERT INTO /* schema */river_queue AS q (name, created_at, metadata, paused_at, updated_at)
VALUES (%(name)s, now(), '{}', NULL, now())
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING q.name, q.created_at, q.metadata, q.paused_at, q.updated_at

-- name: queue_upsert_many
-- The same for many queues at once (client start with many queues, and the keep-alive).
INSERT INTO /* schema */river_queue AS q (name, created_at, metadata, paused_at, updated_at)
SELECT name, now(), '{}', NULL, now()
FROM unnest(%(names)s::text[]) AS name
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING q.name, q.created_at, q.metadata, q.paused_at, q.updated_at

-- name: queue_get
SELECT name, created_at, metadata, paused_at, updated_at
FROM /* schema */river_queue
WHERE name = %(name)s

-- name: queue_list
SELECT name, created_at, metadata, paused_at, updated_at
FROM /* schema */river_queue
ORDER BY name
LIMIT %(limit)s

-- name: queue_paused_many
-- Poll-only mode and fallback: which of these queues are paused.
SELECT name
FROM /* schema */river_queue
WHERE name = ANY(%(names)s::text[]) AND paused_at IS NOT NULL

-- name: queue_pause
-- Pause one queue (or every queue with name "*"): rows not yet paused get paused_at = now.
-- Returns one row per matching queue (paused now or already) so the caller can tell a missing
-- queue apart; the pause notification is sent in the same statement (commit-bound).
WITH target AS (
    SELECT name, paused_at
    FROM /* schema */river_queue
    WHERE name = %(name)s OR %(name)s = '*'
    FOR UPDATE
),
updated AS (
    UPDATE /* schema */river_queue AS q
    SET paused_at = now(), updated_at = now()
    FROM target AS t
    WHERE q.name = t.name AND t.paused_at IS NULL
    RETURNING q.name
)
SELECT t.name,
       (SELECT count(pg_notify(
            coalesce(%(schema)s::text, current_schema()) || '.river_control',
            %(payload)s::text
        )) FROM (SELECT 1 WHERE EXISTS (SELECT 1 FROM target)) AS once) AS notified
FROM target AS t

-- name: queue_resume
WITH target AS (
    SELECT name, paused_at
    FROM /* schema */river_queue
    WHERE name = %(name)s OR %(name)s = '*'
    FOR UPDATE
),
updated AS (
    UPDATE /* schema */river_queue AS q
    SET paused_at = NULL, updated_at = now()
    FROM target AS t
    WHERE q.name = t.name AND t.paused_at IS NOT NULL
    RETURNING q.name
)
SELECT t.name,
       (SELECT count(pg_notify(
            coalesce(%(schema)s::text, current_schema()) || '.river_control',
            %(payload)s::text
        )) FROM (SELECT 1 WHERE EXISTS (SELECT 1 FROM target)) AS once) AS notified
FROM target AS t

-- name: queue_update_metadata
-- The payload (built by the caller, compact as River (Go) sends it) is sent only when a row
-- was updated.
WITH updated AS (
    UPDATE /* schema */river_queue
    SET metadata = %(metadata)s::jsonb, updated_at = now()
    WHERE name = %(name)s
    RETURNING name, created_at, metadata, paused_at, updated_at
)
SELECT u.*,
       (SELECT count(pg_notify(
            coalesce(%(schema)s::text, current_schema()) || '.river_control',
            %(payload)s::text
        ))) AS notified
FROM updated AS u

-- name: queue_poll_due
-- The poller's one query per tick for all of a client's due queues (river/_poller.py): whether
-- each is paused, and, for those whose producer wants it (probe), whether a due job waits.
-- The EXISTS probe is skipped for busy queues, whose index range is full of entries of rows
-- just fetched or completed: probing thousands of them took seconds per tick.
SELECT q.name, rq.paused_at IS NOT NULL,
       CASE WHEN q.probe THEN EXISTS (
           SELECT 1 FROM /* schema */river_job AS j
           WHERE j.state = 'available' AND j.queue = q.name AND j.scheduled_at <= now()
       ) ELSE false END
FROM unnest(%(names)s::text[], %(probe)s::boolean[]) AS q(name, probe)
LEFT JOIN /* schema */river_queue AS rq ON rq.name = q.name
