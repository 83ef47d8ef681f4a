-- Signed checkpoints of the hash chains, taken periodically per root tenant (and kept, so an
-- inspector can compare two dates). A checkpoint is the Merkle root over the chain heads of
-- a subtree at one instant, signed over {node, at, root}; see infra/merkle.py and
-- infra/proofs.py for the exact encodings. Rows are never changed once written.
CREATE TABLE audit_checkpoints (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    root_id         uuid        NOT NULL,
    node_id         uuid        NOT NULL,
    code            text        NOT NULL,   -- the node's code when signed (it is signed)
    at              timestamptz NOT NULL,
    root            bytea       NOT NULL,
    heads           jsonb       NOT NULL,   -- [{node_id, code, seq, hash}] in path order
    signature       bytea       NOT NULL,
    algorithm       text        NOT NULL,   -- signature algorithm, e.g. ed25519
    hash_algorithm  text        NOT NULL DEFAULT 'sha256',
    public_key      bytea       NOT NULL    -- raw public key that verifies the signature
);
CREATE INDEX audit_checkpoints_node_at ON audit_checkpoints (root_id, node_id, at);

CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();

ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_in_scope ON audit_checkpoints USING (
    root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));
REVOKE ALL ON audit_checkpoints FROM PUBLIC;
GRANT SELECT ON audit_checkpoints TO civic_app;
