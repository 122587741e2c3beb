-- keygate SQLite schema, version 1: accounts, API keys, the hash-chained audit log.
-- Times are milliseconds since the Unix epoch. HMAC secrets are stored only sealed
-- (XChaCha20-Poly1305, see src/crypto.rs) with the id of the master key that sealed them.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id                   TEXT    PRIMARY KEY NOT NULL,
    account_id           INTEGER NOT NULL REFERENCES accounts (id),
    label                TEXT    NOT NULL,
    key_type             TEXT    NOT NULL CHECK (key_type IN ('hmac', 'ed25519', 'rsa')),
    -- Exactly one kind of material: a sealed secret for HMAC keys, a PEM public key otherwise.
    public_key_pem       TEXT    NULL,
    secret_ciphertext    BLOB    NULL,
    secret_master_key_id TEXT    NULL,
    permissions          TEXT    NOT NULL,
    restrictions         TEXT    NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('active', 'disabled', 'revoked', 'expired')),
    created_at           INTEGER NOT NULL,
    created_by           TEXT    NOT NULL,
    updated_at           INTEGER NOT NULL,
    updated_by           TEXT    NOT NULL,
    last_used_at         INTEGER NULL,
    last_used_ip         TEXT    NULL,
    use_count            INTEGER NOT NULL DEFAULT 0,
    CHECK (
        (key_type = 'hmac' AND secret_ciphertext IS NOT NULL AND secret_master_key_id IS NOT NULL
            AND public_key_pem IS NULL)
        OR (key_type <> 'hmac' AND public_key_pem IS NOT NULL AND secret_ciphertext IS NULL
            AND secret_master_key_id IS NULL)
    )
);

CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    actor      TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    target     TEXT    NOT NULL,
    account_id INTEGER NULL,
    source     TEXT    NULL,
    details    TEXT    NOT NULL,
    prev_hash  BLOB    NOT NULL,
    hash       BLOB    NOT NULL
);

CREATE INDEX audit_log_account ON audit_log (account_id, seq);

-- The audit log is append-only. This guards against a bug in keygate, not an attacker with the
-- file (the hash chain is what detects that).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
