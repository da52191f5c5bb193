-- An agent's last heartbeat as it was sent (its sources' health, its next sequence number): the
-- agent's last known state, which the watchdog's alerts carry.
ALTER TABLE agents ADD COLUMN state TEXT;
-- What the watchdog raised, once per occurrence: kind is `silent`, `source` or `gap`; subject names
-- the source or the boot; mark is what the alert was about (the last heartbeat's time, the source's
-- last event, the highest missing sequence number), so a second watchdog or a restart raises nothing
-- twice and a new occurrence raises again.
CREATE TABLE agent_watch (
    tenant    TEXT   NOT NULL,
    agent_id  TEXT   NOT NULL,
    kind      TEXT   NOT NULL,
    subject   TEXT   NOT NULL,
    mark      BIGINT NOT NULL,
    raised_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, agent_id, kind, subject)
);
