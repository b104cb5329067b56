-- The Ed25519 keys that sign identity tokens (proxy.identity_token without
-- signing_key_file), shared by every replica. The signing key is the row
-- whose `slot` is 'current'; the UNIQUE slot makes "insert if absent" safe
-- when several replicas start at once (INSERT … ON CONFLICT DO NOTHING,
-- then read). A rotation moves the current key out of the slot (`slot`
-- NULL, `retired_at` set) and inserts the next; retired keys stay in the
-- JWKS while tokens they signed can still be valid. `private_key` is the
-- PKCS#8 document: a secret, never logged or answered.
CREATE TABLE identity_keys (
    kid TEXT PRIMARY KEY,
    private_key BYTEA NOT NULL,
    slot TEXT UNIQUE,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);
