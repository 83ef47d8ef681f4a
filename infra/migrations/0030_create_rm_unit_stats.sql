-- Each county unit's record (考核, projection "unit_stats"): per unit node, cumulative daily
-- figures of the work that names it wherever it lives — its pairings, the issues assigned to
-- it, the findings it is responsible for, its in-service members (home unit) — so "now", "as
-- of a day" and a daily series are index look-ups whatever the number of events (the same
-- layout as rm_stats_daily, 0014). Every key starts with root_id (the tenant).

CREATE TABLE rm_unit_stats_daily (
    root_id                uuid   NOT NULL,
    node_id                uuid   NOT NULL,  -- the unit
    day                    date   NOT NULL,
    pairings_active        bigint NOT NULL DEFAULT 0,
    commitments            bigint NOT NULL DEFAULT 0,
    commitments_fulfilled  bigint NOT NULL DEFAULT 0,
    members_registered     bigint NOT NULL DEFAULT 0,
    service_hours_centi    bigint NOT NULL DEFAULT 0,  -- hundredths of an hour (exact sums)
    points                 bigint NOT NULL DEFAULT 0,
    issues_assigned        bigint NOT NULL DEFAULT 0,  -- assignments received (a flow)
    issues_open            bigint NOT NULL DEFAULT 0,  -- now its assignee, not closed
    issues_closed          bigint NOT NULL DEFAULT 0,  -- closed while its assignee
    issues_overdue         bigint NOT NULL DEFAULT 0,
    issues_returned        bigint NOT NULL DEFAULT 0,  -- returns it made (a flow)
    issues_on_time         bigint NOT NULL DEFAULT 0,
    issues_evaluated       bigint NOT NULL DEFAULT 0,
    issues_satisfied       bigint NOT NULL DEFAULT 0,
    issues_resolved        bigint NOT NULL DEFAULT 0,
    findings_total         bigint NOT NULL DEFAULT 0,
    findings_verified      bigint NOT NULL DEFAULT 0,
    findings_overdue       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (root_id, node_id, day)
);

-- Per pairing, member, issue and finding: the unit it counts for (NULL: none yet, e.g. an
-- issue not assigned), bit flags and the deadline in force (see projections/unit_stats.py).
CREATE TABLE rm_unit_stats_aggregates (
    root_id   uuid     NOT NULL,
    id        uuid     NOT NULL,
    node_id   uuid,
    kind      text     NOT NULL,
    flags     smallint NOT NULL DEFAULT 0,
    due_at    timestamptz,
    version   integer  NOT NULL,
    PRIMARY KEY (root_id, id)
);

ALTER TABLE rm_unit_stats_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_unit_stats_daily_in_scope ON rm_unit_stats_daily USING (
    root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));
ALTER TABLE rm_unit_stats_aggregates ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_unit_stats_aggregates_in_scope ON rm_unit_stats_aggregates USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));

REVOKE ALL ON rm_unit_stats_daily, rm_unit_stats_aggregates FROM PUBLIC;
GRANT SELECT ON rm_unit_stats_daily, rm_unit_stats_aggregates TO civic_app;
