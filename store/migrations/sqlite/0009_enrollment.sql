-- Enrollment: tenant-bound, expiring, limited-use tokens (stored as hashes), the agents enrolled with
-- them (identity = their own public key), and switches such as "enrollment closed".
CREATE TABLE enroll_tokens (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    grp          TEXT,
    token_sha256 TEXT    NOT NULL UNIQUE,
    uses_left    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE TABLE enrolled_agents (
    agent_id    TEXT    PRIMARY KEY,
    tenant      TEXT    NOT NULL,
    public_key  TEXT    NOT NULL UNIQUE,
    grp         TEXT,
    host        TEXT    NOT NULL,
    token_id    TEXT    NOT NULL,
    enrolled_at INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX enrolled_agents_tenant ON enrolled_agents (tenant, enrolled_at);
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
