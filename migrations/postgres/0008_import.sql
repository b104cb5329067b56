-- Imported keys. `hash_algorithm` says what `secret_hash` holds: 'blake3'
-- (every key keygate made, and imported plaintext secrets) or 'sha256' (a
-- key imported as a foreign sha256 hash and not used since; the gateway
-- moves it to blake3 the first time it sees the secret). `import_sha256`
-- is the sha256 of an imported secret, kept after the move, so importing
-- the same secret or hash again answers the same key. No secret is stored.
ALTER TABLE api_keys ADD COLUMN hash_algorithm TEXT NOT NULL DEFAULT 'blake3';
ALTER TABLE api_keys ADD COLUMN import_sha256 BYTEA;
CREATE UNIQUE INDEX api_keys_import_sha256 ON api_keys (import_sha256);
