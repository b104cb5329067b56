-- Plans: limits pooled over all of an account's keys. An account names at
-- most one plan; a plan in use cannot be deleted (the foreign key, and the
-- store's own check, which answers 409 first). Editing a plan bumps its
-- revision so every replica's snapshot re-reads the accounts on it.
CREATE TABLE plans (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    rate_limit_requests BIGINT,
    rate_limit_per_seconds BIGINT,
    quota_limit BIGINT,
    quota_period TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX plans_revision ON plans (revision);
CREATE INDEX plans_created ON plans (created_at, id);

ALTER TABLE accounts ADD COLUMN plan_id TEXT REFERENCES plans (id);
CREATE INDEX accounts_plan ON accounts (plan_id);
