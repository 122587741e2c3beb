-- Issue #17: key hygiene that runs by itself.
-- Why a key that is not active is so ('2fa_disabled', 'password_changed', 'policy:unused', ...),
-- written with the status in the same statement; NULL for active keys and older rows.
ALTER TABLE api_keys ADD COLUMN status_reason TEXT NULL;
-- An account's own, tighter key policy (JSON; every limit at most the deployment's), and the
-- trade and withdraw keys it must re-confirm after a password change or a 2FA reset: those not
-- re-confirmed since reconfirm_since are suspended at reconfirm_due.
CREATE TABLE account_key_policies (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    policy TEXT NOT NULL,
    reconfirm_since INTEGER NULL CHECK (reconfirm_since >= 0),
    reconfirm_due INTEGER NULL CHECK (reconfirm_due >= 0),
    reconfirm_reason TEXT NULL,
    updated_at INTEGER NOT NULL CHECK (updated_at >= 0)
);
CREATE INDEX account_key_policies_due ON account_key_policies (reconfirm_due);
-- Warnings sent about a key (e.g. 'unused:7d:<idle since>'), each once: inserted with its audit
-- record, which is what the owner's notifications are made from.
CREATE TABLE key_policy_notices (
    key_id TEXT NOT NULL,
    notice TEXT NOT NULL,
    at INTEGER NOT NULL CHECK (at >= 0),
    PRIMARY KEY (key_id, notice)
);
