-- Webhooks and their outbox. An event row and one delivery row per
-- subscribed webhook are written in the same transaction as the change they
-- report, so a committed change always has its events and a rolled-back one
-- never does. The delivery worker claims due deliveries with a lease, makes
-- one attempt each and logs it in webhook_attempts.
--
-- webhooks.secret is the HMAC key deliveries are signed with: unlike API key
-- and admin token secrets it must be kept recoverable (see SECURITY.md).
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    -- JSON array of event type names, matched with LIKE '%"<type>"%'.
    events TEXT NOT NULL,
    account_id TEXT REFERENCES accounts (id),
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_created ON webhooks (created_at, id);

CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    account_id TEXT,
    created_at BIGINT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX webhook_events_created ON webhook_events (created_at);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    -- Attempts claimed so far: a claim takes attempt `attempts + 1`.
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    -- Unix ms until which a worker holds the delivery; 0: nobody.
    lease_until BIGINT NOT NULL DEFAULT 0,
    -- Set when delivered or given up; NULL while pending.
    done_at BIGINT,
    delivered BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT NOT NULL,
    UNIQUE (event_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE done_at IS NULL;
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id);

CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id BIGINT NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    type TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    at BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    delivered BOOLEAN NOT NULL,
    next_attempt_at BIGINT,
    UNIQUE (delivery_id, attempt)
);
CREATE INDEX webhook_attempts_webhook ON webhook_attempts (webhook_id, at, id);
CREATE INDEX webhook_attempts_at ON webhook_attempts (at);

-- key.expiring is sent once per key and expiry date: the expiry it was sent
-- for (a later edit of expires_at makes the key due again).
ALTER TABLE api_keys ADD COLUMN expiring_sent_for BIGINT;

-- quota.threshold is sent once per scope, period and threshold.
CREATE TABLE webhook_quota_marks (
    scope TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    threshold BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (scope, period_start, threshold)
);
