-- Fewer index entries per audit record on the durable path.
--
-- Every index entry of a record is written (as a whole WAL page, on SQLite) in the group commit
-- that makes it durable, and the indexes keyed by high-cardinality values (agent, actor, task,
-- system, subject) each dirty a different page per record. The actor index duplicated the agent
-- index for the bulk of the log: an agent acting about itself (decisions, token requests,
-- gateway calls) has `actor = agent`. The actor index now holds only the records where the
-- actor says something the agent column does not; an actor filter reads the agent index for the
-- others (see `select_sql` in `src/sql/audit.rs`, which repeats this `WHERE` word for word).

DROP INDEX audit_records_by_actor;
CREATE INDEX audit_records_by_other_actor ON audit_records (actor, seq)
    WHERE agent IS NULL OR actor <> agent;
