//! End-to-end tests of the HTTP layer: the real server on port 0 over a real SQLite file.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access_log;
mod admin_channel;
mod client_compat;
mod cluster_channel;
mod endpoints;
mod errors;
mod exchange_market;
mod exchange_support;
mod exchange_trading;
mod exchange_wallet;
mod keys_over_http;
mod leak_reports;
mod living_market;
mod rate_limits;
mod shared_limits;
mod slow_clients;
mod time_unit;
mod tls;
mod typed_client;
mod usage_and_audit;
mod webhooks;
