-- civic_command_read: what a command decides on, read in one autocommit statement, so that a
-- command on an aggregate the process has not cached costs two round trips (this read, then
-- civic_command_append) instead of a scoped transaction's BEGIN, reads, append and COMMIT.
--
-- It enters the principal's scope as the runtime role exactly as civic_command_append does
-- (SECURITY INVOKER, called by the login role; role and scope settings local to the
-- statement's own transaction), so row-level security decides every row it returns, as in a
-- scoped transaction. Two kinds of row come back, told apart by which columns are set:
-- * the stream's rows (p_stream; none when it is NULL): the rows of infra/snapshots.py's LOAD,
--   column for column: the snapshot this principal may use and the events from its version
--   on, the snapshot's columns on the row of the event it ends with (a test compares the two);
-- * node rows (n_*): the directory rows of infra/directory.py's FIND_BY_CODE for each of
--   p_codes (n_asked: the code asked for, which may be a former one) and FIND_BY_ID for
--   p_node_ids, the nodes the stream's events and its snapshot lie on and the stream's
--   parties, which is what a command on the stream looks up next (the issue's node, its
--   assignee), so one read usually does. Codes or ids the principal may not see are absent.
CREATE FUNCTION civic_command_read(
    p_scope_root uuid,
    p_scope_path text,
    p_scope_unit boolean,
    p_root uuid,
    p_stream uuid,
    p_stream_type text,
    p_state_version smallint,
    p_codes text[],
    p_node_ids uuid[]
) RETURNS TABLE (
    "position" bigint, root_id uuid, node_id uuid, node_seq bigint, prev_hash bytea, hash bytea,
    stream_id uuid, stream_type text, version integer, event_id uuid, type text,
    schema_version smallint, data jsonb, occurred_at timestamptz, recorded_at timestamptz,
    actor text, correlation_id uuid, causation_id uuid, idempotency_key text,
    path text, s_event_id uuid, s_state text, s_node_ids uuid[], s_paths text[],
    n_id uuid, n_root_id uuid, n_code text, n_name text, n_kind text, n_parent_id uuid,
    n_path text, n_closed boolean, n_version integer, n_asked text
)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- Row-level security from here on (it applies to statements planned after this one).
    PERFORM set_config('role', 'civic_app', true),
            set_config('civic.root', p_scope_root::text, true),
            set_config('civic.scope_lo', p_scope_path, true),
            set_config('civic.scope_hi', left(p_scope_path, -1) || '0', true),
            set_config('civic.unit', CASE WHEN p_scope_unit THEN '1' ELSE '0' END, true);

    IF p_stream IS NOT NULL THEN
        RETURN QUERY
        WITH snap (s_version, s_event_id, s_state, s_node_ids, s_paths) AS MATERIALIZED (
            SELECT sn.version, sn.event_id, sn.state, sn.node_ids,
                   ARRAY(SELECT n.path::text FROM nodes n WHERE n.id = ANY (sn.node_ids))
            FROM snapshots sn
            WHERE sn.root_id = p_root AND sn.stream_id = p_stream
              AND sn.stream_type = p_stream_type AND sn.state_version = p_state_version
        )
        SELECT e.position, e.root_id, e.node_id, e.node_seq, e.prev_hash, e.hash, e.stream_id,
               e.stream_type, e.version, e.event_id, e.type, e.schema_version, e.data,
               e.occurred_at, e.recorded_at, e.actor, e.correlation_id, e.causation_id,
               e.idempotency_key,
               (SELECT n.path::text FROM nodes n WHERE n.id = e.node_id),
               snap.s_event_id, snap.s_state, snap.s_node_ids, snap.s_paths,
               NULL::uuid, NULL::uuid, NULL::text, NULL::text, NULL::text, NULL::uuid,
               NULL::text, NULL::boolean, NULL::integer, NULL::text
        FROM events e LEFT JOIN snap ON snap.s_version = e.version
        WHERE e.root_id = p_root AND e.stream_id = p_stream
          AND e.version >= (SELECT coalesce(max(s_version), 1) FROM snap)
        ORDER BY e.version;
    END IF;

    RETURN QUERY
    WITH wanted (id, asked) AS (
        SELECT found.id, c.code
        FROM unnest(p_codes) AS c(code)
        CROSS JOIN LATERAL (
            SELECT n.id FROM nodes n WHERE n.code = c.code
            UNION ALL
            SELECT al.node_id FROM node_aliases al WHERE al.code = c.code
            LIMIT 1
        ) AS found
        UNION ALL
        SELECT DISTINCT ids.id, NULL::text
        FROM (
            SELECT unnest(p_node_ids)
            UNION ALL
            SELECT unnest(sn.node_ids) FROM snapshots sn
            WHERE sn.root_id = p_root AND sn.stream_id = p_stream
              AND sn.stream_type = p_stream_type AND sn.state_version = p_state_version
            UNION ALL
            SELECT e.node_id FROM events e
            WHERE e.root_id = p_root AND e.stream_id = p_stream
              AND e.version >= (
                  SELECT coalesce(max(sn.version), 1) FROM snapshots sn
                  WHERE sn.root_id = p_root AND sn.stream_id = p_stream
                    AND sn.stream_type = p_stream_type AND sn.state_version = p_state_version)
            UNION ALL
            SELECT sp.node_id FROM stream_parties sp
            WHERE sp.root_id = p_root AND sp.stream_id = p_stream
        ) AS ids (id)
    )
    SELECT NULL::bigint, NULL::uuid, NULL::uuid, NULL::bigint, NULL::bytea, NULL::bytea,
           NULL::uuid, NULL::text, NULL::integer, NULL::uuid, NULL::text, NULL::smallint,
           NULL::jsonb, NULL::timestamptz, NULL::timestamptz, NULL::text, NULL::uuid,
           NULL::uuid, NULL::text, NULL::text, NULL::uuid, NULL::text, NULL::uuid[],
           NULL::text[],
           n.id, n.root_id, n.code, n.name, n.kind, n.parent_id, n.path::text,
           EXISTS (SELECT 1 FROM nodes a WHERE a.id = ANY (civic_path_ids(n.path)) AND a.closed),
           n.version, w.asked
    FROM wanted w JOIN nodes n ON n.id = w.id;
END $$;

-- The login role calls it (it switches to civic_app itself); the runtime role has no use
-- for it.
REVOKE EXECUTE ON FUNCTION civic_command_read(
    uuid, text, boolean, uuid, uuid, text, smallint, text[], uuid[]
) FROM PUBLIC;
