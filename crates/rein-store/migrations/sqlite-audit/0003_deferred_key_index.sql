-- The high-cardinality filter keys (agent, task, system, and the actor where it is not the agent)
-- leave the durable path: they are indexed after the commit, in sorted batches, by the store's
-- indexer (`src/sql/audit.rs`).
--
-- Each of the indexes dropped below took a different B-tree page per record in every group
-- commit (thousands of agents, tasks and systems), and SQLite's WAL writes whole pages: they were
-- most of the cost of a durable append. The indexer instead takes every record above the
-- watermark in one transaction and inserts their keys in key order, so that records sharing a
-- key share pages, and advances the watermark in the same transaction (a crash leaves the index
-- and the watermark as they were before it; a rerun does the same work again).
--
-- `audit_keys` holds one entry per (kind, key, record): kind 1 = agent, 2 = task, 3 = system,
-- 4 = actor of a record whose agent is unset or another (an actor filter finds the records whose
-- actor is their agent through kind 1, as the partial index of 0002 did). Every record at or
-- below `indexed_through_seq` has all its entries; reads combine that range with a scan of the
-- rows above it (see `select_sql`), so a record is found whether it is indexed yet or not. The
-- index is derived data: deleting both tables' rows and setting the watermark to 0 rebuilds it.
--
-- The time, event type and subject indexes stay on the durable path: time grows at the right
-- edge, event types are a few dozen values, and decision IDs (most subjects) are UUIDv7, so each
-- of them touches about one page per commit.

CREATE TABLE audit_keys (
    kind    INTEGER NOT NULL,
    key     TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (kind, key, seq)
) WITHOUT ROWID;

CREATE TABLE audit_index_state (
    id                  INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    indexed_through_seq INTEGER NOT NULL CHECK (indexed_through_seq >= 0)
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
