-- Uniform alerts (the whole alert as JSON in body; filter columns beside it) and analysts' comments.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    level BIGINT NOT NULL,
    status TEXT NOT NULL,
    handling TEXT NOT NULL,
    host TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    techniques TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    count BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX alerts_dedup ON alerts (tenant, dedup_key, last_seen);
CREATE INDEX alerts_recent ON alerts (tenant, last_seen);
CREATE TABLE alert_comments (
    alert_id TEXT NOT NULL,
    author TEXT NOT NULL,
    handling TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_comments_alert ON alert_comments (alert_id, created_at);
