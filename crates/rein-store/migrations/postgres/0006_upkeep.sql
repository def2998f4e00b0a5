-- Strict replay protection, replicas' acknowledgements of revocations, and pruning.
--
-- `used_assertions`: the client assertions (RFC 7523) the token endpoint accepted, one row per
-- (agent, jti) until the assertion expires; the primary key makes "accepted once" hold across
-- every replica sharing the database.
-- `replicas`: each running server's heartbeat.
-- `revocation_acks`: which replica applied which revocation to its decision index, and when.
-- `revocations.moot_ms`: when a revocation stops mattering (every token it covers has expired),
-- so that its row can be pruned; NULL for revocations that never become moot.

CREATE TABLE used_assertions (
    agent      TEXT COLLATE "C" NOT NULL,
    jti        TEXT COLLATE "C" NOT NULL,
    expires_ms BIGINT NOT NULL,
    PRIMARY KEY (agent, jti)
);
CREATE INDEX used_assertions_expiry ON used_assertions (expires_ms);

CREATE TABLE replicas (
    id         TEXT COLLATE "C" PRIMARY KEY,
    started_ms BIGINT NOT NULL,
    seen_ms    BIGINT NOT NULL
);

CREATE TABLE revocation_acks (
    revocation TEXT COLLATE "C" NOT NULL,
    replica    TEXT COLLATE "C" NOT NULL,
    applied_ms BIGINT NOT NULL,
    PRIMARY KEY (revocation, replica)
);

ALTER TABLE revocations ADD COLUMN moot_ms BIGINT;
CREATE INDEX revocations_moot ON revocations (moot_ms) WHERE moot_ms IS NOT NULL;
