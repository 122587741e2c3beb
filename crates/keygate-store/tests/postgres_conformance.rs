//! The store conformance suite against the PostgreSQL backend.
//!
//! Needs a server: set `KEYGATE_TEST_POSTGRES_URL` (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`) to a user that may create databases; each test
//! creates its own database and drops it when it passes. Without the variable every test prints
//! `skipped: KEYGATE_TEST_POSTGRES_URL is not set` and passes; with it set, an unreachable server
//! fails them.

keygate_store::store_conformance_suite!(keygate_store::conformance::PgHarness);

/// A writer paused in the middle of a journal append holds the lease row shared while its lock
/// connection is ended (deposed as stale, or lost): the next writer must still raise the term
/// (ending that append's session) instead of waiting for the paused one to wake up.
#[test]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]
fn a_writer_paused_inside_an_append_does_not_block_the_next_one() {
    use keygate_store::conformance::{Harness as _, PgHarness, run_or_skip};
    use sqlx::Connection as _;
    run_or_skip::<PgHarness>("a_writer_paused_inside_an_append_does_not_block_the_next_one", async {
        let h = PgHarness::fresh().await;
        let a = h.open().await;
        let first = a.claim_writer("a", "", keygate_proto::UnixMillis(1)).await.unwrap().expect("free");
        // The paused append: a transaction of A's that read the lease row FOR SHARE and stopped.
        let mut paused = sqlx::PgConnection::connect_with(&h.options()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut paused).await.unwrap();
        sqlx::query("SELECT term FROM exchange_writer WHERE id = 1 FOR SHARE").execute(&mut paused).await.unwrap();
        // A's lock goes (deposed, or its connection dropped).
        drop(first.lock);
        let b = h.open().await;
        let started = std::time::Instant::now();
        let mut claim = None;
        while claim.is_none() {
            assert!(started.elapsed() < std::time::Duration::from_secs(10), "B never took over");
            claim = b.claim_writer("b", "", keygate_proto::UnixMillis(2)).await.unwrap();
        }
        assert_eq!(claim.unwrap().term, first.term + 1);
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
        // The paused append's session was ended: it can never commit under the old term.
        assert!(sqlx::query("COMMIT").execute(&mut paused).await.is_err(), "the paused append was ended");
    });
}
