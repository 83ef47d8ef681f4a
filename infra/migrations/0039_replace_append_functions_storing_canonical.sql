-- The three append functions store each event's canonical bytes (migration 0038): one more
-- parameter, p_canonical bytea[] (the i-th event's bytes, those its digest covers), last in
-- each, and one more column in each INSERT (canonical = p_canonical[i]). Nothing else in them
-- changes. A NULL array (or a NULL element) stores NULL: that event verifies from its
-- columns, as events appended before migration 0038 do.
--
-- The functions are dropped and created again because PostgreSQL cannot add a parameter to
-- an existing function; the bodies below are those of migrations 0016 (civic_append), 0035
-- (civic_append_linked) and 0036 (civic_command_append) with the two changes above.
DROP FUNCTION civic_append(
    uuid, uuid, uuid, text, integer, integer, uuid[], text[], smallint[], jsonb[],
    timestamptz[], timestamptz, text, uuid, uuid, text, bytea[]
);
DROP FUNCTION civic_append_linked(
    uuid, uuid, uuid, text, integer, integer, uuid[], text[], smallint[], jsonb[],
    timestamptz[], timestamptz, text, uuid, uuid, text, bigint, bytea[]
);
DROP FUNCTION civic_command_append(
    uuid, text, boolean, uuid[], uuid, uuid, uuid, uuid, text, integer, uuid[], text[],
    smallint[], jsonb[], timestamptz[], timestamptz, text, uuid, uuid, text, bytea[], text,
    bytea, smallint, bytea, bigint
);

CREATE FUNCTION civic_append(
    p_root uuid,
    p_node uuid,
    p_stream uuid,
    p_stream_type text,
    p_expected integer,
    p_tx_index integer,
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
    p_canonical bytea[]
) RETURNS TABLE (event_position bigint, event_version integer, event_seq bigint, event_hash bytea)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := cardinality(p_event_ids);
    v_first    uuid := p_event_ids[1];
    v_seq      bigint;
    v_hash     bytea;
    v_current  integer;
    v_base     bigint;
    v_pos      bigint[];
    v_seqs     bigint[];
    v_prevs    bytea[];
    v_hashes   bytea[];
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'nothing to append' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tx_index < 0 OR p_tx_index + n > 65536 THEN
        RAISE EXCEPTION 'a transaction appends at most 65536 events'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- The node's chain head, locked (appends to one node are serialised), and the stream's
    -- version, in one statement. Under READ COMMITTED the version comes from the statement's
    -- snapshot, which may predate a commit that landed while we waited for the lock: the
    -- unique (root_id, stream_id, version) key then refuses the insert, and the store reports
    -- that as the same conflict as CV409.
    SELECT h.seq, h.hash,
           (SELECT coalesce(max(e.version), 0) FROM events e
            WHERE e.root_id = p_root AND e.stream_id = p_stream)
    INTO v_seq, v_hash, v_current
    FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE OF h;
    IF NOT FOUND THEN
        INSERT INTO chain_heads (node_id, root_id, seq, hash)
        VALUES (p_node, p_root, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (node_id) DO NOTHING;
        SELECT h.seq, h.hash,
               (SELECT coalesce(max(e.version), 0) FROM events e
                WHERE e.root_id = p_root AND e.stream_id = p_stream)
        INTO v_seq, v_hash, v_current
        FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE OF h;
    END IF;

    IF v_current <> p_expected THEN
        -- Idempotent on event id: a retried append of stored events returns them unchanged.
        IF EXISTS (SELECT 1 FROM events e WHERE e.root_id = p_root AND e.event_id = v_first) THEN
            RETURN QUERY
                SELECT e.position, e.version, e.node_seq, e.hash FROM events e
                WHERE e.root_id = p_root AND e.event_id = ANY (p_event_ids) ORDER BY e.version;
            RETURN;
        END IF;
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_current, p_expected
            USING ERRCODE = 'CV409', DETAIL = v_current::text;
    END IF;

    v_base := (pg_current_xact_id()::text::bigint << 16) + p_tx_index;
    v_pos := array_fill(0::bigint, ARRAY[n]);
    v_seqs := v_pos;
    v_prevs := array_fill(''::bytea, ARRAY[n]);
    v_hashes := v_prevs;
    FOR i IN 1..n LOOP
        v_prevs[i] := v_hash;
        v_seq      := v_seq + 1;
        v_pos[i]   := v_base + i - 1;
        v_hash     := sha256(v_hash || int8send(v_seq) || int8send(v_pos[i]) || p_digests[i]);
        v_seqs[i]  := v_seq;
        v_hashes[i] := v_hash;
    END LOOP;

    -- Insert, move the head and answer in one statement (each statement a function runs
    -- pays the executor's start-up; an append is mostly that).
    RETURN QUERY
    WITH appended AS (
        INSERT INTO events (
            position, root_id, node_id, node_seq, prev_hash, hash, stream_id, stream_type,
            version, event_id, type, schema_version, data, occurred_at, recorded_at, actor,
            correlation_id, causation_id, idempotency_key, canonical)
        SELECT v_pos[i], p_root, p_node, v_seqs[i], v_prevs[i], v_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key, p_canonical[i]
        FROM generate_subscripts(p_event_ids, 1) AS i
    ), head AS (
        UPDATE chain_heads SET seq = v_seq, hash = v_hash WHERE node_id = p_node
    )
    SELECT v_pos[i], p_expected + i, v_seqs[i], v_hashes[i]
    FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;

CREATE FUNCTION civic_append_linked(
    p_root uuid,
    p_node uuid,
    p_stream uuid,
    p_stream_type text,
    p_expected integer,
    p_tx_index integer,
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
    p_from_seq bigint,
    p_hashes bytea[],
    p_canonical bytea[]
) RETURNS TABLE (event_position bigint, event_version integer, event_seq bigint, event_hash bytea)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := cardinality(p_event_ids);
    v_first    uuid := p_event_ids[1];
    v_seq      bigint;
    v_hash     bytea;
    v_current  integer;
    v_base     bigint;
BEGIN
    IF n IS NULL OR n = 0 OR cardinality(p_hashes) IS DISTINCT FROM n THEN
        RAISE EXCEPTION 'nothing to append, or not one hash per event'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tx_index < 0 OR p_tx_index + n > 65536 THEN
        RAISE EXCEPTION 'a transaction appends at most 65536 events'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    SELECT h.seq, h.hash,
           (SELECT coalesce(max(e.version), 0) FROM events e
            WHERE e.root_id = p_root AND e.stream_id = p_stream)
    INTO v_seq, v_hash, v_current
    FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE OF h;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'call civic_chain_tip first' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF v_current <> p_expected THEN
        IF EXISTS (SELECT 1 FROM events e WHERE e.root_id = p_root AND e.event_id = v_first) THEN
            RETURN QUERY
                SELECT e.position, e.version, e.node_seq, e.hash FROM events e
                WHERE e.root_id = p_root AND e.event_id = ANY (p_event_ids) ORDER BY e.version;
            RETURN;
        END IF;
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_current, p_expected
            USING ERRCODE = 'CV409', DETAIL = v_current::text;
    END IF;
    IF v_seq <> p_from_seq THEN
        RAISE EXCEPTION 'the chain head moved from seq % to %', p_from_seq, v_seq
            USING ERRCODE = 'serialization_failure';
    END IF;
    v_base := (pg_current_xact_id()::text::bigint << 16) + p_tx_index;

    RETURN QUERY
    WITH appended AS (
        INSERT INTO events (
            position, root_id, node_id, node_seq, prev_hash, hash, stream_id, stream_type,
            version, event_id, type, schema_version, data, occurred_at, recorded_at, actor,
            correlation_id, causation_id, idempotency_key, canonical)
        SELECT v_base + i - 1, p_root, p_node, v_seq + i,
               CASE WHEN i = 1 THEN v_hash ELSE p_hashes[i - 1] END, p_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key, p_canonical[i]
        FROM generate_subscripts(p_event_ids, 1) AS i
    ), head AS (
        UPDATE chain_heads SET seq = v_seq + n, hash = p_hashes[n] WHERE node_id = p_node
    )
    SELECT v_base + i - 1, p_expected + i, v_seq + i, p_hashes[i]
    FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;

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
    p_canonical bytea[]
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
END $$;

-- As in migration 0036: the login role calls it (it switches to civic_app itself).
REVOKE EXECUTE ON FUNCTION civic_command_append(
    uuid, text, boolean, uuid[], uuid, uuid, uuid, uuid, text, integer, uuid[], text[],
    smallint[], jsonb[], timestamptz[], timestamptz, text, uuid, uuid, text, bytea[], text,
    bytea, smallint, bytea, bigint, bytea[]
) FROM PUBLIC;
