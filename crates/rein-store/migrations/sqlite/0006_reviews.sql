-- Access reviews (`rein_core::review`): a campaign, and one item per agent under review, stored
-- apart so that reviewers of different agents never contend for one record. An item's key is
-- `<campaign ID> <agent SPIFFE ID>`; `state` is `pending` until every grant is decided.

CREATE TABLE review_campaigns (
    id         TEXT PRIMARY KEY NOT NULL,
    version    BIGINT NOT NULL,
    doc        TEXT NOT NULL,
    status     TEXT NOT NULL,
    opened_ms  BIGINT NOT NULL
);
CREATE INDEX review_campaigns_by_status ON review_campaigns (status, id);

CREATE TABLE review_items (
    id         TEXT PRIMARY KEY NOT NULL,
    version    BIGINT NOT NULL,
    doc        TEXT NOT NULL,
    campaign   TEXT NOT NULL REFERENCES review_campaigns (id),
    agent_id   TEXT NOT NULL,
    state      TEXT NOT NULL
);
CREATE INDEX review_items_by_campaign ON review_items (campaign, id);
CREATE INDEX review_items_by_agent ON review_items (agent_id, state);
