-- The audit log. `doc` is the full record's serde JSON and the only source of truth; the other
-- columns are copies of its fields for filtering. `seq` is the chain position: the primary key
-- rejects a second record at a position, so two replicas can never both extend the same head
-- (the later one waits for the earlier one's commit and then fails with a unique violation).
-- The optional columns are indexed only where set. Text columns use the "C" collation, as in
-- 0001.

CREATE TABLE audit_records (
    seq         BIGINT PRIMARY KEY NOT NULL CHECK (seq > 0),
    time_ms     BIGINT NOT NULL,
    event_type  TEXT COLLATE "C" NOT NULL,
    actor       TEXT COLLATE "C" NOT NULL,
    agent       TEXT COLLATE "C",
    task_id     TEXT COLLATE "C",
    system      TEXT COLLATE "C",
    subject     TEXT COLLATE "C",
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
    seq         BIGINT PRIMARY KEY NOT NULL CHECK (seq > 0),
    doc         TEXT NOT NULL
);

-- Rein's own Ed25519 signing keys (token signing, audit checkpoints), private halves sealed
-- under the master key. `doc` is the serde JSON of `rein_keys::SealedKey`; `version` is the
-- shared record layout's counter (updates of a key overwrite it; they are not compare-and-swap).
CREATE TABLE signing_keys (
    kid           TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    version       BIGINT NOT NULL,
    doc           TEXT NOT NULL,
    purpose       TEXT COLLATE "C" NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX signing_keys_by_purpose ON signing_keys (purpose, created_at_ms, kid);
