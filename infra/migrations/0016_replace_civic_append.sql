-- civic_append, revised: the idempotency look-up moves from the start of every append to
-- the version-conflict branch.
--
-- The look-up was `EXISTS (... WHERE root_id = $1 AND event_id = $7[1])` on every append.
-- Under row-level security its plan is cached per connection, and a plan made while the
-- table was small can walk events_root_position (every event of the tenant) instead of the
-- (root_id, event_id) key: appends then slow down as the tenant grows (seen: ~16 ms each
-- after 50k events). A retried append of stored events always finds its stream moved past
-- the expected version (its own events moved it), so checking only there keeps the
-- semantics and costs nothing on the normal path.
--
-- It also runs two statements where it ran five (head + version in one, insert + head move
-- + answer in one): PostgreSQL's executor start-up per statement was most of an append's
-- cost on the server.
CREATE OR REPLACE FUNCTION civic_append(
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
    p_digests bytea[]
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
            correlation_id, causation_id, idempotency_key)
        SELECT v_pos[i], p_root, p_node, v_seqs[i], v_prevs[i], v_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key
        FROM generate_subscripts(p_event_ids, 1) AS i
    ), head AS (
        UPDATE chain_heads SET seq = v_seq, hash = v_hash WHERE node_id = p_node
    )
    SELECT v_pos[i], p_expected + i, v_seqs[i], v_hashes[i]
    FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;
