-- Each projection's position, written in the same transaction as its read-model rows.
CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    error       text
);
GRANT SELECT ON projection_checkpoints TO civic_app;
