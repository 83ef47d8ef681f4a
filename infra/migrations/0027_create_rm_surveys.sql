-- Read model of household surveys (扫楼 / 入户走访; projection "surveys"): one row per visit.
-- node_id is the grid or community visited at; community_id the community it belongs to.
-- note is the HouseholdVisited event's personal-data field exactly as stored (sealed under
-- the survey's key in person_keys; NULL when none was given or once erased): only
-- services/personal_data_view.py interprets it.
CREATE TABLE rm_surveys (
    root_id       uuid        NOT NULL,
    id            uuid        NOT NULL,
    node_id       uuid        NOT NULL,
    node_code     text        NOT NULL,
    community_id  uuid        NOT NULL,
    building      text        NOT NULL,
    room          text        NOT NULL,
    visited_on    date        NOT NULL,
    residents     integer,
    flags         text[]      NOT NULL DEFAULT '{}',
    note          jsonb,
    issue_id      uuid,
    status        text        NOT NULL,
    visited_at    timestamptz NOT NULL,
    version       integer     NOT NULL,
    updated_at    timestamptz NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_surveys_node ON rm_surveys (root_id, node_id, visited_on);
CREATE INDEX rm_surveys_list ON rm_surveys (root_id, visited_at DESC, id DESC);

ALTER TABLE rm_surveys ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_surveys_in_scope ON rm_surveys USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_surveys FROM PUBLIC;
GRANT SELECT ON rm_surveys TO civic_app;
