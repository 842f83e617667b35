-- Session settings of the connections a client opens itself (never a caller's pool or
-- connection).

-- name: session_timezone_utc
-- Timestamps come back in UTC. psycopg builds a datetime for a timestamptz column cheaply only
-- when the session's TimeZone is exactly 'UTC'; any other name ('Etc/UTC' included, the default
-- of many servers) costs a time zone conversion per value: ~0.7 us each, a quarter of the
-- client's cost of decoding a fetched job. The values themselves do not change.
SET TimeZone TO 'UTC'

-- name: schema_exists
-- Whether a schema exists (Django's migrations create RIVER["SCHEMA"] when it does not, and
-- its system checks report it missing). Looked up rather than relying on CREATE SCHEMA IF NOT
-- EXISTS alone, which needs the CREATE privilege on the database even when the schema exists.
SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %(schema)s::text)

-- fragment: schema_create
-- {schema}: the schema's name as an identifier.
CREATE SCHEMA IF NOT EXISTS {schema}
