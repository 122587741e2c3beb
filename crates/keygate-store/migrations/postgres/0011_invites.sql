-- Issue #18: `serve --signup invite`. Single-use invite codes the operator hands out; only each
-- code's SHA-256 is kept (the codes carry at least 128 random bits, so the hash cannot be
-- reversed). An invite is usable while used_at and revoked_at are NULL and expires_at (ms since
-- the Unix epoch) is in the future; redeeming it sets used_at and used_by in the transaction that
-- creates the account. Two nodes redeeming one code at once: the second UPDATE waits for the
-- first's row lock and then finds used_at set, so a code redeems once.
CREATE TABLE invites (
    id BIGSERIAL PRIMARY KEY,
    code_hash BYTEA NOT NULL UNIQUE CHECK (length(code_hash) = 32),
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL CHECK (created_at >= 0),
    created_by TEXT NOT NULL,
    expires_at BIGINT NOT NULL CHECK (expires_at >= 0),
    revoked_at BIGINT NULL CHECK (revoked_at >= 0),
    used_at BIGINT NULL CHECK (used_at >= 0),
    used_by BIGINT NULL REFERENCES accounts (id)
);
