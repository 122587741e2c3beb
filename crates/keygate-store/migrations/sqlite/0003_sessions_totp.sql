-- Issue #6: console sessions, TOTP 2FA, recovery codes, the withdrawal lock.
-- Session ids are stored only as SHA-256 hashes; TOTP seeds only sealed (XChaCha20-Poly1305 under
-- the master key, associated data binding the seed to its account, see src/crypto.rs); recovery
-- codes only as SHA-256 hashes. Flags are 0/1 integers, as in the PostgreSQL schema, so
-- src/rows.rs reads both. Times are milliseconds since the Unix epoch.

-- Withdrawals are refused until then: set for 24 h after a password change or 2FA removal.
ALTER TABLE accounts ADD COLUMN withdrawals_locked_until INTEGER NULL;

CREATE TABLE sessions (
    id_hash            BLOB    PRIMARY KEY NOT NULL CHECK (length(id_hash) = 32),
    account_id         INTEGER NOT NULL REFERENCES accounts (id),
    created_at         INTEGER NOT NULL CHECK (created_at >= 0),
    last_seen_at       INTEGER NOT NULL CHECK (last_seen_at >= 0),
    two_factor_pending INTEGER NOT NULL CHECK (two_factor_pending IN (0, 1)),
    stepped_up_until   INTEGER NULL,
    source             TEXT    NULL
);

CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE two_factor (
    account_id           INTEGER PRIMARY KEY NOT NULL REFERENCES accounts (id),
    seed_ciphertext      BLOB    NOT NULL,
    seed_master_key_id   TEXT    NOT NULL,
    enabled              INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    created_at           INTEGER NOT NULL CHECK (created_at >= 0),
    confirmed_at         INTEGER NULL,
    -- The last RFC 6238 time step accepted: a code is never accepted twice.
    last_step            INTEGER NULL CHECK (last_step >= 0),
    failures             INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
    failure_window_start INTEGER NULL
);

CREATE TABLE recovery_codes (
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    code_hash  BLOB    NOT NULL CHECK (length(code_hash) = 32),
    used_at    INTEGER NULL,
    PRIMARY KEY (account_id, code_hash)
);
