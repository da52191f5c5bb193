-- The alert queue's live stream asks for a tenant's latest alert change every second.
CREATE INDEX alerts_updated ON alerts (tenant, updated_at);
-- A host's alerts, newest first (the queue's host filter, the host page).
CREATE INDEX alerts_host ON alerts (tenant, host, last_seen);
-- A handling's alerts, newest first (the queue's triage filter: unhandled, handled, false positives).
CREATE INDEX alerts_handling ON alerts (tenant, handling, last_seen);
-- Deduplication looks an alert up by key among the unhandled ones: with handling in its index it
-- stays the planner's choice over alerts_handling (which would read every unhandled alert).
DROP INDEX alerts_dedup;
CREATE INDEX alerts_dedup ON alerts (tenant, dedup_key, handling, last_seen);
