//! The store conformance suite against the SQLite backend.

keygate_store::store_conformance_suite!(keygate_store::conformance::SqliteHarness);
