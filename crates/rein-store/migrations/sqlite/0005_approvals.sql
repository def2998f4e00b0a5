-- Step-up approval requests (`rein_core::approval::ApprovalRequest`) and the delivery state of
-- the webhooks that announce them.
--
-- `binding` is what identical requests share (agent, system, action, argument digest); the
-- partial unique index keeps one pending request per binding, so concurrent step-ups for the
-- same call open one request, not several.

CREATE TABLE approvals (
    id         TEXT PRIMARY KEY NOT NULL,
    version    BIGINT NOT NULL,
    doc        TEXT NOT NULL,
    status     TEXT NOT NULL,
    binding    TEXT NOT NULL,
    expires_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (binding) WHERE status = 'pending';
CREATE INDEX approvals_status ON approvals (status, expires_ms);

CREATE TABLE webhook_deliveries (
    id         TEXT PRIMARY KEY NOT NULL,
    subject    TEXT NOT NULL,
    doc        TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject);
