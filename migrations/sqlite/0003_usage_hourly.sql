-- Requests per key, hour and outcome, for usage over time. Written by the
-- usage flush as increments, so several replicas add up; trimmed to
-- usage.retention_days.
CREATE TABLE usage_hourly (
    key_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    requests BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour, outcome)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);
