-- Lake files: the commit point of ingest. A file exists for readers only once its row is here.
CREATE TABLE lake_files (
    id           BIGINT PRIMARY KEY,
    tenant       TEXT    NOT NULL,
    date         TEXT    NOT NULL,
    path         TEXT    NOT NULL UNIQUE,
    rows         BIGINT  NOT NULL,
    bytes        BIGINT  NOT NULL,
    sha256       TEXT    NOT NULL,
    min_time     BIGINT  NOT NULL,
    max_time     BIGINT  NOT NULL,
    min_seq      BIGINT  NOT NULL,
    max_seq      BIGINT  NOT NULL,
    committed_at BIGINT  NOT NULL
);
CREATE INDEX lake_files_tenant_date ON lake_files (tenant, date);

-- Every message ever committed, by its batch key (Nats-Msg-Id, or s<stream seq> without one):
-- a redelivery or a late publisher retry of a committed batch is refused here.
CREATE TABLE ingest_batches (
    batch_key    TEXT    PRIMARY KEY,
    stream_seq   BIGINT  NOT NULL,
    events       BIGINT  NOT NULL,
    rejected     BIGINT  NOT NULL,
    committed_at BIGINT  NOT NULL
);

CREATE TABLE checkpoints (
    consumer   TEXT    PRIMARY KEY,
    stream_seq BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

CREATE TABLE hosts (
    tenant     TEXT    NOT NULL,
    host       TEXT    NOT NULL,
    agent_id   TEXT    NOT NULL,
    first_seen BIGINT  NOT NULL,
    last_seen  BIGINT  NOT NULL,
    events     BIGINT  NOT NULL,
    PRIMARY KEY (tenant, host)
);

CREATE TABLE agents (
    tenant         TEXT    NOT NULL,
    agent_id       TEXT    NOT NULL,
    host           TEXT    NOT NULL,
    boot           BIGINT  NOT NULL,
    last_heartbeat BIGINT  NOT NULL,
    events_in      BIGINT  NOT NULL,
    events_acked   BIGINT  NOT NULL,
    events_dropped BIGINT  NOT NULL,
    spool_bytes    BIGINT  NOT NULL,
    PRIMARY KEY (tenant, agent_id)
);

CREATE TABLE api_tokens (
    id           TEXT    PRIMARY KEY,
    name         TEXT    NOT NULL,
    tenant       TEXT    NOT NULL,
    token_sha256 TEXT    NOT NULL UNIQUE,
    created_at   BIGINT  NOT NULL,
    revoked_at   BIGINT
);

CREATE TABLE security_events (
    id       BIGSERIAL PRIMARY KEY,
    time     BIGINT  NOT NULL,
    tenant   TEXT    NOT NULL,
    agent_id TEXT    NOT NULL,
    kind     TEXT    NOT NULL,
    detail   TEXT    NOT NULL
);
