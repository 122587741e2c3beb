-- Issue #13: single-use signatures (TRADE, withdrawals) are recorded with the command they
-- carried, in the journal's transaction, under this primary key: a replay is refused on any
-- node and after any restart. Rows older than any request window are deleted now and then.
-- WITHOUT ROWID: the 32-byte id is the only key, so one B-tree instead of a table and an index.
CREATE TABLE used_signatures (
    id BLOB PRIMARY KEY CHECK (length(id) = 32),
    at INTEGER NOT NULL CHECK (at >= 0)
) WITHOUT ROWID;
CREATE INDEX used_signatures_at ON used_signatures (at);
