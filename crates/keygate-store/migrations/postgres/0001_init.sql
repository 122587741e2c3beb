-- keygate PostgreSQL schema, version 1: accounts, API keys, the hash-chained audit log.
-- The same tables, columns and encodings as migrations/sqlite/0001_init.sql, so src/rows.rs reads
-- both: times are milliseconds since the Unix epoch in BIGINT, HMAC secrets are stored only sealed
-- (XChaCha20-Poly1305, see src/crypto.rs) with the id of the master key that sealed them, audit
-- details are JSON *text* (not jsonb, which would reorder keys and rewrite numbers, so the stored
-- text would no longer be what the chain hash covers).

CREATE TABLE accounts (
    id            BIGSERIAL PRIMARY KEY,
    name          TEXT   NOT NULL UNIQUE,
    password_hash TEXT   NOT NULL,
    status        TEXT   NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at    BIGINT NOT NULL CHECK (created_at >= 0)
);

CREATE TABLE api_keys (
    id                   TEXT   PRIMARY KEY,
    account_id           BIGINT NOT NULL REFERENCES accounts (id),
    label                TEXT   NOT NULL,
    key_type             TEXT   NOT NULL CHECK (key_type IN ('hmac', 'ed25519', 'rsa')),
    -- Exactly one kind of material: a sealed secret for HMAC keys, a PEM public key otherwise.
    public_key_pem       TEXT   NULL,
    secret_ciphertext    BYTEA  NULL,
    secret_master_key_id TEXT   NULL,
    permissions          TEXT   NOT NULL,
    restrictions         TEXT   NOT NULL,
    status               TEXT   NOT NULL CHECK (status IN ('active', 'disabled', 'revoked', 'expired')),
    created_at           BIGINT NOT NULL CHECK (created_at >= 0),
    created_by           TEXT   NOT NULL,
    updated_at           BIGINT NOT NULL CHECK (updated_at >= 0),
    updated_by           TEXT   NOT NULL,
    last_used_at         BIGINT NULL CHECK (last_used_at >= 0),
    last_used_ip         TEXT   NULL,
    use_count            BIGINT NOT NULL DEFAULT 0 CHECK (use_count >= 0),
    -- Insertion order, breaking ties between keys created in the same millisecond (SQLite's rowid).
    inserted             BIGINT GENERATED ALWAYS AS IDENTITY,
    CHECK (
        (key_type = 'hmac' AND secret_ciphertext IS NOT NULL AND secret_master_key_id IS NOT NULL
            AND public_key_pem IS NULL)
        OR (key_type <> 'hmac' AND public_key_pem IS NOT NULL AND secret_ciphertext IS NULL
            AND secret_master_key_id IS NULL)
    )
);

CREATE INDEX api_keys_account ON api_keys (account_id);

-- Numbered by keygate, not by a sequence: a record's number is part of its hash, and appends are
-- serialised by an advisory lock (src/postgres.rs), so numbers are consecutive with no gaps. The
-- primary key makes a second record with the same number impossible even if that lock were missed.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY CHECK (seq > 0),
    at         BIGINT NOT NULL CHECK (at >= 0),
    actor      TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    account_id BIGINT NULL,
    source     TEXT   NULL,
    details    TEXT   NOT NULL,
    prev_hash  BYTEA  NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash       BYTEA  NOT NULL CHECK (octet_length(hash) = 32)
);

CREATE INDEX audit_log_account ON audit_log (account_id, seq);

-- The audit log is append-only. This guards against a bug in keygate, not against someone with
-- the database owner's rights (the hash chain is what detects that).
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END;
$$;

CREATE TRIGGER audit_log_no_update_or_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
