-- Member registration (双报到): read models (projection "members"), the write-side identity
-- index, and what lets a member's new community load the member's whole stream.

-- Read model for GET /v1/members. node_id is the member's *current* community; the home
-- unit sees its members through civic_party_streams(). person is the MemberRegistered
-- event's personal-data field exactly as stored (NULL once erased); only
-- services/personal_data_view.py interprets it.
CREATE TABLE rm_members (
    root_id               uuid          NOT NULL,
    id                    uuid          NOT NULL,
    node_id               uuid          NOT NULL,
    community_code        text          NOT NULL,
    home_unit_id          uuid          NOT NULL,
    home_unit_code        text          NOT NULL,
    grid_id               uuid,
    grid_code             text,
    status                text          NOT NULL,
    person                jsonb,
    service_hours         numeric(12,2) NOT NULL DEFAULT 0,
    service_count         integer       NOT NULL DEFAULT 0,
    points                integer       NOT NULL DEFAULT 0,
    former_community_ids  uuid[]        NOT NULL DEFAULT '{}',
    registered_at         timestamptz   NOT NULL,
    transferred_at        timestamptz,
    deregistered_at       timestamptz,
    erased_at             timestamptz,
    updated_at            timestamptz   NOT NULL,
    version               integer       NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_members_node ON rm_members (root_id, node_id, registered_at, id);
CREATE INDEX rm_members_home_unit ON rm_members (root_id, home_unit_id, registered_at, id);

ALTER TABLE rm_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_members_in_scope ON rm_members USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_members FROM PUBLIC;
GRANT SELECT ON rm_members TO civic_app;

-- Units that have reported to a community (单位报到). node_id is the community.
CREATE TABLE rm_unit_registrations (
    root_id         uuid        NOT NULL,
    id              uuid        NOT NULL,
    node_id         uuid        NOT NULL,
    unit_id         uuid        NOT NULL,
    unit_code       text        NOT NULL,
    community_code  text        NOT NULL,
    registered_at   timestamptz NOT NULL,
    version         integer     NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_unit_registrations_node ON rm_unit_registrations (root_id, node_id);
CREATE INDEX rm_unit_registrations_unit ON rm_unit_registrations (root_id, unit_id);

ALTER TABLE rm_unit_registrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_unit_registrations_in_scope ON rm_unit_registrations USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_unit_registrations FROM PUBLIC;
GRANT SELECT ON rm_unit_registrations TO civic_app;

-- One row per member, written in the same transaction as the member's events:
-- * identity_hash: HMAC-SHA256 (key CIVIC_PII_INDEX_KEY) of the person's identity (ID-card
--   number, else mobile); never the plaintext. NULL once the member is erased.
-- * active: counts for "the same person is not registered twice in one community"; the
--   partial unique index settles concurrent registrations (one wins, the other conflicts).
--   Deregistration frees the slot (the person may register again later).
-- * community_id: the member's current community; transferred marks members whose stream
--   began in another community (see the events policy below).
CREATE TABLE member_identities (
    root_id        uuid    NOT NULL,
    member_id      uuid    NOT NULL,
    community_id   uuid    NOT NULL,
    identity_hash  bytea,
    active         boolean NOT NULL DEFAULT true,
    transferred    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (root_id, member_id),
    CONSTRAINT member_identities_hash CHECK (identity_hash IS NOT NULL OR NOT active)
);
CREATE UNIQUE INDEX member_identities_once
    ON member_identities (root_id, community_id, identity_hash) WHERE active;
CREATE INDEX member_identities_transferred
    ON member_identities (root_id, community_id) WHERE transferred;

-- Readable within the root tenant, like stream_parties: a transfer moves a row to any
-- community of the root, and PostgreSQL checks an updated row against the read policy too.
-- The application reads it only for members whose current community is in the caller's
-- subtree; the hashes are keyed and useless without CIVIC_PII_INDEX_KEY.
ALTER TABLE member_identities ENABLE ROW LEVEL SECURITY;
CREATE POLICY member_identities_in_root ON member_identities
    USING (root_id = civic_scope_root()) WITH CHECK (root_id = civic_scope_root());
REVOKE ALL ON member_identities FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON member_identities TO civic_app;

-- A transferred member's history stays on the old community's chain (node_id), but the
-- new community must load the whole stream to act on the member (and the append's version
-- check must see every version). This extra, read-only policy lets a principal whose scope
-- holds a member's current community read that member's events wherever they were chained.
-- Permissive policies are OR-ed with events_in_scope; inserts are still checked by it alone.
CREATE POLICY events_transferred_members ON events FOR SELECT USING (
    root_id = civic_scope_root()
    AND stream_type = 'member'
    AND stream_id IN (SELECT m.member_id FROM member_identities m
                      WHERE m.root_id = civic_scope_root()
                        AND m.transferred
                        AND m.community_id IN (SELECT civic_scope_nodes())));
