-- Statements of the notifier's dedicated LISTEN connection (river/_notifier.py). No table: the
-- channels are <schema>.<topic>, with the schema that unqualified names resolve to when none is
-- configured (as River (Go) names them).

-- name: notifier_current_schema
SELECT current_schema()

-- fragment: notifier_listen
-- {channel}: psycopg.sql.Identifier of "<schema>.<topic>" (one identifier, dot included).
LISTEN {channel}

-- fragment: notifier_unlisten
UNLISTEN {channel}

-- name: notifier_probe
-- Liveness probe after a quiet spell: any round trip proves the connection (and so the
-- LISTEN registrations, which live and die with it) is still there.
SELECT 1
