-- Issue #6: console sessions, TOTP 2FA, recovery codes, the withdrawal lock. The same tables,
-- columns and encodings as migrations/sqlite/0003_sessions_totp.sql (flags as 0/1 BIGINT, so
-- src/rows.rs reads both). Session ids are stored only as SHA-256 hashes; TOTP seeds only sealed
-- under the master key, bound to their account; recovery codes only as SHA-256 hashes.

-- Withdrawals are refused until then: set for 24 h after a password change or 2FA removal.
ALTER TABLE accounts ADD COLUMN withdrawals_locked_until BIGINT NULL CHECK (withdrawals_locked_until >= 0);

CREATE TABLE sessions (
    id_hash            BYTEA  PRIMARY KEY CHECK (octet_length(id_hash) = 32),
    account_id         BIGINT NOT NULL REFERENCES accounts (id),
    created_at         BIGINT NOT NULL CHECK (created_at >= 0),
    last_seen_at       BIGINT NOT NULL CHECK (last_seen_at >= 0),
    two_factor_pending BIGINT NOT NULL CHECK (two_factor_pending IN (0, 1)),
    stepped_up_until   BIGINT NULL CHECK (stepped_up_until >= 0),
    source             TEXT   NULL
);

CREATE INDEX sessions_account ON sessions (account_id);

CREATE TABLE two_factor (
    account_id           BIGINT PRIMARY KEY REFERENCES accounts (id),
    seed_ciphertext      BYTEA  NOT NULL,
    seed_master_key_id   TEXT   NOT NULL,
    enabled              BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    created_at           BIGINT NOT NULL CHECK (created_at >= 0),
    confirmed_at         BIGINT NULL CHECK (confirmed_at >= 0),
    -- The last RFC 6238 time step accepted: a code is never accepted twice.
    last_step            BIGINT NULL CHECK (last_step >= 0),
    failures             BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0),
    failure_window_start BIGINT NULL CHECK (failure_window_start >= 0)
);

CREATE TABLE recovery_codes (
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    code_hash  BYTEA  NOT NULL CHECK (octet_length(code_hash) = 32),
    used_at    BIGINT NULL CHECK (used_at >= 0),
    PRIMARY KEY (account_id, code_hash)
);
