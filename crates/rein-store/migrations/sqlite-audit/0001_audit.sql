-- The audit log, in its own database file beside the main one (`rein.db` → `rein-audit.db`), so
-- that group commits never queue behind registry writes.
--
-- `doc` is the full record's serde JSON and the only source of truth; the other columns are
-- copies of its fields for filtering. `seq` is the chain position: the primary key rejects a
-- second record at a position, so two writers can never both extend the same head. It is an
-- INTEGER PRIMARY KEY (SQLite's rowid, 64-bit), so rows are stored in seq order without a
-- separate key index. The optional columns are indexed only where set.

CREATE TABLE audit_records (
    seq         INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    time_ms     BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    agent       TEXT,
    task_id     TEXT,
    system      TEXT,
    subject     TEXT,
    hash        TEXT NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX audit_records_by_time ON audit_records (time_ms, seq);
CREATE INDEX audit_records_by_type ON audit_records (event_type, seq);
CREATE INDEX audit_records_by_actor ON audit_records (actor, seq);
CREATE INDEX audit_records_by_agent ON audit_records (agent, seq) WHERE agent IS NOT NULL;
CREATE INDEX audit_records_by_task ON audit_records (task_id, seq) WHERE task_id IS NOT NULL;
CREATE INDEX audit_records_by_system ON audit_records (system, seq) WHERE system IS NOT NULL;
CREATE INDEX audit_records_by_subject ON audit_records (subject, seq) WHERE subject IS NOT NULL;

-- Signed checkpoints: `doc` is the serde JSON of `rein_audit::Checkpoint`.
CREATE TABLE audit_checkpoints (
    seq         INTEGER PRIMARY KEY NOT NULL CHECK (seq > 0),
    doc         TEXT NOT NULL
);
