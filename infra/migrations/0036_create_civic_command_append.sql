-- A whole command's write in one autocommit statement (message-db's write_message and the
-- eventsourcing library's db functions work the same way: one call, one round trip).
--
-- A command in a scoped transaction made three round trips even when it read nothing: BEGIN
-- with the role and scope, the append, and the Idempotency-Key record with the COMMIT. Sent
-- as one statement outside a transaction, this function is its own transaction and does
-- what those did, in the same order of effect:
--
-- 1. the chain head locked, the closed-subtree check of civic_refuse_closed (migration 0020)
--    for the chain node and the scope node (SQLSTATE CV423), the version check (CV409);
-- 2. the runtime role and the principal's scope (set_config(..., true) lasts until the
--    statement's implicit transaction ends): row-level security, with the events insert
--    policy, checks and filters what follows as in a scoped transaction;
-- 3. the append of civic_append (migration 0016): SHA-256 links, idempotent retry on event
--    ids, the same rows;
-- 4. the Idempotency-Key record. The response names the positions the append assigns, which
--    the caller cannot know beforehand: it encodes provisional ones (p_placeholder + i for
--    the i-th event, numbers no real position reaches) and they are replaced here. A key
--    already stored fails the statement (unique violation on idempotency_keys), which
--    rolls the append back, as the COMMIT did.
--
-- It does not call civic_append and civic_refuse_closed but runs their statements merged
-- into three (head + version + closed check; scope; insert + head move + key record): on
-- this path PostgreSQL's per-statement executor start-up was most of the server's time, and
-- the functions' nine statements cost about twice these three.
CREATE FUNCTION civic_command_append(
    p_scope_root uuid,
    p_scope_path text,
    p_scope_unit boolean,
    p_check_nodes uuid[],
    p_check_except uuid,
    p_root uuid,
    p_node uuid,
    p_stream uuid,
    p_stream_type text,
    p_expected integer,
    p_event_ids uuid[],
    p_types text[],
    p_schema_versions smallint[],
    p_data jsonb[],
    p_occurred_at timestamptz[],
    p_recorded_at timestamptz,
    p_actor text,
    p_correlation_id uuid,
    p_causation_id uuid,
    p_idempotency_key text,
    p_digests bytea[],
    p_key_principal text,
    p_request_hash bytea,
    p_status smallint,
    p_response bytea,
    p_placeholder bigint
) RETURNS TABLE (event_position bigint, event_version integer, event_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := cardinality(p_event_ids);
    v_seq      bigint;
    v_hash     bytea;
    v_tip      bytea;
    v_current  integer;
    v_closed   boolean;
    v_base     bigint;
    v_hashes   bytea[] := '{}';
    v_response text;
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'nothing to append' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF n > 65536 THEN
        RAISE EXCEPTION 'a transaction appends at most 65536 events'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    -- The chain head locked, the stream's version and the closed-subtree check, read as the
    -- calling (owner) role: these are constraint checks, which see past row-level security
    -- as the unique keys on events do (and skip its per-row policy subplans); what the
    -- command writes and returns is checked and filtered as the runtime role below.
    LOOP
        SELECT h.seq, h.hash,
               (SELECT coalesce(max(e.version), 0) FROM events e
                WHERE e.root_id = p_root AND e.stream_id = p_stream),
               EXISTS (
                   SELECT 1 FROM nodes a
                   WHERE a.id = ANY (ARRAY(
                             SELECT unnest(civic_path_ids(c.path)) FROM nodes c
                             WHERE c.id = ANY (p_check_nodes)))
                     AND a.closed AND a.id IS DISTINCT FROM p_check_except)
        INTO v_seq, v_hash, v_current, v_closed
        FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE OF h;
        EXIT WHEN FOUND;
        INSERT INTO chain_heads (node_id, root_id, seq, hash)
        VALUES (p_node, p_root, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (node_id) DO NOTHING;
    END LOOP;
    -- Row-level security from here on (it applies to statements planned after this one).
    PERFORM set_config('role', 'civic_app', true),
            set_config('civic.root', p_scope_root::text, true),
            set_config('civic.scope_lo', p_scope_path, true),
            set_config('civic.scope_hi', left(p_scope_path, -1) || '0', true),
            set_config('civic.unit', CASE WHEN p_scope_unit THEN '1' ELSE '0' END, true);
    IF v_closed THEN
        RAISE EXCEPTION 'the command names a node in a closed subtree' USING ERRCODE = 'CV423';
    END IF;

    IF v_current <> p_expected THEN
        IF EXISTS (SELECT 1 FROM events e
                   WHERE e.root_id = p_root AND e.event_id = p_event_ids[1]) THEN
            RETURN QUERY
                SELECT e.position, e.version, e.node_seq FROM events e
                WHERE e.root_id = p_root AND e.event_id = ANY (p_event_ids) ORDER BY e.version;
            RETURN;
        END IF;
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_current, p_expected
            USING ERRCODE = 'CV409', DETAIL = v_current::text;
    END IF;

    v_base := pg_current_xact_id()::text::bigint << 16;
    v_tip := v_hash;
    v_response := convert_from(p_response, 'UTF8');
    FOR i IN 1..n LOOP
        v_hash := sha256(v_hash || int8send(v_seq + i) || int8send(v_base + i - 1)
                         || p_digests[i]);
        v_hashes := v_hashes || v_hash;
        v_response := replace(v_response, (p_placeholder + i - 1)::text, (v_base + i - 1)::text);
    END LOOP;

    RETURN QUERY
    WITH appended AS (
        INSERT INTO events (
            position, root_id, node_id, node_seq, prev_hash, hash, stream_id, stream_type,
            version, event_id, type, schema_version, data, occurred_at, recorded_at, actor,
            correlation_id, causation_id, idempotency_key)
        SELECT v_base + i - 1, p_root, p_node, v_seq + i,
               CASE WHEN i = 1 THEN v_tip ELSE v_hashes[i - 1] END, v_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key
        FROM generate_subscripts(p_event_ids, 1) AS i
    ), head AS (
        UPDATE chain_heads SET seq = v_seq + n, hash = v_hashes[n] WHERE node_id = p_node
    ), answer AS (
        INSERT INTO idempotency_keys (principal, key, request_hash, status, response)
        SELECT p_key_principal, p_idempotency_key, p_request_hash, p_status,
               convert_to(v_response, 'UTF8')
        WHERE p_key_principal IS NOT NULL
    )
    SELECT v_base + i - 1, p_expected + i, v_seq + i
    FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;

-- The login role calls it (it switches to civic_app itself); the runtime role has no use
-- for it.
REVOKE EXECUTE ON FUNCTION civic_command_append(
    uuid, text, boolean, uuid[], uuid, uuid, uuid, uuid, text, integer, uuid[], text[],
    smallint[], jsonb[], timestamptz[], timestamptz, text, uuid, uuid, text, bytea[], text,
    bytea, smallint, bytea, bigint
) FROM PUBLIC;
