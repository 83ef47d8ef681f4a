-- Roll-ups up the hierarchy (projection "stats"): indicators per node over its whole
-- subtree, as cumulative daily snapshots, so "now", "as of a day" and a daily series are
-- each a handful of index look-ups whatever the number of events.
--
-- Every key starts with root_id (the tenant; the distribution column on Citus).

-- The tree as the projection has replayed it (never the live directory: a replay must see
-- the tree as it stood when each event happened). path = '/<root id>/.../<node id>/'.
CREATE TABLE rm_stats_nodes (
    root_id    uuid NOT NULL,
    node_id    uuid NOT NULL,
    parent_id  uuid,
    path       text COLLATE "C" NOT NULL,
    code       text NOT NULL,
    name       text NOT NULL,
    kind       text NOT NULL,
    version    integer NOT NULL,
    PRIMARY KEY (root_id, node_id)
);
CREATE INDEX rm_stats_nodes_path ON rm_stats_nodes (root_id, path);

-- Each node's parent from a China-local day on (registration, then every move; the last
-- move of a day wins). The children of a node as of a day come from here.
CREATE TABLE rm_stats_node_parents (
    root_id    uuid NOT NULL,
    node_id    uuid NOT NULL,
    from_day   date NOT NULL,
    parent_id  uuid,
    PRIMARY KEY (root_id, node_id, from_day)
);
CREATE INDEX rm_stats_node_parents_parent ON rm_stats_node_parents (root_id, parent_id, from_day);

-- Cumulative figures of a node's subtree at the end of each China-local day on which they
-- changed. A day without a row carries the previous row's figures forward. Rates are not
-- stored: they are computed from these counters when read.
CREATE TABLE rm_stats_daily (
    root_id                uuid   NOT NULL,
    node_id                uuid   NOT NULL,
    day                    date   NOT NULL,
    pairings_active        bigint NOT NULL DEFAULT 0,
    commitments            bigint NOT NULL DEFAULT 0,
    commitments_fulfilled  bigint NOT NULL DEFAULT 0,
    members_registered     bigint NOT NULL DEFAULT 0,
    service_hours_centi    bigint NOT NULL DEFAULT 0,  -- hundredths of an hour (exact sums)
    points                 bigint NOT NULL DEFAULT 0,
    issues_reported        bigint NOT NULL DEFAULT 0,
    issues_closed          bigint NOT NULL DEFAULT 0,
    issues_overdue         bigint NOT NULL DEFAULT 0,
    issues_on_time         bigint NOT NULL DEFAULT 0,
    issues_evaluated       bigint NOT NULL DEFAULT 0,
    issues_satisfied       bigint NOT NULL DEFAULT 0,
    issues_resolved        bigint NOT NULL DEFAULT 0,
    findings_total         bigint NOT NULL DEFAULT 0,
    findings_verified      bigint NOT NULL DEFAULT 0,
    findings_overdue       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (root_id, node_id, day)
);

-- What the projection must remember of each pairing, member, issue and finding to turn its
-- next event into deltas: the node it counts under, bit flags (see projections/stats.py:
-- active, overdue, closed, verified, resolved on time) and the deadline in force.
CREATE TABLE rm_stats_aggregates (
    root_id   uuid     NOT NULL,
    id        uuid     NOT NULL,
    node_id   uuid     NOT NULL,
    kind      text     NOT NULL,
    flags     smallint NOT NULL DEFAULT 0,
    due_at    timestamptz,
    version   integer  NOT NULL,
    PRIMARY KEY (root_id, id)
);

-- The two tree tables mirror the directory (`nodes`), which is readable within the root
-- tenant by design (0002): the same policy, so that listing a node's children costs no
-- subtree look-up; the application only lists children of a node in the caller's scope.
ALTER TABLE rm_stats_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_stats_nodes_in_root ON rm_stats_nodes USING (root_id = civic_scope_root());
ALTER TABLE rm_stats_node_parents ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_stats_node_parents_in_root ON rm_stats_node_parents
    USING (root_id = civic_scope_root());
-- The figures: the standard policy of read models.
ALTER TABLE rm_stats_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_stats_daily_in_scope ON rm_stats_daily USING (
    root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));
ALTER TABLE rm_stats_aggregates ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_stats_aggregates_in_scope ON rm_stats_aggregates USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));

REVOKE ALL ON rm_stats_nodes, rm_stats_node_parents, rm_stats_daily, rm_stats_aggregates
    FROM PUBLIC;
GRANT SELECT ON rm_stats_nodes, rm_stats_node_parents, rm_stats_daily, rm_stats_aggregates
    TO civic_app;
