-- civic_command_append (migrations 0036, 0039) also records who is party to a stream, so a
-- command that changes parties (an issue's assignee or whistle target, a finding's
-- responsible unit, a service order's assignee, an offer's provider) is still one statement.
--
-- Changed against 0039 (the body of 0036 storing canonical bytes), nothing else:
-- * five parameters at the end, one element per party write in the order the command made
--   them: p_party_streams, p_party_roles, p_party_nodes (NULL: nobody holds the role any
--   more), p_party_replace (true: the node becomes the role's only holder, the others are
--   deleted; false: added beside them), p_party_before (the command wrote it before its save);
-- * two statements, each run only when the command made such writes (so a command without
--   any runs exactly the statements of 0039), both as the runtime role (row-level security
--   applying to stream_parties as in a scoped transaction) and both after the version check
--   (not on the idempotent retry of an append already made, which returns before):
--   the writes made before the save, just before the append (the events insert policy must
--   see them: a unit's own offer); those made after it, after the append's statement (its
--   insert policy still sees a party being ended, as when the party write followed the
--   append in the transaction).
-- The caller sends no two writes of one (stream, role) (their order within one statement
-- would be undefined); a party row belongs to the principal's root tenant (p_scope_root),
-- as in the scoped transaction.
DROP FUNCTION civic_command_append(
    uuid, text, boolean, uuid[], uuid, uuid, uuid, uuid, text, integer, uuid[], text[],
    smallint[], jsonb[], timestamptz[], timestamptz, text, uuid, uuid, text, bytea[], text,
    bytea, smallint, bytea, bigint, bytea[]
);

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
    p_placeholder bigint,
    p_canonical bytea[],
    p_party_streams uuid[],
    p_party_roles text[],
    p_party_nodes uuid[],
    p_party_replace boolean[],
    p_party_before boolean[]
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

    -- Party writes the command made before its save (a unit principal's own offer: the
    -- party must exist for the events insert policy to let the append through).
    IF true = ANY (p_party_before) THEN
        WITH w AS (
            SELECT * FROM unnest(p_party_streams, p_party_roles, p_party_nodes, p_party_replace,
                                 p_party_before) AS w(stream_id, role, node_id, replace, before)
            WHERE w.before
        ), ended AS (
            DELETE FROM stream_parties sp USING w
            WHERE w.replace AND sp.root_id = p_scope_root AND sp.stream_id = w.stream_id
              AND sp.role = w.role AND sp.node_id IS DISTINCT FROM w.node_id
        )
        INSERT INTO stream_parties (root_id, node_id, stream_id, role)
        SELECT p_scope_root, w.node_id, w.stream_id, w.role FROM w WHERE w.node_id IS NOT NULL
        ON CONFLICT DO NOTHING;
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
            correlation_id, causation_id, idempotency_key, canonical)
        SELECT v_base + i - 1, p_root, p_node, v_seq + i,
               CASE WHEN i = 1 THEN v_tip ELSE v_hashes[i - 1] END, v_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key, p_canonical[i]
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

    -- Party writes the command made after its save, the events in (their insert policy saw
    -- the parties as they were, the one being ended too).
    IF false = ANY (p_party_before) THEN
        WITH w AS (
            SELECT * FROM unnest(p_party_streams, p_party_roles, p_party_nodes, p_party_replace,
                                 p_party_before) AS w(stream_id, role, node_id, replace, before)
            WHERE NOT w.before
        ), ended AS (
            DELETE FROM stream_parties sp USING w
            WHERE w.replace AND sp.root_id = p_scope_root AND sp.stream_id = w.stream_id
              AND sp.role = w.role AND sp.node_id IS DISTINCT FROM w.node_id
        )
        INSERT INTO stream_parties (root_id, node_id, stream_id, role)
        SELECT p_scope_root, w.node_id, w.stream_id, w.role FROM w WHERE w.node_id IS NOT NULL
        ON CONFLICT DO NOTHING;
    END IF;
END $$;

-- The login role calls it (it switches to civic_app itself); the runtime role has no use
-- for it.
REVOKE EXECUTE ON FUNCTION civic_command_append(
    uuid, text, boolean, uuid[], uuid, uuid, uuid, uuid, text, integer, uuid[], text[],
    smallint[], jsonb[], timestamptz[], timestamptz, text, uuid, uuid, text, bytea[], text,
    bytea, smallint, bytea, bigint, bytea[], uuid[], text[], uuid[], boolean[], boolean[]
) FROM PUBLIC;
