-- Session settings of the connections a client opens itself (never a caller's pool or
-- connection).

-- name: session_timezone_utc
-- Timestamps come back in UTC. psycopg builds a datetime for a timestamptz column cheaply only
-- when the session's TimeZone is exactly 'UTC'; any other name ('Etc/UTC' included, the default
-- of many servers) costs a time zone conversion per value: ~0.7 us each, a quarter of the
-- client's cost of decoding a fetched job. The values themselves do not change.
SET TimeZone TO 'UTC'
