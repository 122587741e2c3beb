-- Issue #12: the sandbox faucet's daily limit is a counted field, not a scan of the audit log.
-- One row per account that has used the faucet: grants given in the window that began at
-- window_start (milliseconds since the Unix epoch). Taken under a row lock, so two nodes cannot
-- both give the last grant of a window.
CREATE TABLE faucet_grants (
    account_id BIGINT PRIMARY KEY REFERENCES accounts (id),
    window_start BIGINT NOT NULL CHECK (window_start >= 0),
    grants BIGINT NOT NULL CHECK (grants >= 0)
);
