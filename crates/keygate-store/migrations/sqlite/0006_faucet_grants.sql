-- Issue #12: the sandbox faucet's daily limit is a counted field, not a scan of the audit log.
-- One row per account that has used the faucet: grants given in the window that began at
-- window_start (milliseconds since the Unix epoch).
CREATE TABLE faucet_grants (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    window_start INTEGER NOT NULL CHECK (window_start >= 0),
    grants INTEGER NOT NULL CHECK (grants >= 0)
);
