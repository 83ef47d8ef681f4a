-- Read model of inspection findings and their rectification (巡视整改; projection
-- "findings"): GET /v1/findings, the rectification ledger export (整改台账) and the
-- RectificationOverdue sweep of the deadline clock.
--
-- node_id is the node the finding was recorded at (its owner chain); codes and names are
-- read through the directory at query time, so reissued codes and renames show current.
-- Keys lead with root_id so the root tenant can be the distribution column.
CREATE TABLE rm_findings (
    root_id                 uuid        NOT NULL,
    id                      uuid        NOT NULL,
    node_id                 uuid        NOT NULL,
    node_code               text        NOT NULL,
    source                  text        NOT NULL,
    round                   text,
    description             text        NOT NULL,
    category                text        NOT NULL,
    responsible_unit_id     uuid,
    responsible_unit_code   text,
    measures                jsonb       NOT NULL DEFAULT '[]',
    due_on                  date,
    -- recorded | assigned | in_progress | completed | verified (domain.finding)
    status                  text        NOT NULL,
    -- why it is back in progress: 'rejected' (退回重改) or 'reopened' (回头看); NULL otherwise
    rework                  text,
    -- the due date a RectificationOverdue was recorded for (once per due date)
    overdue_recorded_due_on date,
    recorded_at             timestamptz NOT NULL,
    completed_at            timestamptz,
    completion_summary      text,
    verified_at             timestamptz,
    verification_comment    text,
    rejected_count          integer     NOT NULL DEFAULT 0,
    last_rejection_reason   text,
    reopened_count          integer     NOT NULL DEFAULT 0,
    last_reopen_reason      text,
    progress_count          integer     NOT NULL DEFAULT 0,
    last_progress_note      text,
    last_progress_evidence  text,
    last_progress_at        timestamptz,
    version                 integer     NOT NULL,
    updated_at              timestamptz NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_findings_node ON rm_findings (root_id, node_id);
CREATE INDEX rm_findings_recorded ON rm_findings (root_id, recorded_at, id);
CREATE INDEX rm_findings_unit ON rm_findings (root_id, responsible_unit_id);
-- The clock's sweep: open rectifications by due date, across tenants.
CREATE INDEX rm_findings_open_due ON rm_findings (due_on)
    WHERE status IN ('assigned', 'in_progress', 'completed');

ALTER TABLE rm_findings ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_findings_in_scope ON rm_findings USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_findings FROM PUBLIC;
GRANT SELECT ON rm_findings TO civic_app;
