-- A closed node closes its whole subtree for commands (reads and history stay).
--
-- nodes.closed is set on the closed node only; "closed" for a command means the node or any
-- ancestor is closed. A path holds the ancestors' ids, so the check is a primary-key look-up
-- of at most a path's length of rows, never a subtree scan.
CREATE FUNCTION civic_path_ids(p_path text) RETURNS uuid[] LANGUAGE sql IMMUTABLE AS $$
    SELECT string_to_array(trim(both '/' from p_path), '/')::uuid[]
$$;

-- True when the node or one of its ancestors is closed; p_self false skips the node itself
-- (the NodeClosed event is appended to the node it closes). PL/pgSQL, like the scope
-- functions of migration 0017: a SQL function with a subquery is not inlined, and would be
-- planned again on every call; PL/pgSQL keeps its plan for the session.
CREATE FUNCTION civic_subtree_closed(p_node uuid, p_self boolean DEFAULT true)
RETURNS boolean LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM nodes n JOIN nodes a ON a.id = ANY (civic_path_ids(n.path))
        WHERE n.id = p_node AND a.closed AND (p_self OR a.id <> p_node));
END $$;

-- Every append names the node whose chain it joins, and every command the principal's scope
-- node: the command pipeline sends this check for both with the COMMIT (no extra round
-- trip), so any workflow, present or future, is refused on a closed subtree without code of
-- its own. p_except: a node that may be closed (NodeClosed is appended to the node it
-- closes, which is closed by then). SQLSTATE CV423 is mapped to 409 node-closed.
CREATE FUNCTION civic_refuse_closed(p_nodes uuid[], p_except uuid) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM nodes n JOIN nodes a ON a.id = ANY (civic_path_ids(n.path))
        WHERE n.id = ANY (p_nodes) AND a.closed AND a.id IS DISTINCT FROM p_except
    ) THEN
        RAISE EXCEPTION 'the command names a node in a closed subtree' USING ERRCODE = 'CV423';
    END IF;
END $$;

GRANT EXECUTE ON FUNCTION civic_path_ids(text) TO civic_app;
GRANT EXECUTE ON FUNCTION civic_subtree_closed(uuid, boolean) TO civic_app;
GRANT EXECUTE ON FUNCTION civic_refuse_closed(uuid[], uuid) TO civic_app;
