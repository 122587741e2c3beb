-- Issue #19: withdrawal holds. After 2FA is turned on, every withdrawal of the account waits
-- (accounts.withdrawals_held_until); after a key is given the withdraw permission, or an address
-- is added to it, that key, or that address on it, waits (api_keys.withdrawal_holds, JSON text:
-- {"key": {"since", "until"}, "addresses": [{"address", "since", "until"}]}, '{}' for none).
-- Times are milliseconds since the Unix epoch.

ALTER TABLE accounts ADD COLUMN withdrawals_held_until BIGINT NULL CHECK (withdrawals_held_until >= 0);

ALTER TABLE api_keys ADD COLUMN withdrawal_holds TEXT NOT NULL DEFAULT '{}';
