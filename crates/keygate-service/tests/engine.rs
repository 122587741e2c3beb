//! The engine runner: durable before acknowledged, and a restart rebuilds exactly the same state.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_exchange::{Command, ExchangeConfig, Outcome, Side};
use keygate_proto::{AccountId, Amount, Symbol, UnixMicros};
use keygate_service::ManualClock;
use keygate_service::engine::{Engine, EngineConfig, EngineError};
use keygate_store::Store;
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
mod support;

use support::{deposit, limit};

const START_US: u64 = 1_767_225_600_000_000;

async fn store(dir: &std::path::Path) -> Arc<dyn Store> {
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    Arc::new(SqliteStore::open(&dir.join("db"), cipher, SyncMode::Normal).await.unwrap())
}

async fn engine(store: &Arc<dyn Store>, clock: &Arc<ManualClock>, snapshot_every: u64) -> Engine {
    Engine::start(Arc::clone(store), clock.clone(), ExchangeConfig::default(), EngineConfig { snapshot_every })
        .await
        .unwrap()
}

/// A new engine on its own SQLite file, its clock at `START_US`; the directory lives as long as
/// the returned guard.
async fn fresh(snapshot_every: u64) -> (tempfile::TempDir, Arc<dyn Store>, Arc<ManualClock>, Engine) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
    let store = store(dir.path()).await;
    let engine = engine(&store, &clock, snapshot_every).await;
    (dir, store, clock, engine)
}

async fn state(engine: &Engine) -> Vec<u8> {
    engine.query(|ex| ex.snapshot().unwrap()).await.unwrap()
}

/// Funds account 1 with USDT and account 2 with BTC, and rests account 1's bid of 0.5 BTC at
/// 50,000.
async fn fund_and_bid(engine: &Engine, clock: &ManualClock) {
    for c in [deposit(1, "USDT", "100000"), deposit(2, "BTC", "3"), limit(1, Side::Buy, "0.5", "50000")] {
        engine.submit(c, None).await.unwrap();
        clock.advance_ms(7);
    }
}

/// A mixed sequence: deposits, resting orders, a crossing order, a cancel.
async fn trade_a_little(engine: &Engine, clock: &ManualClock) {
    fund_and_bid(engine, clock).await;
    engine.submit(limit(2, Side::Sell, "0.2", "49000"), None).await.unwrap();
    clock.advance_ms(7);
    let placed = engine.submit(limit(2, Side::Sell, "0.1", "51000"), None).await.unwrap();
    let Outcome::Placed(p) = placed else { panic!("{placed:?}") };
    engine
        .submit(
            Command::CancelOrder {
                account: AccountId(2),
                symbol: Symbol::parse("BTCUSDT").unwrap(),
                order: keygate_exchange::OrderRef::Id(p.order.order_id),
                new_client_order_id: None,
            },
            None,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_rebuilds_exactly_the_acknowledged_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
    let before = {
        let store = store(dir.path()).await;
        let engine = engine(&store, &clock, 10_000).await;
        trade_a_little(&engine, &clock).await;
        let s = state(&engine).await;
        store.close().await;
        s
    };
    let store = store(dir.path()).await;
    let engine = engine(&store, &clock, 10_000).await;
    assert_eq!(state(&engine).await, before, "replaying the journal gives the same bytes");
    let ok = engine.query(|ex| ex.ledger().check_invariant().is_ok()).await.unwrap();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_bound_the_replay_and_give_the_same_state() {
    let (_dir, store, clock, engine) = fresh(2).await;
    trade_a_little(&engine, &clock).await;
    let before = state(&engine).await;
    // Snapshots are written by a helper thread, and one that comes due while the previous is
    // still being written waits for the engine's next batch: nudge it with a read and give it
    // time (a loaded CI machine can take seconds).
    let mut snap_seq = 0;
    for _ in 0..1_000 {
        snap_seq = store.latest_snapshot().await.unwrap().map_or(0, |(s, _)| s);
        if snap_seq >= 4 {
            break;
        }
        assert_eq!(state(&engine).await, before);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(snap_seq >= 4, "a snapshot was taken every two entries, latest at {snap_seq}");
    let restarted =
        Engine::start(Arc::clone(&store), clock.clone(), ExchangeConfig::default(), EngineConfig::default())
            .await
            .unwrap();
    assert_eq!(state(&restarted).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_expired_commands_are_not_journaled_and_change_nothing() {
    let (_dir, store, _clock, engine) = fresh(10_000).await;
    engine.submit(deposit(1, "USDT", "10"), None).await.unwrap();
    let before = state(&engine).await;
    let journal = store.journal_after(0, 100).await.unwrap().len();
    // Not enough USDT for this order.
    let err = engine.submit(limit(1, Side::Buy, "1", "50000"), None).await.unwrap_err();
    assert!(matches!(err, EngineError::Rejected(_)), "{err}");
    // The request's window passed before the command reached the engine (Binance's second check).
    let err = engine.submit(deposit(1, "USDT", "10"), Some(UnixMicros(START_US - 1))).await.unwrap_err();
    assert!(matches!(err, EngineError::Expired), "{err}");
    assert_eq!(state(&engine).await, before);
    assert_eq!(store.journal_after(0, 100).await.unwrap().len(), journal);
}

/// A test order is answered off the engine thread, but one that waits for the engine (its
/// account's view was not cached) is refused like a real order when its window passed meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_order_whose_window_passes_while_it_waits_for_the_engine_is_refused() {
    let (_dir, _store, clock, engine) = fresh(10_000).await;
    let Command::PlaceOrder(order) = limit(1, Side::Buy, "0.01", "50000") else { unreachable!() };
    let fresh_until = Some(UnixMicros(START_US + 5_000_000));
    // Answered from the board once the view is cached (the first one caches it).
    assert!(matches!(engine.test_order(order.clone(), fresh_until).await, Ok(Outcome::Tested)));
    engine.submit(deposit(1, "USDT", "10"), None).await.unwrap();
    // The deposit dropped the view. Hold the engine thread in a query that, once let go,
    // moves the clock past the window; the test order's trip queues behind it.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (inside, started) = std::sync::mpsc::channel::<()>();
    let hold = {
        let (engine, clock) = (engine.clone(), Arc::clone(&clock));
        tokio::spawn(async move {
            engine
                .query(move |_| {
                    inside.send(()).unwrap();
                    wait.recv().unwrap();
                    clock.advance_ms(10_000);
                })
                .await
        })
    };
    tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
    let tested = tokio::spawn({
        let engine = engine.clone();
        async move { engine.test_order(order, fresh_until).await }
    });
    while engine.queue_depth() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    go.send(()).unwrap();
    hold.await.unwrap().unwrap();
    let answer = tested.await.unwrap();
    assert!(matches!(answer, Err(EngineError::Expired)), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_sandbox_fixes_its_configuration_in_snapshot_zero() {
    let (_dir, store, _clock, _engine) = fresh(10_000).await;
    let (seq, _) = store.latest_snapshot().await.unwrap().expect("snapshot 0 written at creation");
    assert_eq!(seq, 0);
}

/// The free balance of `coin` in an account view.
fn free(view: &keygate_service::engine::AccountView, coin: &str) -> Amount {
    view.balances.iter().find(|b| b.asset.as_str() == coin).map_or(Amount::ZERO, |b| b.free)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_view_is_reused_only_until_the_next_change_and_shows_every_acknowledged_one() {
    let (_dir, _store, _clock, engine) = fresh(100_000).await;
    let first = engine.account_view(AccountId(1)).await.unwrap();
    assert_eq!(free(&first, "USDT"), Amount::ZERO);
    // Nothing changed: the same view, without a trip to the engine thread.
    let again = engine.account_view(AccountId(1)).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again));
    for (i, amount) in ["10", "20", "30"].into_iter().enumerate() {
        engine.submit(deposit(1, "USDT", amount), None).await.unwrap();
        // Read right after the acknowledgement: never the view from before it.
        let view = engine.account_view(AccountId(1)).await.unwrap();
        let expected = Amount::parse(["10", "30", "60"][i]).unwrap();
        assert_eq!(free(&view, "USDT"), expected);
        // Another account's change leaves this one's view cached.
        engine.submit(deposit(2, "BTC", "1"), None).await.unwrap();
        assert!(Arc::ptr_eq(&view, &engine.account_view(AccountId(1)).await.unwrap()));
    }
    let snapshot = engine.query(|ex| ex.balances(AccountId(1))).await.unwrap();
    assert_eq!(engine.account_view(AccountId(1)).await.unwrap().balances, snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_by_someone_else_refreshes_the_resting_side_view() {
    let (_dir, _store, clock, engine) = fresh(100_000).await;
    fund_and_bid(&engine, &clock).await;
    let resting = engine.account_view(AccountId(1)).await.unwrap();
    assert_eq!(free(&resting, "BTC"), Amount::ZERO);
    // Account 2 sells into account 1's bid: account 1 sent nothing, yet its balances moved.
    engine.submit(limit(2, Side::Sell, "0.2", "49000"), None).await.unwrap();
    let filled = engine.account_view(AccountId(1)).await.unwrap();
    assert!(!Arc::ptr_eq(&resting, &filled));
    assert!(free(&filled, "BTC") > Amount::ZERO, "{:?}", filled.balances);
    assert_eq!(filled.balances, engine.query(|ex| ex.balances(AccountId(1))).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_panics_fails_alone_and_the_engine_goes_on() {
    let (_dir, _store, clock, engine) = fresh(10_000).await;
    trade_a_little(&engine, &clock).await;
    let before = state(&engine).await;
    let failed = engine.query(|_| -> u8 { panic!("a bug in a query") }).await;
    assert!(matches!(failed, Err(EngineError::Stopped)), "{failed:?}");
    // Still serving: reads see the same state and commands are applied.
    assert_eq!(state(&engine).await, before);
    engine.submit(deposit(7, "USDT", "5"), None).await.unwrap();
    assert_ne!(state(&engine).await, before);
}
