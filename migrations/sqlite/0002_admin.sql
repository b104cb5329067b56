-- Admin tokens (hashed like API keys) and the audit trail of admin writes.
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    account_id TEXT REFERENCES accounts (id),
    token_hash BLOB NOT NULL UNIQUE,
    preview TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    deleted_at BIGINT
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    action TEXT NOT NULL,
    target_id TEXT,
    account_id TEXT,
    request_id TEXT,
    source_ip TEXT,
    changes TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at, id);
CREATE INDEX audit_log_target ON audit_log (target_id, at);
CREATE INDEX audit_log_account ON audit_log (account_id, at);
