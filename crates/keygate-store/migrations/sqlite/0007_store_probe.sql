-- Issue #13: readiness writes here, so a store that cannot write (a full disk, a read-only
-- database) reports not ready instead of ready. One row, rewritten by each probe.
CREATE TABLE store_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
