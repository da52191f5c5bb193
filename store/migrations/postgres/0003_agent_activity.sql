-- When an agent last reported new events (its events_in counter moved, or it rebooted): a heartbeat
-- without new events leaves it, so an agent that heartbeats but sends nothing shows as silent.
ALTER TABLE agents ADD COLUMN last_activity BIGINT NOT NULL DEFAULT 0;
