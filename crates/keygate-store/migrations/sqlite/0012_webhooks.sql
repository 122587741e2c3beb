-- Issue #17: owner notifications (webhooks and console notices) and leak reports.
--
-- Events are derived from the audit log, which every change already writes in its own
-- transaction: a worker reads audit records past `event_cursor`, turns the ones owners are told
-- about into `account_events` rows (the console's notices), fans each out into one
-- `webhook_deliveries` row per active endpoint of the account, and advances the cursor, all in
-- one transaction. So an event exists as soon as its change commits (as an audit record), and
-- is never lost between the change and the delivery: a crash only delays it.

-- Endpoints an account registered. The signing secret is sealed like an HMAC key's secret
-- (associated data binds it to the endpoint id and account). status: 'active' | 'disabled'
-- (the receiver answered 410 Gone, or the owner disabled it); deleted_at set = removed (kept so
-- its deliveries keep their history).
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    url TEXT NOT NULL,
    description TEXT NOT NULL,
    secret_ciphertext BLOB NOT NULL,
    secret_master_key_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at INTEGER NOT NULL CHECK (created_at >= 0),
    deleted_at INTEGER NULL CHECK (deleted_at >= 0)
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id);

-- One row per event an owner is told about, numbered by the audit record it came from (one
-- event per audit record at most). payload: the exact JSON body delivered.
CREATE TABLE account_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_seq INTEGER NOT NULL UNIQUE,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    event_type TEXT NOT NULL,
    at INTEGER NOT NULL CHECK (at >= 0),
    payload TEXT NOT NULL
);
CREATE INDEX account_events_account ON account_events (account_id, id);

-- The outbox: one row per (event, endpoint). status: 'pending' | 'delivered' | 'dead'.
-- A pending row is due at next_attempt_at; a node that takes it sets claimed_until (a lease), so
-- another node only takes it again once the lease ran out (a crash between sending and marking
-- resends it: at-least-once, with the same webhook-id).
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id INTEGER NOT NULL REFERENCES account_events (id),
    endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL CHECK (next_attempt_at >= 0),
    claimed_until INTEGER NULL,
    last_attempt_at INTEGER NULL,
    last_status INTEGER NULL,
    last_error TEXT NULL,
    delivered_at INTEGER NULL,
    UNIQUE (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- How far the event worker has read the audit log (one row). It starts at the end of the log as
-- it is when this migration runs: events (and notices) begin with the upgrade, rather than the
-- whole history turning into notices (every past login a "new address") at the first start.
CREATE TABLE event_cursor (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    audit_seq INTEGER NOT NULL CHECK (audit_seq >= 0)
);
INSERT INTO event_cursor (id, audit_seq) SELECT 1, COALESCE(MAX(seq), 0) FROM audit_log;

-- Addresses already seen, for "first use of a key from a new address" (scope 'key', subject =
-- key id) and "login from a new address" (scope 'login', subject = account id).
CREATE TABLE seen_addresses (
    scope TEXT NOT NULL CHECK (scope IN ('key', 'login')),
    subject TEXT NOT NULL,
    address TEXT NOT NULL,
    first_seen_at INTEGER NOT NULL CHECK (first_seen_at >= 0),
    PRIMARY KEY (scope, subject, address)
);

-- Leak reports already acted on, by the SHA-256 of their signed body: a replayed report is
-- refused. Rows older than the report's freshness window may be deleted.
CREATE TABLE leak_reports (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    received_at INTEGER NOT NULL CHECK (received_at >= 0)
);

-- The SHA-256 of each HMAC secret, so a leaked secret a scanner reports is found in one lookup
-- (the secret itself is sealed with a random nonce and cannot be searched). A secret carries
-- 256 random bits, so its hash reveals nothing, as with GitHub's own token hashes. Filled when
-- a key is created; keys made before this migration are filled at start (index_secret_digests).
ALTER TABLE api_keys ADD COLUMN secret_sha256 BLOB NULL;
CREATE UNIQUE INDEX api_keys_secret_sha256 ON api_keys (secret_sha256);
