-- Rein's own Ed25519 signing keys (token signing, audit checkpoints), private halves sealed
-- under the master key. `doc` is the serde JSON of `rein_keys::SealedKey`; `version` is the
-- shared record layout's counter (updates of a key overwrite it; they are not compare-and-swap).

CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY NOT NULL,
    version       BIGINT NOT NULL,
    doc           TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX signing_keys_by_purpose ON signing_keys (purpose, created_at_ms, kid);
