//! The store conformance suite against the PostgreSQL backend.
//!
//! Needs a server: set `KEYGATE_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) to a user that may create databases; each test
//! creates its own database and drops it when it passes. Without the variable every test prints
//! `skipped: KEYGATE_TEST_POSTGRES_URL is not set` and passes; with it set, an unreachable server
//! fails them.

keygate_store::store_conformance_suite!(keygate_store::conformance::PgHarness);
