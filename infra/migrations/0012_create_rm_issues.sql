-- Read model of issues / work orders (工单) for GET /v1/issues and the deadline clock
-- (projection "issues"). One row per issue, keyed by the root tenant first so the table can
-- be distributed by root.
--
-- `overdue` is not stored: reads compute it from due_at, status and the app's clock, so it
-- turns true as soon as a deadline passes; overdue_recorded_due_at is the deadline an
-- IssueOverdue event was recorded for (what the clock has still to do is the difference).
CREATE TABLE rm_issues (
    root_id                  uuid        NOT NULL,
    id                       uuid        NOT NULL,
    node_id                  uuid        NOT NULL,
    node_code                text        NOT NULL,
    title                    text        NOT NULL,
    description              text,
    category                 text        NOT NULL,
    source                   text        NOT NULL,
    external_id              text,
    status                   text        NOT NULL,
    requested_due_at         timestamptz,
    due_at                   timestamptz,
    overdue_recorded_due_at  timestamptz,
    overdue_recorded_at      timestamptz,
    assignee_id              uuid,
    assignee_code            text,
    reported_at              timestamptz NOT NULL,
    assigned_at              timestamptz,
    accepted_at              timestamptz,
    resolved_at              timestamptz,
    closed_at                timestamptz,
    -- closed, and the final resolution came by the deadline in force (or there was none).
    closed_on_time           boolean,
    result                   text,
    last_note                text,
    last_return_reason       text,
    last_extension_reason    text,
    last_reopen_reason       text,
    escalation_level         text,
    escalation_to_id         uuid,
    escalation_to_code       text,
    escalated_at             timestamptz,
    escalation_respond_by    timestamptz,
    escalation_answered_at   timestamptz,
    escalation_responders    text[]      NOT NULL DEFAULT '{}',
    escalation_overdue       boolean     NOT NULL DEFAULT false,
    evaluation_satisfaction  text,
    evaluation_resolved      boolean,
    evaluation_comment       text,
    evaluated_at             timestamptz,
    override_reason          text,
    return_count             integer     NOT NULL DEFAULT 0,
    extension_count          integer     NOT NULL DEFAULT 0,
    progress_count           integer     NOT NULL DEFAULT 0,
    reopen_count             integer     NOT NULL DEFAULT 0,
    escalation_count         integer     NOT NULL DEFAULT 0,
    version                  integer     NOT NULL,
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (root_id, id)
);
CREATE INDEX rm_issues_node ON rm_issues (root_id, node_id);
CREATE INDEX rm_issues_list ON rm_issues (root_id, reported_at DESC, id DESC);
CREATE INDEX rm_issues_assignee ON rm_issues (root_id, assignee_id) WHERE assignee_id IS NOT NULL;
CREATE INDEX rm_issues_external ON rm_issues (root_id, external_id) WHERE external_id IS NOT NULL;
-- What the deadline clock looks for (across tenants).
CREATE INDEX rm_issues_open_due ON rm_issues (due_at)
    WHERE status IN ('assigned', 'accepted');
CREATE INDEX rm_issues_whistle_due ON rm_issues (escalation_respond_by)
    WHERE escalation_answered_at IS NULL AND NOT escalation_overdue;

-- Unit principals see the issues assigned or escalated to them (stream parties).
ALTER TABLE rm_issues ENABLE ROW LEVEL SECURITY;
CREATE POLICY rm_issues_in_scope ON rm_issues USING (
    root_id = civic_scope_root()
    AND (node_id IN (SELECT civic_scope_nodes()) OR id IN (SELECT civic_party_streams())));
REVOKE ALL ON rm_issues FROM PUBLIC;
GRANT SELECT ON rm_issues TO civic_app;
