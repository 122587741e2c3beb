-- The sandbox exchange's journal: every accepted command, in the order the engine applied it,
-- with the time it applied it. Replaying it after the latest snapshot rebuilds the exchange.
CREATE TABLE exchange_journal (
    seq BIGINT PRIMARY KEY CHECK (seq > 0),
    at BIGINT NOT NULL CHECK (at >= 0),
    command BYTEA NOT NULL
);

-- Periodic snapshots of the whole exchange state, keyed by the last journal entry they include.
CREATE TABLE exchange_snapshots (
    seq BIGINT PRIMARY KEY CHECK (seq >= 0),
    state BYTEA NOT NULL
);
