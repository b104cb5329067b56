-- Quotas: a key's own quota, and the ledger every replica spends through.
-- `quota_ledger` holds, per owner (`key_…` or `acc_…`) and period start
-- (unix ms of the UTC period's first instant; 0 for `total`), what was
-- spent (`used`) and the adjustments made through the API (`adjust`: added
-- to the limit, so remaining = limit + adjust - used). `quota_leases` holds
-- the units each replica has reserved ahead and not spent yet; a lease not
-- refreshed for a while belongs to a replica that went away and is ignored.
-- Spending does not bump the revision: it is not policy.
ALTER TABLE api_keys ADD COLUMN quota_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_period TEXT;

CREATE TABLE quota_ledger (
    owner_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    used BIGINT NOT NULL DEFAULT 0,
    adjust BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (owner_id, period_start)
);

CREATE TABLE quota_leases (
    owner_id TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    replica_id TEXT NOT NULL,
    held BIGINT NOT NULL,
    seen_at BIGINT NOT NULL,
    PRIMARY KEY (owner_id, period_start, replica_id)
);
CREATE INDEX quota_leases_replica ON quota_leases (replica_id);
