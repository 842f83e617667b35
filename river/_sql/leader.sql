-- Leader election on river_leader (PROTOCOL.md section 8). At most one row, name 'default'.
-- A term is (leader_id, elected_at): a client restarting with the same id does not inherit its
-- old term. Every comparison uses the database clock.

-- name: leader_delete_expired
DELETE FROM /* schema */river_leader WHERE expires_at < now()

-- name: leader_insert
-- Run after leader_delete_expired in the same transaction; elected iff a row comes back.
INSERT INTO /* schema */river_leader (leader_id, elected_at, expires_at)
VALUES (%(leader_id)s, now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO NOTHING
RETURNING elected_at, expires_at

-- name: leader_reelect
-- Extend this exact term, only while it has not expired; still leader iff a row comes back.
UPDATE /* schema */river_leader
SET expires_at = now() + make_interval(secs => %(ttl)s)
WHERE leader_id = %(leader_id)s
  AND elected_at = %(elected_at)s
  AND expires_at >= now()
RETURNING elected_at, expires_at

-- name: leader_resign
-- Lock this exact term, announce the resignation on <schema>.river_leadership (the payload as
-- River (Go) builds it: {"leader_id" : "...", "action" : "resigned"}) and delete the row, in one
-- statement. Nothing happens when the term is not current.
WITH term AS (
    SELECT leader_id, elected_at
    FROM /* schema */river_leader
    WHERE leader_id = %(leader_id)s AND elected_at = %(elected_at)s
    FOR UPDATE
),
announced AS (
    SELECT count(pg_notify(
        coalesce(%(schema)s::text, current_schema()) || '.river_leadership',
        json_build_object('leader_id', leader_id, 'action', 'resigned')::text
    )) AS n
    FROM term
)
DELETE FROM /* schema */river_leader AS l
USING term, announced
WHERE l.leader_id = term.leader_id AND l.elected_at = term.elected_at
RETURNING l.leader_id

-- name: leader_get
SELECT leader_id, elected_at, expires_at FROM /* schema */river_leader
