-- Pairings (结对共建): the read model (projection "pairings") and the write-side term index.

-- Read model for GET /v1/pairings. node_id is the community (the stream's owner); unit
-- principals see the pairings naming their unit through civic_party_streams().
CREATE TABLE rm_pairings (
    root_id               uuid        NOT NULL,
    id                    uuid        NOT NULL,
    node_id               uuid        NOT NULL,
    unit_id               uuid        NOT NULL,
    unit_code             text        NOT NULL,
    community_code        text        NOT NULL,
    starts_on             date        NOT NULL,
    ends_on               date        NOT NULL,
    status                text        NOT NULL,
    -- [{title, due_on, fulfilled_at, evidence}] in signing order (the index is the position)
    commitments           jsonb       NOT NULL,
    commitments_total     integer     NOT NULL,
    commitments_fulfilled integer     NOT NULL DEFAULT 0,
    activity_count        integer     NOT NULL DEFAULT 0,
    participant_total     bigint      NOT NULL DEFAULT 0,
    last_activity_on      date,
    rating                text,
    review_count          integer     NOT NULL DEFAULT 0,
    terminated_at         timestamptz,
    termination_reason    text,
    version               integer     NOT NULL,
    signed_at             timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_pairings_node ON rm_pairings (root_id, node_id, signed_at, id);
CREATE INDEX rm_pairings_unit ON rm_pairings (root_id, unit_id, signed_at, id);

ALTER TABLE rm_pairings ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_pairings_in_scope ON rm_pairings USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_pairings FROM PUBLIC;
GRANT SELECT ON rm_pairings TO civic_app;

-- Terms of signed pairings, written in the same transaction as PairingSigned and
-- PairingTerminated (an inline index, never behind the ledger like a projection can be).
-- "No second active pairing of the same unit and community with an overlapping term" is
-- decided on these rows while the signing transaction holds a transaction-level advisory
-- lock on the (unit, community) pair, so two concurrent signings cannot both pass.
-- (An exclusion constraint on daterange would need btree_gist: no extensions.)
CREATE TABLE pairing_terms (
    root_id       uuid    NOT NULL,
    pairing_id    uuid    NOT NULL,
    unit_id       uuid    NOT NULL,
    community_id  uuid    NOT NULL,
    starts_on     date    NOT NULL,
    ends_on       date    NOT NULL,
    active        boolean NOT NULL DEFAULT true,
    PRIMARY KEY (root_id, pairing_id),
    CONSTRAINT pairing_terms_term CHECK (ends_on > starts_on)
);
CREATE INDEX pairing_terms_pair ON pairing_terms (root_id, unit_id, community_id) WHERE active;

-- Signing and terminating need the community inside the caller's scope; so do these rows.
ALTER TABLE pairing_terms ENABLE ROW LEVEL SECURITY;
CREATE POLICY pairing_terms_in_scope ON pairing_terms
    USING (root_id = civic_scope_root() AND community_id IN (SELECT civic_scope_nodes()))
    WITH CHECK (root_id = civic_scope_root() AND community_id IN (SELECT civic_scope_nodes()));
REVOKE ALL ON pairing_terms FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON pairing_terms TO civic_app;
