-- Standing orders (issue 17): a defence signed once by approvers with its scope, cap and expiry;
-- active once enough approvals are in, until withdrawn or expired. The server sends triggers within
-- them, each recorded with the result the agent signed.
CREATE TABLE standing_orders (
    tenant       TEXT    NOT NULL,
    id           TEXT    NOT NULL,
    body         TEXT    NOT NULL,
    created_by   TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    needed       BIGINT NOT NULL,
    active_at    BIGINT,
    withdrawn_at BIGINT,
    PRIMARY KEY (tenant, id)
);
CREATE TABLE standing_order_approvals (
    tenant     TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    public_key TEXT    NOT NULL,
    sig        TEXT    NOT NULL,
    by_token   TEXT    NOT NULL,
    at         BIGINT NOT NULL,
    PRIMARY KEY (tenant, id, public_key)
);
CREATE TABLE standing_triggers (
    tenant      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    order_id    TEXT    NOT NULL,
    agent       TEXT    NOT NULL,
    technique   TEXT    NOT NULL,
    event_id    TEXT    NOT NULL,
    sent_at     BIGINT NOT NULL,
    outcome     TEXT,
    result_body TEXT,
    result_sig  TEXT,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX standing_triggers_order ON standing_triggers (tenant, order_id, sent_at);
