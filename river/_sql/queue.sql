-- Queries on river_queue (PROTOCOL.md section 10). Same conventions as job.sql.
-- Row shape: name, created_at, metadata, paused_at, updated_at. The metadata is selected as text
-- and decoded leniently (river/_driver.py decode_queue_json): anyone can write it, and psycopg's
-- jsonb loader raises on an integer of more than 4,300 digits.

-- name: queue_upsert
-- Producer start: create the row, or only bump updated_at (paused_at and metadata are kept).
INSERT INTO /* schema */river_queue AS q (name, created_at, metadata, paused_at, updated_at)
VALUES (%(name)s, now(), '{}', NULL, now())
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING q.name, q.created_at, q.metadata::text, q.paused_at, q.updated_at

-- name: queue_upsert_many
-- The same for many queues at once (client start with many queues, and the keep-alive).
INSERT INTO /* schema */river_queue AS q (name, created_at, metadata, paused_at, updated_at)
SELECT name, now(), '{}', NULL, now()
FROM unnest(%(names)s::text[]) AS name
ON CONFLICT (name) DO UPDATE SET updated_at = now()
RETURNING q.name, q.created_at, q.metadata::text, q.paused_at, q.updated_at

-- name: queue_get
SELECT name, created_at, metadata::text, paused_at, updated_at
FROM /* schema */river_queue
WHERE name = %(name)s

-- name: queue_list
SELECT name, created_at, metadata::text, paused_at, updated_at
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
-- Replaces the application's metadata (when %(metadata)s is not null) and patches the
-- cluster-wide settings override under the key river_py.settings (river/_queue_override.py):
-- %(patch)s maps each changed field to its value, or to null to clear it. The river_py key is
-- kept across a metadata replacement and dropped once nothing is left in it. The caller sends
-- the metadata_changed notification (compact JSON, as River (Go) sends it) in the same
-- transaction.
WITH current AS (
    -- A metadata that is not an object (null, written by hand) reads as empty, as the
    -- library decodes it.
    SELECT name,
           CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata ELSE '{}'::jsonb END
               AS metadata
    FROM /* schema */river_queue
    WHERE name = %(name)s
    FOR UPDATE
),
ours AS (
    SELECT c.name,
           coalesce(%(metadata)s::jsonb, c.metadata) - 'river_py' AS base,
           CASE WHEN jsonb_typeof(c.metadata -> 'river_py') = 'object'
                THEN c.metadata -> 'river_py' ELSE '{}'::jsonb END AS river_py
    FROM current AS c
),
merged AS (
    SELECT o.name, o.base, o.river_py - 'settings' AS rest,
           jsonb_strip_nulls(
               CASE WHEN jsonb_typeof(o.river_py -> 'settings') = 'object'
                    THEN o.river_py -> 'settings' ELSE '{}'::jsonb END
               || %(patch)s::jsonb
           ) AS settings
    FROM ours AS o
)
UPDATE /* schema */river_queue AS q
SET metadata = m.base || CASE
        WHEN m.settings = '{}'::jsonb AND m.rest = '{}'::jsonb THEN '{}'::jsonb
        WHEN m.settings = '{}'::jsonb THEN jsonb_build_object('river_py', m.rest)
        ELSE jsonb_build_object('river_py', m.rest || jsonb_build_object('settings', m.settings))
    END,
    updated_at = now()
FROM merged AS m
WHERE q.name = m.name
RETURNING q.name, q.created_at, q.metadata::text, q.paused_at, q.updated_at

-- name: queue_poll_due
-- The poller's one query per tick for all of a client's due queues (river/_poller.py): whether
-- each is paused, and, for those whose producer wants it (probe), whether a due job waits.
-- The EXISTS probe is skipped for busy queues, whose index range is full of entries of rows
-- just fetched or completed: probing thousands of them took seconds per tick.
SELECT q.name, rq.paused_at IS NOT NULL,
       (rq.metadata #> '{river_py,settings}')::text,
       CASE WHEN q.probe THEN EXISTS (
           SELECT 1 FROM /* schema */river_job AS j
           WHERE j.state = 'available' AND j.queue = q.name AND j.scheduled_at <= now()
       ) ELSE false END
FROM unnest(%(names)s::text[], %(probe)s::boolean[]) AS q(name, probe)
LEFT JOIN /* schema */river_queue AS rq ON rq.name = q.name
