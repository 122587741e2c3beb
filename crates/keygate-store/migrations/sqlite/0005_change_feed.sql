-- Issue #12: the change feed. One row per committed change that a node caching accounts, keys or
-- second factors must hear about, written in the change's own transaction and numbered by the
-- audit record written with it (so numbers grow in commit order; see src/changes.rs).
-- kind: 'account' | 'key' | 'two_factor' | 'session'; key_id only for 'key'.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL CHECK (at >= 0),
    kind TEXT NOT NULL CHECK (kind IN ('account', 'key', 'two_factor', 'session')),
    account_id INTEGER NOT NULL,
    key_id TEXT NULL CHECK ((kind = 'key') = (key_id IS NOT NULL))
);
