-- Revocations of a token, a task, a team, an environment or every token issued before a time
-- (`rein_core::revocation::Revocation`). `doc` is the serde JSON; `kind` and `at_ms` are copies
-- for listing. Lifting a revocation updates its document (compare-and-swap on `version`).

CREATE TABLE revocations (
    id      TEXT PRIMARY KEY NOT NULL,
    version BIGINT NOT NULL,
    doc     TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at_ms   BIGINT NOT NULL
);
