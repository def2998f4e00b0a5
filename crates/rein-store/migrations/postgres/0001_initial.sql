-- Each record is its serde JSON document plus index columns copied from it in the same
-- statement. `version` is the compare-and-swap counter. Timestamps are unix milliseconds.
-- Text columns use the "C" collation: lists are ordered by key bytewise, as on SQLite.

CREATE TABLE users (
    name        TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    user_name   TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_name, id);

CREATE TABLE teams (
    name        TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- The membership index, rewritten in the transaction that writes the team.
CREATE TABLE team_members (
    team        TEXT COLLATE "C" NOT NULL REFERENCES teams (name),
    user_name   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (team, user_name)
);
CREATE INDEX team_members_by_user ON team_members (user_name, team);

CREATE TABLE systems (
    name        TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    environment TEXT COLLATE "C" NOT NULL,
    owner_team  TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE agents (
    id          TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    team        TEXT COLLATE "C" NOT NULL,
    environment TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX agents_by_team ON agents (team, id);
CREATE INDEX agents_by_environment ON agents (environment, id);
CREATE INDEX agents_by_status ON agents (status, id);

CREATE TABLE grants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    version     BIGINT NOT NULL,
    doc         TEXT NOT NULL,
    agent_id    TEXT COLLATE "C" NOT NULL,
    system      TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX grants_by_agent_system ON grants (agent_id, system);
CREATE INDEX grants_by_system ON grants (system);
CREATE INDEX grants_by_status ON grants (status);
