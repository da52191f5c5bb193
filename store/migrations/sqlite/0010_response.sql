-- Response (issue 17): approvers' public keys (the server holds no private key), requests with the
-- command text approvers sign, their approvals, and each agent's command counter.
CREATE TABLE approvers (
    tenant      TEXT    NOT NULL,
    public_key  TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    owner_token TEXT    NOT NULL,
    added_at    INTEGER NOT NULL,
    revoked_at  INTEGER,
    PRIMARY KEY (tenant, public_key)
);
CREATE TABLE response_requests (
    id           TEXT    PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    destructive  INTEGER NOT NULL,
    needed       INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX response_requests_recent ON response_requests (tenant, requested_at);
CREATE TABLE response_approvals (
    request_id TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    sig        TEXT    NOT NULL,
    by_token   TEXT    NOT NULL,
    at         INTEGER NOT NULL,
    PRIMARY KEY (request_id, public_key)
);
CREATE TABLE response_counters (
    tenant TEXT    NOT NULL,
    agent  TEXT    NOT NULL,
    last   INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent)
);
-- One row per target agent: what the agent was handed and what it reported (signed with its key).
CREATE TABLE response_targets (
    request_id   TEXT    NOT NULL,
    agent        TEXT    NOT NULL,
    counter      INTEGER NOT NULL,
    state        TEXT    NOT NULL,
    delivered_at INTEGER,
    result       TEXT,
    result_sig   TEXT,
    result_at    INTEGER,
    PRIMARY KEY (request_id, agent)
);
CREATE INDEX response_targets_agent ON response_targets (agent, state);
