-- The events insert check, party branch: probe the appended row's stream instead of
-- gathering every stream the scope takes part in.
--
-- `stream_id IN (SELECT civic_party_streams())` is a hashed subplan: the first row that
-- reaches it (an append by a unit principal to a stream chained outside its scope, e.g. an
-- issue assigned to it) runs the set-returning function and hashes every party stream of
-- the unit's scope, once per appending statement. A unit with 20,000 assigned streams took
-- ~49 ms per single-event append (~2.3 ms for a community's append on the same database).
-- The same condition as an EXISTS on stream_parties by the row's stream (index
-- stream_parties_stream) and the party's node by its key costs two index probes whatever
-- the number of streams.
--
-- What it admits is unchanged: the row's root is the scope's, and either its node is in
-- the scope's subtree, or the principal is a unit (civic.unit = '1') and a party of the
-- row's stream, in the same root, is a node of the scope's subtree. A missing setting makes
-- a comparison NULL, which the check refuses. The subqueries run as the inserting role, so
-- nodes and stream_parties are themselves filtered to the scope's root, as they were
-- inside civic_party_streams. Reads (USING) keep the set form: a scan of many rows is
-- better served by one hash than by a probe per row.
ALTER POLICY events_in_scope ON events
    WITH CHECK (
        root_id = civic_scope_root()
        AND (
            EXISTS (
                SELECT 1 FROM nodes n
                WHERE n.id = events.node_id
                  AND n.root_id = civic_scope_root()
                  AND n.path >= current_setting('civic.scope_lo', true)
                  AND n.path <  current_setting('civic.scope_hi', true)
            )
            OR (
                current_setting('civic.unit', true) = '1'
                AND EXISTS (
                    SELECT 1 FROM stream_parties p JOIN nodes n ON n.id = p.node_id
                    WHERE p.stream_id = events.stream_id
                      AND p.root_id = civic_scope_root()
                      AND n.root_id = civic_scope_root()
                      AND n.path >= current_setting('civic.scope_lo', true)
                      AND n.path <  current_setting('civic.scope_hi', true)
                )
            )
        )
    );
