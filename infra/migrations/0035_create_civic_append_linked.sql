-- Appends whose chain links the caller computes (the 国密 profile: SM3 links, which
-- PostgreSQL cannot compute). Two calls in the appending transaction:
--
-- 1. civic_chain_tip(root, node) locks the node's chain head (creating it at seq 0) and
--    returns its seq and hash and the transaction's position base (xid << 16);
-- 2. the caller computes each link H(prev || int8(seq) || int8(position) || digest) with
--    position = base + tx_index + i, and civic_append_linked stores the events with them.
--
-- The head stays locked between the two (FOR UPDATE, same transaction), so nothing can
-- move it; civic_append_linked still checks it is where the links start. Otherwise it is
-- civic_append (migration 0016): same version check, same idempotent retry, same rows.
CREATE FUNCTION civic_chain_tip(p_root uuid, p_node uuid)
RETURNS TABLE (tip_seq bigint, tip_hash bytea, tip_base bigint)
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chain_heads (node_id, root_id, seq, hash)
    VALUES (p_node, p_root, 0, decode(repeat('00', 32), 'hex'))
    ON CONFLICT (node_id) DO NOTHING;
    RETURN QUERY
        SELECT h.seq, h.hash, pg_current_xact_id()::text::bigint << 16
        FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE OF h;
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
    p_hashes bytea[]
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
            correlation_id, causation_id, idempotency_key)
        SELECT v_base + i - 1, p_root, p_node, v_seq + i,
               CASE WHEN i = 1 THEN v_hash ELSE p_hashes[i - 1] END, p_hashes[i], p_stream,
               p_stream_type, p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i],
               p_data[i], p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id,
               p_causation_id, p_idempotency_key
        FROM generate_subscripts(p_event_ids, 1) AS i
    ), head AS (
        UPDATE chain_heads SET seq = v_seq + n, hash = p_hashes[n] WHERE node_id = p_node
    )
    SELECT v_base + i - 1, p_expected + i, v_seq + i, p_hashes[i]
    FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;

-- The deployment's crypto profile, recorded once (see infra/crypto_profile.py): a
-- deployment never mixes chain algorithms, so every event verifies with the recorded one.
CREATE TABLE crypto_profile (
    only_row     boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    profile      text        NOT NULL,
    chain_hash   text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER crypto_profile_append_only
    BEFORE UPDATE OR DELETE ON crypto_profile
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
GRANT SELECT ON crypto_profile TO civic_app;
