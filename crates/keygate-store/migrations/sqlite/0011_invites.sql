-- Issue #18: `serve --signup invite`. Single-use invite codes the operator hands out; only each
-- code's SHA-256 is kept (the codes carry at least 128 random bits, so the hash cannot be
-- reversed). An invite is usable while used_at and revoked_at are NULL and expires_at (ms since
-- the Unix epoch) is in the future; redeeming it sets used_at and used_by in the transaction that
-- creates the account.
CREATE TABLE invites (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code_hash BLOB NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    note TEXT NOT NULL,
    created_at INTEGER NOT NULL CHECK (created_at >= 0),
    created_by TEXT NOT NULL,
    expires_at INTEGER NOT NULL CHECK (expires_at >= 0),
    revoked_at INTEGER NULL CHECK (revoked_at >= 0),
    used_at INTEGER NULL CHECK (used_at >= 0),
    used_by INTEGER NULL REFERENCES accounts (id)
);
