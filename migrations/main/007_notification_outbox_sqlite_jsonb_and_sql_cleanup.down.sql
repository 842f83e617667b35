CREATE UNLOGGED TABLE /* schema */river_client (
    id text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL
);

CREATE UNLOGGED TABLE /* schema */river_client_queue (
    river_client_id text NOT NULL REFERENCES /* schema */river_client (id) ON DELETE CASCADE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    metadata jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (river_client_id, name)
);

ALTER TABLE /* schema */river_job ALTER COLUMN max_attempts DROP DEFAULT;
ALTER TABLE /* schema */river_queue ALTER COLUMN updated_at DROP DEFAULT;

DROP TABLE /* schema */river_notification;
