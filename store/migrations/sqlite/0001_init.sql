-- Lake files: the commit point of ingest. A file exists for readers only once its row is here.
CREATE TABLE lake_files (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    date         TEXT    NOT NULL,
    path         TEXT    NOT NULL UNIQUE,
    rows         INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    sha256       TEXT    NOT NULL,
    min_time     INTEGER NOT NULL,
    max_time     INTEGER NOT NULL,
    min_seq      INTEGER NOT NULL,
    max_seq      INTEGER NOT NULL,
    committed_at INTEGER NOT NULL
);
CREATE INDEX lake_files_tenant_date ON lake_files (tenant, date);

-- Every message ever committed, by its batch key (Nats-Msg-Id, or s<stream seq> without one):
-- a redelivery or a late publisher retry of a committed batch is refused here.
CREATE TABLE ingest_batches (
    batch_key    TEXT    PRIMARY KEY,
    stream_seq   INTEGER NOT NULL,
    events       INTEGER NOT NULL,
    rejected     INTEGER NOT NULL,
    committed_at INTEGER NOT NULL
);

CREATE TABLE checkpoints (
    consumer   TEXT    PRIMARY KEY,
    stream_seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE hosts (
    tenant     TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    events     INTEGER NOT NULL,
    PRIMARY KEY (tenant, host)
);

CREATE TABLE agents (
    tenant         TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    boot           INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    events_in      INTEGER NOT NULL,
    events_acked   INTEGER NOT NULL,
    events_dropped INTEGER NOT NULL,
    spool_bytes    INTEGER NOT NULL,
    PRIMARY KEY (tenant, agent_id)
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    token_sha256 TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE TABLE security_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    time     INTEGER NOT NULL,
    tenant   TEXT    NOT NULL,
    agent_id TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
