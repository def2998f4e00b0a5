-- Fewer index entries per audit record on the durable path (as sqlite-audit/0002).
--
-- Every index entry of a record is written in the group commit that makes it durable, and the
-- indexes keyed by high-cardinality values (agent, actor, task, system, subject) each touch a
-- different page per record. The actor index duplicated the agent index for the bulk of the log:
-- an agent acting about itself (decisions, token requests, gateway calls) has `actor = agent`.
-- The actor index now holds only the records where the actor says something the agent column
-- does not; an actor filter reads the agent index for the others (see `select_sql` in
-- `src/sql/audit.rs`, which repeats this `WHERE` word for word).

DROP INDEX audit_records_by_actor;
CREATE INDEX audit_records_by_other_actor ON audit_records (actor, seq)
    WHERE agent IS NULL OR actor <> agent;

-- The first arm of that query, `agent = $n AND actor = $n`, matches nearly every record of the
-- agent, but without statistics on how actor depends on agent the planner multiplies the two
-- selectivities, expects about one row, and sorts all of the agent's records instead of reading
-- the agent index in order up to the page limit. These statistics tell it (ANALYZE fills them;
-- autovacuum keeps them current).
--
-- An existing log is analysed now, so that the statistics exist before autovacuum's next analyse
-- (late on a large append-only table). An empty one is not: statistics that say "no rows" make
-- PostgreSQL cache a sequential scan for the head query of every append, which then reads the
-- whole table at each commit.
CREATE STATISTICS audit_records_actor_agent (dependencies) ON actor, agent FROM audit_records;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_records) THEN
        ANALYZE audit_records;
    END IF;
END
$$;
