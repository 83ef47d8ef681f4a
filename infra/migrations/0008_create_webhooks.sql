-- Integration: webhook subscriptions, their deliveries (dead letters included) and the
-- cursors of relays (NATS JetStream).
--
-- The events table is the transactional outbox: events are written in their command's
-- transaction, and each subscription or relay keeps a cursor (a feed position) into it.
-- A subscription's worker reads settled events after its cursor in the subscription's
-- scope (a scoped transaction, so row-level security decides what it may see), delivers
-- them in position order and moves the cursor in the same transaction that records the
-- delivery.

-- Feeds and workers read one root tenant's events in position order.
CREATE INDEX IF NOT EXISTS events_root_position ON events (root_id, position);

CREATE TABLE webhook_subscriptions (
    id                 uuid        PRIMARY KEY,
    root_id            uuid        NOT NULL,
    -- the scope node: the subscription sees that node's subtree (the creator's scope)
    node_id            uuid        NOT NULL,
    url                text        NOT NULL,
    -- the HMAC key; the runtime role may write it but never read it (column grants below)
    secret             text        NOT NULL,
    -- contract names to deliver (IssueReported, ...); empty = every type
    types              text[]      NOT NULL DEFAULT '{}',
    -- the cursor: every event at or below it was delivered, dead-lettered or filtered out
    position           bigint      NOT NULL,
    status             text        NOT NULL DEFAULT 'active',
    created_by         text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    delivered_count    bigint      NOT NULL DEFAULT 0,
    last_delivered_at  timestamptz,
    last_error         text,
    last_error_at      timestamptz,
    CONSTRAINT webhook_subscriptions_status CHECK (status IN ('active', 'deleted')),
    CONSTRAINT webhook_subscriptions_url CHECK (url ~ '^https?://')
);
CREATE INDEX webhook_subscriptions_scope ON webhook_subscriptions (root_id, node_id);
CREATE INDEX webhook_subscriptions_active ON webhook_subscriptions (id) WHERE status = 'active';

-- One row per (subscription, event) that was attempted: delivered, retrying, dead
-- (the dead letters) or queued (a dead letter an admin re-drove).
CREATE TABLE webhook_deliveries (
    subscription_id  uuid        NOT NULL REFERENCES webhook_subscriptions (id),
    position         bigint      NOT NULL,
    root_id          uuid        NOT NULL,
    -- the subscription's scope node (row-level security follows the subscription)
    node_id          uuid        NOT NULL,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    status           text        NOT NULL,
    -- attempts in the current round (a re-drive starts a new round)
    attempts         integer     NOT NULL DEFAULT 0,
    total_attempts   integer     NOT NULL DEFAULT 0,
    redrives         integer     NOT NULL DEFAULT 0,
    last_status      integer,
    last_error       text,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    next_attempt_at  timestamptz,
    delivered_at     timestamptz,
    dead_at          timestamptz,
    PRIMARY KEY (subscription_id, position),
    CONSTRAINT webhook_deliveries_status
        CHECK (status IN ('retrying', 'delivered', 'dead', 'queued'))
);
CREATE INDEX webhook_deliveries_by_status ON webhook_deliveries (subscription_id, status, position);

ALTER TABLE webhook_subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_subscriptions_in_scope ON webhook_subscriptions
    USING (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()))
    WITH CHECK (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));

ALTER TABLE webhook_deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY webhook_deliveries_in_scope ON webhook_deliveries
    USING (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()))
    WITH CHECK (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));

REVOKE ALL ON webhook_subscriptions, webhook_deliveries FROM PUBLIC;
-- Every column but the secret is readable by the runtime role; the secret is write-only.
GRANT SELECT (id, root_id, node_id, url, types, position, status, created_by, created_at,
              updated_at, deleted_at, delivered_count, last_delivered_at, last_error,
              last_error_at)
    ON webhook_subscriptions TO civic_app;
GRANT INSERT ON webhook_subscriptions TO civic_app;
GRANT UPDATE (status, updated_at, deleted_at) ON webhook_subscriptions TO civic_app;
GRANT SELECT ON webhook_deliveries TO civic_app;
GRANT UPDATE (status, attempts, redrives, next_attempt_at) ON webhook_deliveries TO civic_app;

-- Cursors of relays that publish every tenant's events (run by the system, not by users).
CREATE TABLE relay_cursors (
    name        text        PRIMARY KEY,
    position    bigint      NOT NULL DEFAULT 0,
    published   bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    error       text
);
REVOKE ALL ON relay_cursors FROM PUBLIC;
