-- Personal information (PIPL): per-person data keys (crypto-shredding) and the audit of
-- clear-text reveals. See infra/pii_crypto.py and docs/privacy.md.

-- One data key per person (per member stream), wrapped by the master key
-- (CIVIC_PII_MASTER_KEY, never stored here): wrapped_key = 0x01 || nonce || AES-256-GCM
-- (master, key) bound to (root_id, member_id, key_id). Events hold only ciphertext under
-- it; deleting the row (MemberErased, same transaction) makes that ciphertext unreadable
-- for good while every event, hash and checkpoint stays as it was.
CREATE TABLE person_keys (
    root_id        uuid        NOT NULL,
    member_id      uuid        NOT NULL,   -- the stream (aggregate) id holding the person
    key_id         text        NOT NULL,
    wrapped_key    bytea       NOT NULL,
    master_key_id  text        NOT NULL,   -- which master key wrapped it (rotation)
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (root_id, member_id)
);

-- A key is visible exactly where its ciphertext is: when the caller may read the stream's
-- events (row-level security on events decides: scope, party streams, transferred members).
-- Keys carry no node of their own (the member moves between communities), so the policy
-- follows the events instead of copying their scope rules. Inserting needs only the root:
-- the key is created before the stream's first event, in the same transaction.
ALTER TABLE person_keys ENABLE ROW LEVEL SECURITY;
CREATE POLICY person_keys_read ON person_keys FOR SELECT USING (
    root_id = civic_scope_root()
    AND EXISTS (SELECT 1 FROM events e
                WHERE e.root_id = person_keys.root_id AND e.stream_id = person_keys.member_id));
CREATE POLICY person_keys_insert ON person_keys FOR INSERT
    WITH CHECK (root_id = civic_scope_root());
CREATE POLICY person_keys_delete ON person_keys FOR DELETE USING (
    root_id = civic_scope_root()
    AND EXISTS (SELECT 1 FROM events e
                WHERE e.root_id = person_keys.root_id AND e.stream_id = person_keys.member_id));
REVOKE ALL ON person_keys FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON person_keys TO civic_app;

-- Every clear-text read of a person's data (an admin's unmasked view): who, when, whose,
-- where from and why. Append-only; node_id is the member's community when it was read,
-- so inspectors of that subtree see it.
CREATE TABLE pii_reveals (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    root_id      uuid        NOT NULL,
    node_id      uuid        NOT NULL,
    member_id    uuid        NOT NULL,
    revealed_at  timestamptz NOT NULL,
    actor        text        NOT NULL,   -- subject@scope of the token
    endpoint     text        NOT NULL,   -- method and route, e.g. GET /v1/members/{id}
    reason       text,                   -- X-Reveal-Reason, when given
    request_id   text
);
CREATE INDEX pii_reveals_node ON pii_reveals (root_id, node_id, revealed_at);
CREATE INDEX pii_reveals_member ON pii_reveals (root_id, member_id, revealed_at);

CREATE TRIGGER pii_reveals_append_only
    BEFORE UPDATE OR DELETE ON pii_reveals
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
CREATE TRIGGER pii_reveals_no_truncate
    BEFORE TRUNCATE ON pii_reveals
    FOR EACH STATEMENT EXECUTE FUNCTION civic_refuse_change();

ALTER TABLE pii_reveals ENABLE ROW LEVEL SECURITY;
CREATE POLICY pii_reveals_in_scope ON pii_reveals
    USING (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()))
    WITH CHECK (root_id = civic_scope_root() AND node_id IN (SELECT civic_scope_nodes()));
REVOKE ALL ON pii_reveals FROM PUBLIC;
GRANT SELECT, INSERT ON pii_reveals TO civic_app;
