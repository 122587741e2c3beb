//! The exchange journal under real database faults (issue #13): a refused append leaves nothing
//! of its batch in memory, the engine refuses everything until it has rebuilt its state from the
//! store, acknowledged orders are never rewritten, and a journal with a gap refuses to start.
//! Skipped when `KEYGATE_TEST_POSTGRES_URL` is not set.

// Tests fail loudly by design; waits are measured on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use keygate_exchange::{ExchangeConfig, Outcome, Side};
use keygate_proto::{AccountId, Symbol, UnixMicros};
use keygate_service::ManualClock;
use keygate_service::engine::{Engine, EngineConfig, EngineError};
use keygate_store::conformance::{Harness as _, PgHarness, run_or_skip};
use keygate_store::{JournalEntry, Store};
use sqlx::Connection as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
mod support;

use support::{deposit, limit};

const START_US: u64 = 1_767_225_600_000_000;

async fn start(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> Engine {
    Engine::start(Arc::clone(store), clock.clone(), ExchangeConfig::default(), EngineConfig::default()).await.unwrap()
}

/// `(order id, status)` of an acknowledged placement.
fn placed(outcome: &Outcome) -> (u64, String) {
    let Outcome::Placed(p) = outcome else { panic!("{outcome:?}") };
    (p.order.order_id, format!("{:?}", p.order.status))
}

async fn order_states(engine: &Engine, ids: Vec<u64>) -> Vec<(u64, String)> {
    engine
        .query(move |ex| {
            ids.iter()
                .map(|id| {
                    let o = ex
                        .order(AccountId(1), &Symbol::parse("BTCUSDT").unwrap(), &keygate_exchange::OrderRef::Id(*id))
                        .or_else(|_| {
                            ex.order(
                                AccountId(2),
                                &Symbol::parse("BTCUSDT").unwrap(),
                                &keygate_exchange::OrderRef::Id(*id),
                            )
                        })
                        .unwrap();
                    (o.order_id, format!("{:?}", o.status))
                })
                .collect()
        })
        .await
        .unwrap()
}

#[test]
fn acknowledged_orders_survive_a_refused_append_and_the_rebuild_that_follows() {
    run_or_skip::<PgHarness>("acknowledged_orders_survive_a_refused_append_and_the_rebuild_that_follows", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let store = h.open().await;
        let engine = start(&store, &clock).await;
        for c in [deposit(1, "USDT", "100000"), deposit(2, "BTC", "3")] {
            engine.submit(c, None).await.unwrap();
        }
        let mut acked = vec![placed(&engine.submit(limit(2, Side::Sell, "1", "50000"), None).await.unwrap())];

        // The reproduction of the finding: the database refuses connections and drops the open
        // ones; a crossing order arrives.
        let mut admin = sqlx::PgConnection::connect_with(&h.options().database("postgres")).await.unwrap();
        let db = h.database().to_owned();
        sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false")).execute(&mut admin).await.unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(&db)
            .execute(&mut admin)
            .await
            .unwrap();
        // Reads sent with it, some in the batch whose append fails: each is answered (on the
        // state rebuilt from the store) or refused as unavailable, never told the engine stopped.
        let order = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.submit(limit(1, Side::Buy, "1", "50000"), None).await })
        };
        let reads: Vec<_> = (0..64)
            .map(|_| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.query(keygate_exchange::Exchange::clock).await })
            })
            .collect();
        let refused = order.await.unwrap().unwrap_err();
        assert!(matches!(refused, EngineError::Storage(_)), "{refused:?}");
        // Until its state is rebuilt from the store, the engine serves nobody: not the refused
        // fill, not a read of it.
        assert!(!engine.is_available());
        assert!(matches!(
            engine.submit(limit(1, Side::Buy, "0.1", "40000"), None).await,
            Err(EngineError::Unavailable)
        ));
        assert!(matches!(engine.query(|_| ()).await, Err(EngineError::Unavailable)));

        sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true")).execute(&mut admin).await.unwrap();
        let start_wait = Instant::now();
        while !engine.is_available() {
            assert!(start_wait.elapsed() < Duration::from_secs(15), "the engine never rebuilt its state");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for read in reads {
            let answer = read.await.unwrap();
            assert!(
                matches!(answer, Ok(_) | Err(EngineError::Unavailable)),
                "a read next to a failed append: {answer:?}"
            );
        }
        // The sell rests untouched: the refused buy left no trace.
        assert_eq!(order_states(&engine, vec![acked[0].0]).await, acked);
        for c in [limit(1, Side::Buy, "0.4", "50000"), limit(1, Side::Buy, "0.1", "49000")] {
            acked.push(placed(&engine.submit(c, None).await.unwrap()));
        }
        assert_eq!(acked.iter().map(|a| a.0).collect::<Vec<_>>(), [1, 2, 3], "ids never skip");
        let now_states = order_states(&engine, acked.iter().map(|a| a.0).collect()).await;
        let before = engine.query(|ex| ex.snapshot().unwrap()).await.unwrap();

        // A restart rebuilds exactly what was acknowledged, from a contiguous journal.
        let store = h.open().await;
        let seqs: Vec<i64> = store.journal_after(0, 100).await.unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "the journal has no gap");
        let restarted = start(&store, &clock).await;
        assert_eq!(restarted.query(|ex| ex.snapshot().unwrap()).await.unwrap(), before);
        assert_eq!(order_states(&restarted, acked.iter().map(|a| a.0).collect()).await, now_states);
    });
}

#[test]
fn a_journal_with_a_gap_refuses_to_start_and_says_where() {
    run_or_skip::<PgHarness>("a_journal_with_a_gap_refuses_to_start_and_says_where", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let store = h.open().await;
        let engine = start(&store, &clock).await;
        engine.submit(deposit(1, "USDT", "100"), None).await.unwrap();
        engine.submit(deposit(1, "USDT", "100"), None).await.unwrap();
        // Entry 4 appears with no entry 3 (a second writer that skipped a number).
        let command = serde_json::to_vec(&deposit(2, "BTC", "1")).unwrap();
        let at = keygate_proto::UnixMillis(1_767_225_600_000);
        store.append_journal(1, &[JournalEntry { seq: 4, at, command }], Vec::new(), &[]).await.unwrap();
        let err = Engine::start(Arc::clone(&store), clock.clone(), ExchangeConfig::default(), EngineConfig::default())
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("entry 4 follows entry 2"), "{err}");
    });
}
