-- Incidents (correlate::incident::Incident as JSON in body, written by ingest; filter columns beside
-- it). Status and owner are the analysts' and are never overwritten by ingest, except to mark an
-- incident merged into another. Comments have their own table.
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    severity BIGINT NOT NULL,
    hosts TEXT NOT NULL,
    techniques TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    merged_into TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX incidents_recent ON incidents (tenant, last_seen);
CREATE TABLE incident_comments (
    incident_id TEXT NOT NULL,
    author TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX incident_comments_incident ON incident_comments (incident_id, created_at);
