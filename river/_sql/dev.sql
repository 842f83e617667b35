-- Statements of river.dev (the embedded development server) on the server's catalog, run on
-- the maintenance database "postgres" before River's schema exists anywhere.

-- name: dev_database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- fragment: dev_database_create
-- {database}: psycopg.sql.Identifier. CREATE DATABASE cannot run in a transaction block.
CREATE DATABASE {database}
