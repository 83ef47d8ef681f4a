-- Row-level security, cheaper per statement.
--
-- civic_scope_nodes() and civic_party_streams() were LANGUAGE sql set-returning functions.
-- Called from a policy (`x IN (SELECT civic_scope_nodes())`) they cannot be inlined, and a
-- non-inlined SQL function parses and plans its body on every call: a third of the server's
-- time in an append went there. As PL/pgSQL functions their plans are cached per session.
CREATE OR REPLACE FUNCTION civic_scope_nodes() RETURNS SETOF uuid LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
        SELECT n.id FROM nodes n
        WHERE n.root_id = civic_scope_root()
          AND n.path >= current_setting('civic.scope_lo', true)
          AND n.path <  current_setting('civic.scope_hi', true);
END $$;

CREATE OR REPLACE FUNCTION civic_party_streams() RETURNS SETOF uuid LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF current_setting('civic.unit', true) IS DISTINCT FROM '1' THEN
        RETURN;  -- only unit principals see the streams they take part in
    END IF;
    RETURN QUERY
        SELECT p.stream_id FROM stream_parties p
        WHERE p.root_id = civic_scope_root()
          AND p.node_id IN (SELECT civic_scope_nodes());
END $$;

-- An insert's check needs one node, not the scope's every node: look the event's node up by
-- its key (a county scope holds hundreds of nodes, which `IN (SELECT civic_scope_nodes())`
-- would gather and hash for every appending statement).
ALTER POLICY events_in_scope ON events
    WITH CHECK (
        root_id = civic_scope_root()
        AND (
            EXISTS (
                SELECT 1 FROM nodes n
                WHERE n.id = node_id
                  AND n.root_id = civic_scope_root()
                  AND n.path >= current_setting('civic.scope_lo', true)
                  AND n.path <  current_setting('civic.scope_hi', true)
            )
            OR stream_id IN (SELECT civic_party_streams())
        )
    );
