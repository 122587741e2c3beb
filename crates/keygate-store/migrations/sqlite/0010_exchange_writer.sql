-- Issue #13: one exchange writer at a time. The node that holds the writer's lock (PostgreSQL: a
-- session advisory lock on a dedicated connection) raises `term` when it takes over and writes
-- where the other nodes reach it; every journal append checks `term` in its own transaction, so
-- a deposed writer can never append again. The writer renews `renewed_at` (the database's clock,
-- ms) twice a second; a writer that stops renewing (paused, cut off) while its lock lingers is
-- deposed by the other nodes, which end its lock's connection.
CREATE TABLE exchange_writer (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    term BIGINT NOT NULL CHECK (term >= 0),
    node TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    since BIGINT NOT NULL CHECK (since >= 0),
    renewed_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO exchange_writer (id, term, node, endpoint, since) VALUES (1, 0, '', '', 0);
