-- The per-root transparency tree (RFC 6962 Merkle tree over each root's events in position
-- order), beside the per-node chains; see civic_verify/tlog.py for the hashing.
--
-- It is built outside the append transaction by the audit-tree projection (it reads the
-- gap-free settled horizon like every projection), so appends pay nothing for it. Stored:
-- every leaf (with the position of its event), every complete subtree of two leaves or
-- more (fixed once its last leaf is in), and per root the frontier (the complete subtrees
-- of the binary decomposition of the size): appending is O(1) amortised, and any inclusion
-- or consistency proof, for any earlier size, reads O(log n) stored hashes.
CREATE TABLE audit_trees (
    root_id         uuid        PRIMARY KEY,
    size            bigint      NOT NULL,
    root_hash       bytea       NOT NULL,
    frontier        bytea[]     NOT NULL,   -- complete subtrees of size's decomposition, largest first
    hash_algorithm  text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_tree_leaves (
    root_id   uuid    NOT NULL,
    idx       bigint  NOT NULL,
    position  bigint  NOT NULL,
    hash      bytea   NOT NULL,   -- H(0x00 || event hash)
    PRIMARY KEY (root_id, idx)
);
CREATE UNIQUE INDEX audit_tree_leaves_position ON audit_tree_leaves (position);

CREATE TABLE audit_tree_nodes (
    root_id  uuid      NOT NULL,
    level    smallint  NOT NULL,   -- the subtree covers 2^level leaves, level >= 1
    idx      bigint    NOT NULL,   -- ... starting at leaf idx * 2^level
    hash     bytea     NOT NULL,
    PRIMARY KEY (root_id, level, idx)
);

-- Hashes only, no content: any principal of the root may read its tree (a subtree's
-- inspector needs the rest of the root's tree to tie its events to the signed root).
ALTER TABLE audit_trees ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_trees_in_root ON audit_trees USING (root_id = civic_scope_root());
ALTER TABLE audit_tree_leaves ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_tree_leaves_in_root ON audit_tree_leaves USING (root_id = civic_scope_root());
ALTER TABLE audit_tree_nodes ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_tree_nodes_in_root ON audit_tree_nodes USING (root_id = civic_scope_root());
REVOKE ALL ON audit_trees, audit_tree_leaves, audit_tree_nodes FROM PUBLIC;
GRANT SELECT ON audit_trees, audit_tree_leaves, audit_tree_nodes TO civic_app;

-- Stored checkpoints also carry the tree's signed note (C2SP tlog-checkpoint); older rows
-- have none (they stay verifiable as before).
ALTER TABLE audit_checkpoints ADD COLUMN tree_size bigint;
ALTER TABLE audit_checkpoints ADD COLUMN tree_root bytea;
ALTER TABLE audit_checkpoints ADD COLUMN note text;
CREATE INDEX audit_checkpoints_tree ON audit_checkpoints (root_id, tree_size);

-- Witness cosignatures (C2SP tlog-cosignature) of a root's tree at a size, as posted by
-- the witness and checked by the server; served with the checkpoints. Append-only.
CREATE TABLE audit_cosignatures (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    root_id       uuid        NOT NULL,
    tree_size     bigint      NOT NULL,
    tree_root     bytea       NOT NULL,
    witness       text        NOT NULL,   -- the witness key's name
    public_key    bytea       NOT NULL,
    signed_at     bigint      NOT NULL,   -- the cosignature's own time (unix seconds)
    line          text        NOT NULL,   -- the signature line, as it is appended to the note
    posted_by     text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (root_id, tree_size, witness, public_key)
);
CREATE TRIGGER audit_cosignatures_append_only
    BEFORE UPDATE OR DELETE ON audit_cosignatures
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
ALTER TABLE audit_cosignatures ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_cosignatures_in_root ON audit_cosignatures USING (root_id = civic_scope_root());
CREATE POLICY audit_cosignatures_insert ON audit_cosignatures FOR INSERT
    WITH CHECK (root_id = civic_scope_root());
REVOKE ALL ON audit_cosignatures FROM PUBLIC;
GRANT SELECT, INSERT ON audit_cosignatures TO civic_app;

-- Leaves and complete subtrees never change once written.
CREATE TRIGGER audit_tree_leaves_append_only
    BEFORE UPDATE OR DELETE ON audit_tree_leaves
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
CREATE TRIGGER audit_tree_nodes_append_only
    BEFORE UPDATE OR DELETE ON audit_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
