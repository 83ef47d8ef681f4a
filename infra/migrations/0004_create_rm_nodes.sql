-- Read model of the hierarchy for GET /v1/nodes (projection "nodes").
CREATE TABLE rm_nodes (
    id            uuid        PRIMARY KEY,
    root_id       uuid        NOT NULL,
    code          text        NOT NULL,
    name          text        NOT NULL,
    kind          text        NOT NULL,
    parent_id     uuid,
    path          text        COLLATE "C" NOT NULL,
    former_codes  text[]      NOT NULL DEFAULT '{}',
    closed        boolean     NOT NULL DEFAULT false,
    version       integer     NOT NULL,
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX rm_nodes_root_path ON rm_nodes (root_id, path);
CREATE INDEX rm_nodes_parent ON rm_nodes (parent_id);

ALTER TABLE rm_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_nodes_in_scope ON rm_nodes
    USING (root_id = civic_scope_root() AND id IN (SELECT civic_scope_nodes()));
REVOKE ALL ON rm_nodes FROM PUBLIC;
GRANT SELECT ON rm_nodes TO civic_app;
