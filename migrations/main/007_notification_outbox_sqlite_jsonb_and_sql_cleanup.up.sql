-- A notification outbox for drivers without LISTEN/NOTIFY (SQLite). Postgres clients never use
-- it, but the table belongs to the schema version and must exist.
CREATE TABLE /* schema */river_notification (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    payload text NOT NULL,
    topic text NOT NULL,
    CONSTRAINT topic_length CHECK (length(topic) > 0 AND length(topic) < 128)
);

CREATE INDEX river_notification_created_at_idx ON /* schema */river_notification
    USING btree (created_at);

CREATE INDEX river_notification_topic_id_idx ON /* schema */river_notification
    USING btree (topic, id);

-- Never used (see version 5). The queue table references the client table, so it goes first.
DROP TABLE IF EXISTS /* schema */river_client_queue;
DROP TABLE IF EXISTS /* schema */river_client;

-- Defaults that let plain SQL inserts omit these columns.
ALTER TABLE /* schema */river_job ALTER COLUMN max_attempts SET DEFAULT 25;
ALTER TABLE /* schema */river_queue ALTER COLUMN updated_at SET DEFAULT CURRENT_TIMESTAMP;
