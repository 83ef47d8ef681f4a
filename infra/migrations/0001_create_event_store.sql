-- The append-only event store, its per-node hash chains, and the runtime role.
--
-- Global order: position = (transaction id << 16) + index within the transaction.
-- Consumers read only positions below (pg_snapshot_xmin(current snapshot) << 16): every
-- transaction with a smaller id has committed or aborted, so nothing can still appear
-- behind a reader's cursor. Positions are strictly increasing and never reused; they are
-- not consecutive integers (rolled-back transactions and read-only ones leave holes that
-- can never fill), which is what "no gaps" means for a consumer: no event is ever skipped.

DO $$
BEGIN
    CREATE ROLE civic_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- roles are cluster-wide: another database of this cluster made it already
END $$;

DO $$
BEGIN
    EXECUTE format('GRANT civic_app TO %I', current_user);
EXCEPTION WHEN OTHERS THEN
    NULL;  -- already a member, or a superuser (who may SET ROLE to anyone)
END $$;

CREATE TABLE events (
    position        bigint      NOT NULL,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    root_id         uuid        NOT NULL,
    node_id         uuid        NOT NULL,
    node_seq        bigint      NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    stream_id       uuid        NOT NULL,
    stream_type     text        NOT NULL,
    version         integer     NOT NULL,
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  smallint    NOT NULL,
    data            jsonb       NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor           text        NOT NULL,
    correlation_id  uuid,
    causation_id    uuid,
    idempotency_key text,
    CONSTRAINT events_pkey PRIMARY KEY (position),
    CONSTRAINT events_stream_version UNIQUE (root_id, stream_id, version),
    CONSTRAINT events_event_id UNIQUE (root_id, event_id),
    CONSTRAINT events_node_seq UNIQUE (node_id, node_seq),
    CONSTRAINT events_version_positive CHECK (version > 0),
    CONSTRAINT events_seq_positive CHECK (node_seq > 0)
);

-- The head of each node's hash chain; the row lock serialises appends per node.
CREATE TABLE chain_heads (
    node_id  uuid   PRIMARY KEY,
    root_id  uuid   NOT NULL,
    seq      bigint NOT NULL,
    hash     bytea  NOT NULL
);

-- Append-only, enforced by the database for everyone who does not disable triggers.
CREATE FUNCTION civic_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event store is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION civic_refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION civic_refuse_change();

-- Append one stream's batch for one node in a single round trip.
-- p_digests[i] is the hash of the canonical encoding of event i (computed by the store);
-- the chain link is sha256(prev_hash || int8(seq) || int8(position) || digest).
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
    p_digests bytea[]
) RETURNS TABLE (event_position bigint, event_version integer, event_seq bigint, event_hash bytea)
LANGUAGE plpgsql AS $$
DECLARE
    n          integer := cardinality(p_event_ids);
    v_seq      bigint;
    v_hash     bytea;
    v_current  integer;
    v_base     bigint;
    v_pos      bigint[] := '{}';
    v_seqs     bigint[] := '{}';
    v_prevs    bytea[]  := '{}';
    v_hashes   bytea[]  := '{}';
BEGIN
    IF n IS NULL OR n = 0 THEN
        RAISE EXCEPTION 'nothing to append' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_tx_index < 0 OR p_tx_index + n > 65536 THEN
        RAISE EXCEPTION 'a transaction appends at most 65536 events'
            USING ERRCODE = 'program_limit_exceeded';
    END IF;

    -- Idempotent on event id: a retried append of stored events returns them unchanged.
    IF EXISTS (SELECT 1 FROM events e WHERE e.root_id = p_root AND e.event_id = p_event_ids[1]) THEN
        RETURN QUERY
            SELECT e.position, e.version, e.node_seq, e.hash FROM events e
            WHERE e.root_id = p_root AND e.event_id = ANY (p_event_ids) ORDER BY e.version;
        RETURN;
    END IF;

    SELECT h.seq, h.hash INTO v_seq, v_hash FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO chain_heads (node_id, root_id, seq, hash)
        VALUES (p_node, p_root, 0, decode(repeat('00', 32), 'hex'))
        ON CONFLICT (node_id) DO NOTHING;
        SELECT h.seq, h.hash INTO v_seq, v_hash FROM chain_heads h WHERE h.node_id = p_node FOR UPDATE;
    END IF;

    -- Optimistic concurrency; read after taking the node lock, so it sees the latest commit.
    SELECT coalesce(max(e.version), 0) INTO v_current
    FROM events e WHERE e.root_id = p_root AND e.stream_id = p_stream;
    IF v_current <> p_expected THEN
        RAISE EXCEPTION 'stream % is at version %, expected %', p_stream, v_current, p_expected
            USING ERRCODE = 'CV409', DETAIL = v_current::text;
    END IF;

    v_base := (pg_current_xact_id()::text::bigint << 16) + p_tx_index;
    FOR i IN 1..n LOOP
        v_prevs  := v_prevs || v_hash;
        v_seq    := v_seq + 1;
        v_hash   := sha256(v_hash || int8send(v_seq) || int8send(v_base + i - 1) || p_digests[i]);
        v_pos    := v_pos || (v_base + i - 1);
        v_seqs   := v_seqs || v_seq;
        v_hashes := v_hashes || v_hash;
    END LOOP;

    INSERT INTO events (
        position, root_id, node_id, node_seq, prev_hash, hash, stream_id, stream_type, version,
        event_id, type, schema_version, data, occurred_at, recorded_at, actor, correlation_id,
        causation_id, idempotency_key)
    SELECT v_pos[i], p_root, p_node, v_seqs[i], v_prevs[i], v_hashes[i], p_stream, p_stream_type,
           p_expected + i, p_event_ids[i], p_types[i], p_schema_versions[i], p_data[i],
           p_occurred_at[i], p_recorded_at, p_actor, p_correlation_id, p_causation_id,
           p_idempotency_key
    FROM generate_subscripts(p_event_ids, 1) AS i;

    UPDATE chain_heads SET seq = v_seq, hash = v_hash WHERE node_id = p_node;

    RETURN QUERY SELECT v_pos[i], p_expected + i, v_seqs[i], v_hashes[i]
                 FROM generate_subscripts(p_event_ids, 1) AS i;
END $$;

-- The highest position below which every transaction has settled.
CREATE FUNCTION civic_horizon() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16)
$$;

-- Responses of commands, so a retried request (same Idempotency-Key) gets the first answer.
CREATE TABLE idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    request_hash  bytea       NOT NULL,
    status        smallint    NOT NULL,
    response      bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, key)
);

REVOKE ALL ON events, chain_heads, idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT ON events TO civic_app;
GRANT SELECT, INSERT, UPDATE ON chain_heads TO civic_app;
GRANT SELECT, INSERT ON idempotency_keys TO civic_app;
