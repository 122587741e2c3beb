-- Issue #15: connected apps (OAuth 2.0 with PKCE yielding API keys).
-- The app a key was issued to through the token endpoint; NULL for keys made by hand.
ALTER TABLE api_keys ADD COLUMN app_id TEXT NULL;
CREATE INDEX api_keys_app ON api_keys (app_id);
-- Registered apps. The client secret (confidential clients) is kept as its SHA-256 only;
-- redirect_uris is a JSON array of exact URIs; status is active, suspended or deleted (a deleted
-- app's row stays, so its keys and audit records still name it).
CREATE TABLE apps (
    client_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    homepage TEXT NOT NULL,
    publisher_domain TEXT NOT NULL,
    redirect_uris TEXT NOT NULL,
    max_permissions TEXT NOT NULL,
    client_kind TEXT NOT NULL CHECK (client_kind IN ('confidential', 'public')),
    secret_sha256 BYTEA NULL CHECK (secret_sha256 IS NULL OR octet_length(secret_sha256) = 32),
    verified BIGINT NOT NULL CHECK (verified IN (0, 1)),
    logo_url TEXT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleted')),
    registered_by_account BIGINT NULL REFERENCES accounts (id),
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    created_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL CHECK (updated_at >= 0)
);
-- Authorization codes: only their SHA-256, single use (used_at set by one conditional UPDATE),
-- with the key they were exchanged for, so a reused code revokes it.
CREATE TABLE oauth_codes (
    code_hash BYTEA PRIMARY KEY CHECK (octet_length(code_hash) = 32),
    client_id TEXT NOT NULL REFERENCES apps (client_id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    redirect_uri TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    grant_json TEXT NOT NULL,
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    expires_at BIGINT NOT NULL CHECK (expires_at >= 0),
    used_at BIGINT NULL,
    key_id TEXT NULL
);
CREATE INDEX oauth_codes_expiry ON oauth_codes (expires_at);
-- Accounts the operator allows to register apps from the console.
CREATE TABLE app_developers (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id),
    allowed_at BIGINT NOT NULL CHECK (allowed_at >= 0)
);
