-- The tenant directory (write side): every node's stable id, current code, kind and
-- materialised path of ancestor ids. It is updated in the same transaction as the Node
-- events (an inline projection) because authorisation and row-level security depend on
-- it: a scope must never lag behind a move.
--
-- Paths are '/'-joined node ids ('/<county>/<street>/<community>/'), stable when codes are
-- reissued. With COLLATE "C", a subtree is the btree range [path, path with its last '/'
-- replaced by '0'), since '0' is the byte after '/'.

CREATE TABLE nodes (
    id          uuid        PRIMARY KEY,
    root_id     uuid        NOT NULL,
    code        text        NOT NULL,
    name        text        NOT NULL,
    kind        text        NOT NULL,
    parent_id   uuid        REFERENCES nodes (id),
    path        text        COLLATE "C" NOT NULL,
    depth       integer     NOT NULL,
    closed      boolean     NOT NULL DEFAULT false,
    version     integer     NOT NULL,
    CONSTRAINT nodes_code UNIQUE (code),
    CONSTRAINT nodes_path UNIQUE (path)
);
CREATE INDEX nodes_root_path ON nodes (root_id, path);

-- Former codes of a node: they keep resolving after the statistics bureau reissues codes.
CREATE TABLE node_aliases (
    code        text        PRIMARY KEY,
    node_id     uuid        NOT NULL REFERENCES nodes (id),
    root_id     uuid        NOT NULL,
    retired_at  timestamptz NOT NULL
);

-- Nodes that take part in a stream living elsewhere (a unit assigned an issue, a unit
-- responsible for a finding, the unit side of a pairing). Unit principals see those streams.
CREATE TABLE stream_parties (
    root_id     uuid NOT NULL,
    node_id     uuid NOT NULL,
    stream_id   uuid NOT NULL,
    role        text NOT NULL,
    PRIMARY KEY (root_id, node_id, stream_id, role)
);
CREATE INDEX stream_parties_stream ON stream_parties (stream_id);

-- The scope of the current transaction, set by the application with set_config(..., true).
CREATE FUNCTION civic_scope_root() RETURNS uuid LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('civic.root', true), '')::uuid
$$;

CREATE FUNCTION civic_scope_nodes() RETURNS SETOF uuid LANGUAGE sql STABLE AS $$
    SELECT n.id FROM nodes n
    WHERE n.root_id = civic_scope_root()
      AND n.path >= current_setting('civic.scope_lo', true)
      AND n.path <  current_setting('civic.scope_hi', true)
$$;

-- Streams naming a node of the scope, visible only when the principal is a unit.
CREATE FUNCTION civic_party_streams() RETURNS SETOF uuid LANGUAGE sql STABLE AS $$
    SELECT p.stream_id FROM stream_parties p
    WHERE current_setting('civic.unit', true) = '1'
      AND p.root_id = civic_scope_root()
      AND p.node_id IN (SELECT civic_scope_nodes())
$$;

-- Row-level security. The runtime role civic_app owns nothing and cannot bypass RLS; the
-- application switches to it at the start of every request transaction.
ALTER TABLE nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE node_aliases ENABLE ROW LEVEL SECURITY;
ALTER TABLE stream_parties ENABLE ROW LEVEL SECURITY;
ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE chain_heads ENABLE ROW LEVEL SECURITY;

-- The directory is readable within the root tenant (an issue may be assigned to a unit
-- outside the caller's subtree but inside its root); subtree checks happen on top.
CREATE POLICY nodes_in_root ON nodes
    USING (root_id = civic_scope_root()) WITH CHECK (root_id = civic_scope_root());
CREATE POLICY aliases_in_root ON node_aliases
    USING (root_id = civic_scope_root()) WITH CHECK (root_id = civic_scope_root());
CREATE POLICY parties_in_root ON stream_parties
    USING (root_id = civic_scope_root()) WITH CHECK (root_id = civic_scope_root());
CREATE POLICY heads_in_root ON chain_heads
    USING (root_id = civic_scope_root()) WITH CHECK (root_id = civic_scope_root());

CREATE POLICY events_in_scope ON events
    USING (
        root_id = civic_scope_root()
        AND (node_id IN (SELECT civic_scope_nodes()) OR stream_id IN (SELECT civic_party_streams()))
    )
    WITH CHECK (
        root_id = civic_scope_root()
        AND (node_id IN (SELECT civic_scope_nodes()) OR stream_id IN (SELECT civic_party_streams()))
    );

REVOKE ALL ON nodes, node_aliases, stream_parties FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON nodes TO civic_app;
GRANT SELECT, INSERT ON node_aliases TO civic_app;
GRANT SELECT, INSERT ON stream_parties TO civic_app;

-- Enter a principal's scope: resolve its node code (current or former) and set the
-- transaction's scope. Runs with the owner's rights so it can read the directory before
-- any scope is set; the caller has already switched to civic_app for everything after.
CREATE FUNCTION civic_enter_scope(p_code text)
RETURNS TABLE (node_id uuid, root_id uuid, code text, kind text, path text, closed boolean)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public AS $$
DECLARE
    r record;
BEGIN
    SELECT n.id, n.root_id, n.code, n.kind, n.path, n.closed INTO r
    FROM nodes n
    WHERE n.code = p_code
       OR n.id = (SELECT a.node_id FROM node_aliases a WHERE a.code = p_code)
    LIMIT 1;
    IF NOT FOUND OR r.closed THEN
        RETURN;
    END IF;
    PERFORM set_config('civic.root', r.root_id::text, true),
            set_config('civic.scope_lo', r.path, true),
            set_config('civic.scope_hi', left(r.path, -1) || '0', true),
            set_config('civic.unit', CASE WHEN r.kind = 'unit' THEN '1' ELSE '0' END, true);
    RETURN QUERY SELECT r.id, r.root_id, r.code, r.kind, r.path, r.closed;
END $$;
REVOKE ALL ON FUNCTION civic_enter_scope(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION civic_enter_scope(text) TO civic_app;
