//! Several nodes on one PostgreSQL database: every key change reaches every node through the
//! change feed, and a node that cannot read the feed refuses to vouch for its keys.
//!
//! Each node is a service assembled on a store of its own (its own connection pool) over one
//! test database, as two `keygate serve` processes would be. Skipped, like the store's
//! PostgreSQL suite, when `KEYGATE_TEST_POSTGRES_URL` is not set.

// Tests fail loudly by design; waits are measured on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use keygate_auth::{KeyLookup as _, KeyStatus, Permissions, Restrictions};
use keygate_proto::UnixMicros;
use keygate_service::{Actor, ManualClock, NewKey, NewKeyMaterial, Service};
use keygate_store::conformance::{Harness as _, PgHarness, run_or_skip};
use sqlx::Connection as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;
mod support;

use support::pg_node;

const START_US: u64 = 1_767_225_600_000_000;

fn now(clock: &Arc<ManualClock>) -> u64 {
    keygate_service::Clock::now(&**clock).as_millis().0
}

async fn new_key(node: &Service) -> String {
    let new = NewKey {
        account: "alice".into(),
        label: "bot".into(),
        material: NewKeyMaterial::Hmac,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        confirm_wide_ip: false,
    };
    node.create_key(&Actor::operator_cli(), new).await.unwrap().key.api_key
}

/// Waits until `node`'s cache shows `id` in `status` (`None`: present at all); how long it took.
async fn until_seen(node: &Service, id: &str, status: Option<KeyStatus>) -> Duration {
    let start = Instant::now();
    loop {
        if let Some(entry) = node.cache().lookup(id)
            && status.is_none_or(|s| entry.status == s)
        {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{id} never reached the other node ({status:?})");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

#[test]
fn keys_created_and_revoked_on_one_node_reach_the_other_within_milliseconds() {
    run_or_skip::<PgHarness>("keys_created_and_revoked_on_one_node_reach_the_other_within_milliseconds", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let a = pg_node(&h, &clock).await;
        let b = pg_node(&h, &clock).await;
        a.create_account(&Actor::operator_cli(), "alice", Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        let mut took = Vec::new();
        for _ in 0..100 {
            let id = new_key(&a).await;
            until_seen(&b, &id, Some(KeyStatus::Active)).await;
            a.revoke_key(&Actor::operator_cli(), &id).await.unwrap();
            took.push(until_seen(&b, &id, Some(KeyStatus::Revoked)).await);
        }
        took.sort_unstable();
        let (p50, p99) = (took[49], took[98]);
        let _ = writeln!(
            std::io::stderr(),
            "revocation on node A seen by node B: p50 {p50:?}, p99 {p99:?}, max {:?}",
            took[99]
        );
        // The target on this machine is p99 < 100 ms (LISTEN/NOTIFY); the bound here leaves
        // room for a loaded CI machine while still failing if only the 250 ms poll delivered.
        assert!(p99 < Duration::from_millis(200), "p99 {p99:?}");
        assert!(b.change_cursor() > 0 && b.is_current(now(&clock)));
        a.shutdown().await;
        b.shutdown().await;
    });
}

#[test]
fn a_node_cut_off_from_the_database_stops_vouching_for_its_keys_and_catches_up_after() {
    run_or_skip::<PgHarness>(
        "a_node_cut_off_from_the_database_stops_vouching_for_its_keys_and_catches_up_after",
        async {
            let h = PgHarness::fresh().await;
            let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
            let a = pg_node(&h, &clock).await;
            let b = pg_node(&h, &clock).await;
            a.create_account(&Actor::operator_cli(), "alice", Zeroizing::new("correct horse battery".into()))
                .await
                .unwrap();
            let id = new_key(&a).await;
            until_seen(&b, &id, None).await;
            assert!(b.is_current(now(&clock)));

            // The database refuses every connection and drops the open ones, as an operator's
            // maintenance or a failover would.
            let mut admin = sqlx::PgConnection::connect_with(&h.options().database("postgres")).await.unwrap();
            let db = h.database().to_owned();
            sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false")).execute(&mut admin).await.unwrap();
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(&db)
                .execute(&mut admin)
                .await
                .unwrap();
            // Within the staleness bound (2 s) the node still serves; beyond it, it refuses.
            clock.advance_ms(1_500);
            assert!(b.is_current(now(&clock)), "still within 2 s of its last look");
            clock.advance_ms(1_000);
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert!(!b.is_current(now(&clock)), "a node that cannot read the feed must not vouch for its keys");
            assert!(b.ready().await.is_err());

            sqlx::query(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true")).execute(&mut admin).await.unwrap();
            // A revocation made while B was cut off (or just after) reaches it once it is back.
            let start = Instant::now();
            loop {
                if a.revoke_key(&Actor::operator_cli(), &id).await.is_ok() {
                    break;
                }
                assert!(start.elapsed() < Duration::from_secs(10), "node A never wrote again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            until_seen(&b, &id, Some(KeyStatus::Revoked)).await;
            let start = Instant::now();
            while !b.is_current(now(&clock)) {
                assert!(start.elapsed() < Duration::from_secs(10), "node B never became current again");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            a.shutdown().await;
            b.shutdown().await;
        },
    );
}

/// A node with the exchange and, when `quote`, the market maker, as `serve --market-maker` runs.
async fn exchange_node(h: &PgHarness, clock: &Arc<ManualClock>, quote: bool) -> Service {
    let node = keygate_service::Assembly::new(keygate_service::StoreSource::Opened(h.open().await), clock.clone())
        .exchange(keygate_service::ExchangeSetup::default())
        .start()
        .await
        .unwrap();
    if quote {
        node.start_market_maker(keygate_exchange::MarketMakerConfig::new(keygate_proto::AccountId(99), 7)).unwrap();
    }
    node
}

/// The market maker's open orders on BTCUSDT as `node` sees them.
async fn quotes(node: &Service) -> usize {
    node.engine()
        .unwrap()
        .query(|ex| ex.open_orders(keygate_proto::AccountId(99), None).map_or(0, |o| o.len()))
        .await
        .unwrap()
}

#[test]
fn only_the_writers_market_maker_quotes_and_a_new_writer_starts_its_own() {
    run_or_skip::<PgHarness>("only_the_writers_market_maker_quotes_and_a_new_writer_starts_its_own", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let a = exchange_node(&h, &clock, false).await;
        let b = exchange_node(&h, &clock, true).await;
        assert!(a.engine().unwrap().is_writer() && !b.engine().unwrap().is_writer());
        // B's market maker runs but B does not write the exchange: nothing is quoted.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(quotes(&a).await, 0);
        assert_eq!(quotes(&b).await, 0);
        // A stops (its lock goes with its connection): B takes over, and its market maker quotes.
        a.shutdown().await;
        let start = Instant::now();
        while quotes(&b).await == 0 {
            assert!(start.elapsed() < Duration::from_secs(5), "B never took over and quoted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(b.engine().unwrap().is_writer());
        assert!(b.engine().unwrap().term() >= 2, "a new term: {}", b.engine().unwrap().term());
        let _ = writeln!(std::io::stderr(), "B quoted {:?} after A stopped", start.elapsed());
        b.shutdown().await;
    });
}

/// Issue #17: the key-policy sweeper runs on exactly one node, the exchange's writer; another
/// node's sweeper, started the same way, does nothing while it follows. A key idle past its
/// deadline is disabled once, its warnings sent once, and a new writer takes the sweeping over.
#[test]
fn the_key_policy_sweeper_runs_on_the_writer_only_and_acts_once() {
    run_or_skip::<PgHarness>("the_key_policy_sweeper_runs_on_the_writer_only_and_acts_once", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let node = |clock: Arc<ManualClock>| {
            let h = &h;
            async move {
                keygate_service::Assembly::new(keygate_service::StoreSource::Opened(h.open().await), clock)
                    .config(keygate_service::ServiceConfig {
                        password: keygate_service::PasswordParams::insecure_for_tests(),
                        ..keygate_service::ServiceConfig::default()
                    })
                    .exchange(keygate_service::ExchangeSetup::default())
                    .sweep_policies_every(Duration::from_millis(100))
                    .start()
                    .await
                    .unwrap()
            }
        };
        let a = node(clock.clone()).await;
        let b = node(clock.clone()).await;
        assert!(a.engine().unwrap().is_writer() && !b.engine().unwrap().is_writer());
        a.create_account(&Actor::operator_cli(), "alice", Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
        let first = new_key(&a).await;
        let count = |node: &Service, action: &'static str| {
            let node = node.clone();
            async move {
                let log = node.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
                log.iter().filter(|r| r.action == action).count()
            }
        };
        let wait_for = |node: Service, action: &'static str, n: usize| async move {
            let start = Instant::now();
            loop {
                let seen = count(&node, action).await;
                if seen >= n {
                    return seen;
                }
                assert!(start.elapsed() < Duration::from_secs(5), "{action}: {seen} of {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        // Six days before the 90-day deadline: one 7-day warning, from one node.
        clock.advance_ms(84 * keygate_service::policy::DAY_MS);
        wait_for(b.clone(), "key.expiring", 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&b, "key.expiring").await, 1, "warned once");
        // Past it: disabled once.
        clock.advance_ms(7 * keygate_service::policy::DAY_MS);
        wait_for(b.clone(), "key.policy_disable", 1).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&b, "key.policy_disable").await, 1, "disabled once");
        until_seen(&b, &first, Some(KeyStatus::Disabled)).await;
        // A stops; B writes the exchange now, and sweeps: a key of B's goes when its time comes.
        a.shutdown().await;
        let second = new_key(&b).await;
        let start = Instant::now();
        while !b.engine().unwrap().is_writer() {
            assert!(start.elapsed() < Duration::from_secs(5), "B never took over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clock.advance_ms(91 * keygate_service::policy::DAY_MS);
        wait_for(b.clone(), "key.policy_disable", 2).await;
        until_seen(&b, &second, Some(KeyStatus::Disabled)).await;
        b.shutdown().await;
    });
}

/// Both nodes run the living market (history, flow). Only the writer's steps trade; the other
/// node answers the same history and the same trades from the journal.
#[test]
fn only_the_writer_runs_the_flow_and_a_follower_answers_the_same_history() {
    run_or_skip::<PgHarness>("only_the_writer_runs_the_flow_and_a_follower_answers_the_same_history", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
        let living = keygate_exchange::MarketMakerConfig {
            flow: Some(keygate_exchange::market_maker::FlowConfig {
                account: keygate_proto::AccountId(98),
                rate_milli: 2000,
            }),
            history_days: Some(2),
            ..keygate_exchange::MarketMakerConfig::new(keygate_proto::AccountId(99), 7)
        };
        let a = exchange_node(&h, &clock, false).await;
        let b = exchange_node(&h, &clock, false).await;
        a.start_market_maker(living.clone()).unwrap();
        b.start_market_maker(living).unwrap();
        assert!(a.engine().unwrap().is_writer() && !b.engine().unwrap().is_writer());
        let mut traded = 0;
        for _ in 0..20 {
            clock.advance_ms(500);
            traded += a.step_market().await.unwrap();
            assert_eq!(b.step_market().await.unwrap(), 0, "the follower's market does nothing");
        }
        assert!(traded > 0);
        let seq = a.engine().unwrap().applied();
        let start = Instant::now();
        while b.engine().unwrap().applied() < seq {
            assert!(start.elapsed() < Duration::from_secs(5), "B never caught up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let symbol = keygate_proto::Symbol::parse("ETHUSDT").unwrap();
        let at = keygate_proto::UnixMillis(now(&clock));
        let view = |node: &Service| {
            let symbol = symbol.clone();
            let engine = node.engine().unwrap().clone();
            async move {
                engine
                    .query(move |ex| {
                        (ex.klines(&symbol, "1m", None, None, Some(1000), at), ex.recent_trades(&symbol, Some(1000)))
                    })
                    .await
                    .unwrap()
            }
        };
        let (ka, ta) = view(&a).await;
        let (kb, tb) = view(&b).await;
        assert_eq!(ka.as_ref().unwrap().len(), 1000);
        assert_eq!(ka.unwrap(), kb.unwrap());
        assert_eq!(ta.unwrap(), tb.unwrap());
        a.shutdown().await;
        b.shutdown().await;
    });
}
