//! Limits across nodes (issue #13, item 6): two in-process servers sharing one Redis count
//! request weight, orders and login and 2FA failures together; without Redis, and while Redis
//! does not answer, each counts alone and says so.
//!
//! Each test's nodes share a key prefix no other test uses (nothing is flushed). The two nodes
//! have their own SQLite stores here; accounts are created in the same order on both, so they
//! have the same ids, as they do on nodes that share one PostgreSQL database.

use crate::exchange_support::{fund, trader};
use keygate_auth::Permission;
use keygate_client::signed_query;
use keygate_redis::RedisCounters;
use keygate_redis::testing::{RedisProcess, unique_prefix, url_or_skip};
use keygate_server::ratelimit::{BanPolicy, Interval, RateLimitConfig, Window};
use keygate_service::counters::CounterStore;
use keygate_service::{Clock as _, ServiceError};
use keygate_testkit::TestApp;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

/// 10 weight a minute, 2 orders per 10 seconds, 5 a day; bans only long after.
fn small() -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        request_weight: vec![Window::new(Interval::Minute, 1, 10)],
        raw_requests: vec![Window::new(Interval::Minute, 5, 1_000)],
        orders: vec![Window::new(Interval::Second, 10, 2), Window::new(Interval::Day, 1, 5)],
        ban: BanPolicy { after_refusals: 100, ..BanPolicy::default() },
    }
}

/// One node: its own store, `limits`, and the counters at `redis` under `prefix` when given.
async fn node(redis: Option<(&str, &str)>, limits: RateLimitConfig) -> TestApp {
    let counters = redis.map(|(url, prefix)| {
        Arc::new(RedisCounters::new(url, prefix, Duration::from_millis(250)).unwrap()) as Arc<dyn CounterStore>
    });
    TestApp::spawn_configured(
        |s| s.shared_counters = counters,
        |c| {
            c.rate_limits = limits;
            c.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        },
    )
    .await
}

/// Two nodes sharing the Redis at `url` under a fresh prefix.
async fn two_nodes(url: &str, limits: &RateLimitConfig) -> (TestApp, TestApp) {
    let prefix = unique_prefix();
    (node(Some((url, &prefix)), limits.clone()).await, node(Some((url, &prefix)), limits.clone()).await)
}

/// `GET /api/v3/ping` (weight 1): status, Binance code, and `X-MBX-USED-WEIGHT-1M`.
async fn ping(app: &TestApp) -> (u16, Option<i64>, Option<u32>) {
    let res = reqwest::get(format!("{}/api/v3/ping", app.base_url)).await.unwrap();
    let status = res.status().as_u16();
    let used = res.headers().get("x-mbx-used-weight-1m").map(|v| v.to_str().unwrap().parse().unwrap());
    let body: serde_json::Value = res.json().await.unwrap();
    (status, body["code"].as_i64(), used)
}

async fn json(url: String) -> (u16, serde_json::Value) {
    let res = reqwest::get(url).await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

async fn ready(app: &TestApp) -> serde_json::Value {
    let (status, body) = json(format!("{}/readyz", app.base_url)).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn metrics(app: &TestApp) -> String {
    reqwest::get(format!("http://{}/metrics", app.metrics_addr.unwrap())).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn weight_spent_on_one_node_counts_on_the_other() {
    let Some(url) = url_or_skip("weight_spent_on_one_node_counts_on_the_other") else { return };
    let (a, b) = two_nodes(&url, &small()).await;
    for used in 1..=6 {
        assert_eq!(ping(&a).await, (200, None, Some(used)));
    }
    for used in 7..=10 {
        assert_eq!(ping(&b).await, (200, None, Some(used)), "B reports the weight both nodes used");
    }
    // 10 a minute across both: the 11th is refused on B, and on A too.
    assert_eq!(ping(&b).await, (429, Some(-1003), Some(11)));
    assert_eq!(ping(&a).await, (429, Some(-1003), Some(12)));
    for app in [&a, &b] {
        let r = ready(app).await;
        assert_eq!(r["rate_limits_scope"], "CLUSTER", "{r}");
        assert_eq!(r["shared_counters"]["reachable"], true, "{r}");
        assert!(metrics(app).await.contains("keygate_shared_counters_reachable 1"));
    }
}

#[tokio::test]
async fn each_node_bans_from_the_refusals_it_gave_itself() {
    let Some(url) = url_or_skip("each_node_bans_from_the_refusals_it_gave_itself") else { return };
    let limits = RateLimitConfig { ban: BanPolicy { after_refusals: 2, ..BanPolicy::default() }, ..small() };
    let (a, b) = two_nodes(&url, &limits).await;
    for _ in 0..10 {
        assert_eq!(ping(&a).await.0, 200);
    }
    // Over the shared limit: two 429s on B, then B bans the address (418).
    assert_eq!(ping(&b).await, (429, Some(-1003), Some(11)));
    assert_eq!(ping(&b).await.0, 429);
    assert_eq!(ping(&b).await.0, 418);
    // A refused nothing yet: it answers 429, not 418.
    assert_eq!(ping(&a).await.0, 429);
}

#[tokio::test]
async fn raw_requests_sent_to_one_node_count_on_the_other() {
    let Some(url) = url_or_skip("raw_requests_sent_to_one_node_count_on_the_other") else { return };
    let limits = RateLimitConfig {
        request_weight: vec![Window::new(Interval::Minute, 1, 1_000)],
        raw_requests: vec![Window::new(Interval::Minute, 5, 5)],
        ..small()
    };
    let (a, b) = two_nodes(&url, &limits).await;
    for app in [&a, &a, &a, &b, &b] {
        assert_eq!(ping(app).await.0, 200);
    }
    let res = reqwest::get(format!("{}/api/v3/ping", b.base_url)).await.unwrap();
    assert_eq!(res.status(), 429);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["msg"], "Too many requests; current limit is 5 requests per 5 MINUTE.");
}

#[tokio::test]
async fn exchange_info_says_whether_limits_are_counted_per_node_or_across_the_cluster() {
    let Some(url) = url_or_skip("exchange_info_says_whether_limits_are_counted_per_node_or_across_the_cluster") else {
        return;
    };
    let shared = node(Some((&url, &unique_prefix())), RateLimitConfig::binance()).await;
    let alone = node(None, RateLimitConfig::binance()).await;
    let off = node(Some((&url, &unique_prefix())), RateLimitConfig::off()).await;
    let info = |app: &TestApp| json(format!("{}/api/v3/exchangeInfo", app.base_url));
    let (_, i) = info(&shared).await;
    assert_eq!(i["rateLimitsScope"], "CLUSTER");
    assert_eq!(i["rateLimits"].as_array().unwrap().len(), 4, "the same limits either way");
    let (_, i) = info(&alone).await;
    assert_eq!(i["rateLimitsScope"], "NODE");
    let (_, i) = info(&off).await;
    assert!(i.get("rateLimitsScope").is_none() && i["rateLimits"] == serde_json::json!([]), "{i}");
    // A node without Redis reports no shared counters, and no series for them.
    let r = ready(&alone).await;
    assert!(r.get("shared_counters").is_none() && r["rate_limits_scope"] == "NODE", "{r}");
    assert!(!metrics(&alone).await.contains("keygate_shared_counters"));
}

/// Places a resting sell order of `who` through `app`: status, Binance code, and
/// `X-MBX-ORDER-COUNT-10S`.
async fn order(app: &TestApp, client: &keygate_client::Client, id: &str) -> (u16, Option<i64>, Option<String>) {
    let params = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "60000"),
        ("newClientOrderId", id),
    ];
    let q = signed_query(&params, client.now(), client.signer());
    let res = reqwest::Client::new()
        .post(format!("{}/api/v3/order?{q}", app.base_url))
        .header("X-MBX-APIKEY", client.api_key())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let count = res.headers().get("x-mbx-order-count-10s").map(|v| v.to_str().unwrap().to_owned());
    let body: serde_json::Value = res.json().await.unwrap();
    (status, body["code"].as_i64(), count)
}

#[tokio::test]
async fn orders_per_ten_seconds_count_across_nodes() {
    let Some(url) = url_or_skip("orders_per_ten_seconds_count_across_nodes") else { return };
    let limits = RateLimitConfig { request_weight: vec![Window::new(Interval::Minute, 1, 1_000)], ..small() };
    let (a, b) = two_nodes(&url, &limits).await;
    let on_a = trader(&a, "alice", &[Permission::Trade]).await;
    let on_b = trader(&b, "alice", &[Permission::Trade]).await;
    assert_eq!(on_a.account, on_b.account, "one account on both nodes, as on one shared database");
    fund(&a, on_a.account, "BTC", "1").await;
    fund(&b, on_b.account, "BTC", "1").await;
    assert_eq!(order(&a, &on_a.client, "a1").await, (200, None, Some("1".into())));
    // An order the exchange refuses (a client order id Binance does not allow) is given back in
    // the shared count too: otherwise B's next order would be the third and refused.
    assert_eq!(order(&b, &on_b.client, "bad id!").await, (400, Some(-1100), None));
    assert_eq!(order(&b, &on_b.client, "b1").await, (200, None, Some("2".into())), "B counts A's order");
    // 2 per 10 s across both: the third is refused on either node, and placed nowhere.
    assert_eq!(order(&b, &on_b.client, "b2").await, (429, Some(-1015), Some("2".into())));
    assert_eq!(order(&a, &on_a.client, "a2").await, (429, Some(-1015), Some("2".into())));
    // The next 10 s window is open to both again.
    a.clock.advance_ms(10_000);
    b.clock.advance_ms(10_000);
    assert_eq!(order(&b, &on_b.client, "b3").await, (200, None, Some("1".into())));
}

#[tokio::test]
async fn without_redis_each_node_enforces_its_own_limits() {
    let a = node(None, small()).await;
    let b = node(None, small()).await;
    for used in 1..=10 {
        assert_eq!(ping(&a).await, (200, None, Some(used)));
    }
    assert_eq!(ping(&a).await, (429, Some(-1003), Some(11)));
    // B has not heard of A's weight: its own limit is untouched.
    assert_eq!(ping(&b).await, (200, None, Some(1)));
    assert_eq!(ready(&b).await["rate_limits_scope"], "NODE");
}

const PASSWORD: &str = "correct horse battery";

/// An account `name` with 2FA on, on `app`; returns its TOTP generator.
async fn with_two_factor(app: &TestApp, name: &str) -> totp_rs::Totp {
    let svc = &app.service;
    svc.create_account(&TestApp::operator(), name, Zeroizing::new(PASSWORD.into())).await.unwrap();
    let s = svc.login(name, Zeroizing::new(PASSWORD.into()), None).await.unwrap();
    let actor = svc.session_actor(&s.token, None).await.unwrap();
    let e = svc.totp_enroll(&actor).await.unwrap();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now_s = app.clock.now().as_millis().0 / 1000;
    svc.totp_confirm(&actor, &totp.generate(now_s).to_string()).await.unwrap();
    totp
}

/// A six-digit code that is not one of `totp`'s valid ones at `app`'s time.
fn wrong_code(app: &TestApp, totp: &totp_rs::Totp) -> String {
    let t = app.clock.now().as_millis().0 / 1000;
    let valid: Vec<String> = [t - 30, t, t + 30].iter().map(|s| totp.generate(*s).to_string()).collect();
    (100_000..).map(|c: u32| c.to_string()).find(|c| !valid.contains(c)).unwrap()
}

#[tokio::test]
async fn login_and_two_factor_throttles_trip_across_nodes() {
    let Some(url) = url_or_skip("login_and_two_factor_throttles_trip_across_nodes") else { return };
    let (a, b) = two_nodes(&url, &small()).await;
    let pw = |s: &str| Zeroizing::new(s.to_owned());
    let from = |ip: &str| Some(ip.to_owned());
    for app in [&a, &b] {
        app.service.create_account(&TestApp::operator(), "bob", pw(PASSWORD)).await.unwrap();
    }
    // Password: 5 failures per (account, address), three on A and two on B.
    for app in [&a, &a, &a, &b, &b] {
        let r = app.service.login("bob", pw("wrong password!"), from("203.0.113.5")).await;
        assert!(matches!(r, Err(ServiceError::Unauthenticated(_))), "{r:?}");
    }
    for app in [&a, &b] {
        let r = app.service.login("bob", pw(PASSWORD), from("203.0.113.5")).await;
        assert!(matches!(r, Err(ServiceError::Throttled { .. })), "even the right password waits: {r:?}");
    }
    // Sign-ups: 10 per address per hour, counted across both.
    for (i, app) in [&a, &b].into_iter().cycle().take(10).enumerate() {
        let r = app.service.sign_up(&format!("new{i}"), pw(PASSWORD), from("203.0.113.6")).await;
        assert!(r.is_ok(), "{r:?}");
    }
    let r = a.service.sign_up("new10", pw(PASSWORD), from("203.0.113.6")).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    // 2FA codes finishing logins: 10 failures per address, five sessions on A (two codes
    // each) use them up, and B refuses the next one before looking at it.
    let totp_a = with_two_factor(&a, "carol").await;
    let totp_b = with_two_factor(&b, "carol").await;
    for _ in 0..5 {
        let pending = a.service.login("carol", pw(PASSWORD), from("203.0.113.9")).await.unwrap();
        for _ in 0..2 {
            let r = a
                .service
                .login_second_factor(&pending.token, &wrong_code(&a, &totp_a), from("203.0.113.9"), None)
                .await;
            assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
        }
    }
    let pending = b.service.login("carol", pw(PASSWORD), from("203.0.113.9")).await.unwrap();
    let r = b.service.login_second_factor(&pending.token, &wrong_code(&b, &totp_b), from("203.0.113.9"), None).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    // Another address on B is still heard.
    let pending = b.service.login("carol", pw(PASSWORD), from("203.0.113.10")).await.unwrap();
    let r = b.service.login_second_factor(&pending.token, &wrong_code(&b, &totp_b), from("203.0.113.10"), None).await;
    assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
}

#[tokio::test]
async fn a_redis_that_stops_answering_leaves_each_node_limiting_by_itself_and_ready() {
    if url_or_skip("a_redis_that_stops_answering_leaves_each_node_limiting_by_itself_and_ready").is_none() {
        return;
    }
    let capture = crate::access_log::capture();
    let outage_lines = |says: &str| capture.log.text().lines().filter(|l| l.contains(says)).count();
    let mut redis = RedisProcess::start();
    let (a, b) = two_nodes(&redis.url(), &small()).await;
    for used in 1..=3 {
        assert_eq!(ping(&a).await, (200, None, Some(used)));
    }
    assert_eq!(ping(&b).await, (200, None, Some(4)), "shared while Redis answers");
    redis.kill();
    // Each node now counts by itself, from what it counted itself: A had 3, B 1.
    assert_eq!(ping(&a).await, (200, None, Some(4)));
    assert_eq!(ping(&b).await, (200, None, Some(2)));
    for used in 5..=10 {
        assert_eq!(ping(&a).await, (200, None, Some(used)));
    }
    assert_eq!(ping(&a).await, (429, Some(-1003), Some(11)), "A's own limit holds");
    assert_eq!(ping(&b).await, (200, None, Some(3)), "B is limited by its own count");
    // Both stay ready, and say why limits are per node now.
    let r = ready(&a).await;
    assert_eq!((r["status"].as_str(), r["rate_limits_scope"].as_str()), (Some("ready"), Some("NODE")), "{r}");
    assert_eq!(r["shared_counters"]["reachable"], false, "{r}");
    assert!(r["shared_counters"]["error"].as_str().is_some_and(|e| e.starts_with("redis")), "{r}");
    let m = metrics(&a).await;
    assert!(m.contains("keygate_shared_counters_reachable 0"), "{m}");
    let fallbacks: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("keygate_shared_counters_fallbacks_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(fallbacks >= 8, "every request during the outage was decided here: {fallbacks}");
    assert_eq!(outage_lines("shared counters do not answer"), 2, "one warning per node and outage");
    // Login throttles hold per node meanwhile.
    let pw = |s: &str| Zeroizing::new(s.to_owned());
    a.service.create_account(&TestApp::operator(), "dave", pw(PASSWORD)).await.unwrap();
    for _ in 0..5 {
        let r = a.service.login("dave", pw("wrong password!"), Some("203.0.113.7".into())).await;
        assert!(matches!(r, Err(ServiceError::Unauthenticated(_))), "{r:?}");
    }
    let r = a.service.login("dave", pw(PASSWORD), Some("203.0.113.7".into())).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    // Redis back on its port, empty (it kept nothing): after the pause, limits are shared again,
    // and a node's own count stays a floor (A's minute is still over its limit).
    let _back = RedisProcess::start_on(redis.port);
    for app in [&a, &b] {
        app.clock.advance_ms(1_000);
        // The first call after an outage may still meet the dropped connection (and start the
        // reconnection): ask until Redis is found, as a load balancer polling /readyz would.
        let mut found = false;
        for _ in 0..40 {
            let r = ready(app).await;
            if r["shared_counters"]["reachable"] == true {
                assert_eq!(r["rate_limits_scope"], "CLUSTER", "{r}");
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(found, "Redis is back but the node does not find it");
    }
    assert_eq!(ping(&a).await, (429, Some(-1003), Some(12)));
    assert_eq!(ping(&b).await, (200, None, Some(4)));
    assert_eq!(outage_lines("shared counters answer again"), 2);
    assert_eq!(outage_lines("shared counters do not answer"), 2);
}

#[tokio::test]
async fn a_redis_that_hangs_costs_a_request_at_most_the_timeout_and_then_nothing() {
    if url_or_skip("a_redis_that_hangs_costs_a_request_at_most_the_timeout_and_then_nothing").is_none() {
        return;
    }
    let redis = RedisProcess::start();
    let a = node(Some((&redis.url(), &unique_prefix())), small()).await;
    assert_eq!(ping(&a).await, (200, None, Some(1)));
    redis.pause();
    let started = tokio::time::Instant::now();
    assert_eq!(ping(&a).await, (200, None, Some(2)), "decided by the node's own count");
    let first = started.elapsed();
    assert!(first >= Duration::from_millis(250) && first < Duration::from_secs(2), "{first:?}");
    // Within the pause after a failure, requests do not wait for Redis at all.
    let started = tokio::time::Instant::now();
    for used in 3..=5 {
        assert_eq!(ping(&a).await, (200, None, Some(used)));
    }
    assert!(started.elapsed() < Duration::from_millis(200), "{:?}", started.elapsed());
    assert_eq!(ready(&a).await["shared_counters"]["reachable"], false);
}
