-- Read models of the 五单 volunteer-service loop (projection "service_orders"): the offers
-- units and members publish (亮单) and the orders residents place (点单 → 派单 → 接单 → 评单).
-- node_id is the community; a unit principal sees the offers it publishes and the orders
-- dispatched to it (or to one of its members) through stream_parties.
CREATE TABLE rm_service_offers (
    root_id        uuid        NOT NULL,
    id             uuid        NOT NULL,
    node_id        uuid        NOT NULL,
    community_code text        NOT NULL,
    provider_id    uuid,
    provider_code  text,
    member_id      uuid,
    title          text        NOT NULL,
    category       text        NOT NULL,
    offered_at     timestamptz NOT NULL,
    version        integer     NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_service_offers_node ON rm_service_offers (root_id, node_id);
CREATE INDEX rm_service_offers_list ON rm_service_offers (root_id, offered_at DESC, id DESC);

CREATE TABLE rm_service_orders (
    root_id         uuid        NOT NULL,
    id              uuid        NOT NULL,
    node_id         uuid        NOT NULL,
    community_code  text        NOT NULL,
    title           text        NOT NULL,
    description     text        NOT NULL,
    offer_id        uuid,
    due_on          date,
    status          text        NOT NULL,
    member_id       uuid,
    unit_id         uuid,
    unit_code       text,
    accept_by       timestamptz,
    -- ServiceOverdue recorded for the current dispatch (a new dispatch clears it)
    overdue         boolean     NOT NULL DEFAULT false,
    dispatch_count  integer     NOT NULL DEFAULT 0,
    summary         text,
    hours           numeric(6, 2),
    rating          smallint,
    comment         text,
    points_awarded  integer     NOT NULL DEFAULT 0,
    cancel_reason   text,
    requested_at    timestamptz NOT NULL,
    dispatched_at   timestamptz,
    accepted_at     timestamptz,
    completed_at    timestamptz,
    evaluated_at    timestamptz,
    cancelled_at    timestamptz,
    version         integer     NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_service_orders_node ON rm_service_orders (root_id, node_id);
CREATE INDEX rm_service_orders_list ON rm_service_orders (root_id, requested_at DESC, id DESC);
-- What the accept-deadline clock looks for (across tenants).
CREATE INDEX rm_service_orders_accept_due ON rm_service_orders (accept_by)
    WHERE status = 'dispatched' AND NOT overdue;

ALTER TABLE rm_service_offers ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_service_offers_in_scope ON rm_service_offers USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
ALTER TABLE rm_service_orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_service_orders_in_scope ON rm_service_orders USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_service_offers, rm_service_orders FROM PUBLIC;
GRANT SELECT ON rm_service_offers, rm_service_orders TO civic_app;
