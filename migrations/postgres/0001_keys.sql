-- Accounts, keys, retired secrets and the revision counter every write bumps.
-- Times are unix milliseconds; hashes are blake3 (32 bytes); no secret is stored.
CREATE TABLE revision (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    api_access BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revision BIGINT NOT NULL
);
CREATE INDEX accounts_revision ON accounts (revision);
CREATE INDEX accounts_created ON accounts (created_at, id);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    description TEXT,
    permission TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    environment TEXT NOT NULL,
    prefix TEXT NOT NULL,
    preview TEXT NOT NULL,
    secret_hash BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    usage_count BIGINT NOT NULL DEFAULT 0,
    rotated_at BIGINT,
    revoked_at BIGINT,
    rate_limit_requests BIGINT,
    rate_limit_per_seconds BIGINT,
    allowed_ips TEXT NOT NULL DEFAULT '[]',
    allowed_routes TEXT NOT NULL DEFAULT '[]',
    metadata TEXT NOT NULL DEFAULT '{}',
    revision BIGINT NOT NULL
);
CREATE INDEX api_keys_revision ON api_keys (revision);
CREATE INDEX api_keys_created ON api_keys (created_at, id);
CREATE INDEX api_keys_account_created ON api_keys (account_id, created_at, id);

CREATE TABLE retired_secrets (
    secret_hash BYTEA PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES api_keys (id),
    valid_until BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX retired_secrets_key ON retired_secrets (key_id);
