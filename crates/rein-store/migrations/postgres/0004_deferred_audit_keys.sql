-- The high-cardinality audit filter keys leave the durable path (as sqlite-audit/0003, which
-- explains the layout): agent, task, system and the actor where it is not the agent are indexed
-- after the commit, in sorted batches, into `audit_keys`, up to the watermark in
-- `audit_index_state`; reads combine that range with a scan of the rows above the watermark.
--
-- Several replicas may run the indexer at once: each locks the state row first (`FOR UPDATE`),
-- inserts with `ON CONFLICT DO NOTHING`, and only ever moves the watermark forward.

CREATE TABLE audit_keys (
    kind    SMALLINT NOT NULL,
    key     TEXT COLLATE "C" NOT NULL,
    seq     BIGINT NOT NULL,
    PRIMARY KEY (kind, key, seq)
);

CREATE TABLE audit_index_state (
    id                  SMALLINT PRIMARY KEY NOT NULL CHECK (id = 1),
    indexed_through_seq BIGINT NOT NULL CHECK (indexed_through_seq >= 0)
);

-- The existing log is indexed now, in key order, and the watermark set to its head.
INSERT INTO audit_keys (kind, key, seq)
SELECT kind, key, seq FROM (
    SELECT 1 AS kind, agent AS key, seq FROM audit_records WHERE agent IS NOT NULL
    UNION ALL SELECT 2, task_id, seq FROM audit_records WHERE task_id IS NOT NULL
    UNION ALL SELECT 3, system, seq FROM audit_records WHERE system IS NOT NULL
    UNION ALL SELECT 4, actor, seq FROM audit_records WHERE agent IS NULL OR actor <> agent
) AS entries
ORDER BY kind, key, seq;

INSERT INTO audit_index_state (id, indexed_through_seq)
SELECT 1, COALESCE(MAX(seq), 0) FROM audit_records;

DROP INDEX audit_records_by_agent;
DROP INDEX audit_records_by_task;
DROP INDEX audit_records_by_system;
DROP INDEX audit_records_by_other_actor;
