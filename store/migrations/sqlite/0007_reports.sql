-- Anomaly reports (anomaly::report::Report as JSON in body), scheduled or run on demand; never
-- updated once written.
CREATE TABLE reports (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    period_from BIGINT NOT NULL,
    period_to BIGINT NOT NULL,
    anomalies BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX reports_recent ON reports (tenant, created_at);
CREATE INDEX reports_by_name ON reports (tenant, name, period_to);
