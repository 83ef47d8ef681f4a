-- Snapshots of long streams (infra/snapshots.py): a cache of one aggregate's state after
-- `version`, so a cold load reads it plus the events after it. Dropping rows loses nothing.
--
-- One row per stream (the latest). `event_id` is the id of the event at `version`: a load
-- uses the snapshot only when that event is stored with that id. `state_version` is the
-- aggregate's STATE_VERSION when it was taken; another version is ignored. `node_ids` are
-- the nodes every event up to `version` lies on, so row-level security can show the
-- snapshot exactly to those who may read all of those events. `state` is JSON text with
-- personal attributes sealed under the person's data key, as in the events.
CREATE TABLE snapshots (
    root_id        uuid        NOT NULL,
    stream_id      uuid        NOT NULL,
    stream_type    text        NOT NULL,
    version        integer     NOT NULL,
    event_id       uuid        NOT NULL,
    state_version  smallint    NOT NULL,
    state          text        NOT NULL,
    node_ids       uuid[]      NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (root_id, stream_id),
    CONSTRAINT snapshots_version_positive CHECK (version > 0)
);

-- Readable when every event the snapshot sums up is readable under events' policies: each
-- of its nodes lies in the scope (looked up by key, as events' insert check does), or the
-- stream is one the unit principal takes part in, or it is a member transferred into the
-- scope (events_transferred_members). A principal who sees only part of the stream does not
-- see the snapshot, and loads the events it may see, as without snapshots.
ALTER TABLE snapshots ENABLE ROW LEVEL SECURITY;
CREATE POLICY snapshots_read ON snapshots FOR SELECT USING (
    root_id = civic_scope_root()
    AND (
        NOT EXISTS (
            SELECT 1 FROM unnest(node_ids) AS u(id)
            WHERE NOT EXISTS (
                SELECT 1 FROM nodes n
                WHERE n.id = u.id
                  AND n.root_id = civic_scope_root()
                  AND n.path >= current_setting('civic.scope_lo', true)
                  AND n.path <  current_setting('civic.scope_hi', true)))
        OR stream_id IN (SELECT civic_party_streams())
        OR (stream_type = 'member'
            AND stream_id IN (SELECT m.member_id FROM member_identities m
                              WHERE m.root_id = civic_scope_root()
                                AND m.transferred
                                AND m.community_id IN (SELECT civic_scope_nodes())))
    )
);
-- Writing and dropping need only the tenant: a snapshot is written with the command that
-- loaded the whole stream, and dropping one only costs a longer load.
CREATE POLICY snapshots_insert ON snapshots FOR INSERT
    WITH CHECK (root_id = civic_scope_root());
CREATE POLICY snapshots_delete ON snapshots FOR DELETE
    USING (root_id = civic_scope_root());
REVOKE ALL ON snapshots FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON snapshots TO civic_app;
