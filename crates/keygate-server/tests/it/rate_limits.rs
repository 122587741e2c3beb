//! Rate limits as Binance has them: weight per address (IPv6 per /64), 429 with `Retry-After`,
//! 418 bans for clients that keep going, order counts per account with their headers and -1015,
//! the off switch, and `exchangeInfo.rateLimits` matching what is enforced.

use crate::exchange_support::{fund, trader};
use keygate_auth::Permission;
use keygate_client::signed_query;
use keygate_server::ratelimit::{BanPolicy, Interval, RateLimitConfig, Window};
use keygate_testkit::{START, TestApp};
use reqwest::Method;

/// Limits small enough to reach in a test: 10 weight a minute, 2 refusals before a ban,
/// 2 orders per 10 seconds and 3 a day.
fn small() -> RateLimitConfig {
    RateLimitConfig {
        enabled: true,
        request_weight: vec![Window::new(Interval::Minute, 1, 10)],
        raw_requests: vec![Window::new(Interval::Minute, 5, 1_000)],
        orders: vec![Window::new(Interval::Second, 10, 2), Window::new(Interval::Day, 1, 3)],
        ban: BanPolicy { after_refusals: 2, ..BanPolicy::default() },
    }
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: serde_json::Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(req: reqwest::RequestBuilder) -> Reply {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.json().await.unwrap_or(serde_json::Value::Null);
    Reply { status, headers, body }
}

async fn ping(app: &TestApp, forwarded_for: Option<&str>) -> Reply {
    let mut req = reqwest::Client::new().get(format!("{}/api/v3/ping", app.base_url));
    if let Some(f) = forwarded_for {
        req = req.header("X-Forwarded-For", f);
    }
    send(req).await
}

#[tokio::test]
async fn weight_over_the_limit_gets_429_then_a_418_ban_that_expires() {
    let app = TestApp::spawn_with(|c| c.rate_limits = small()).await;
    app.clock.advance_ms(15_000);
    for used in 1..=10 {
        let r = ping(&app, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-mbx-used-weight-1m"), Some(used.to_string().as_str()));
        assert_eq!(r.header("x-mbx-used-weight"), Some(used.to_string().as_str()));
    }
    // Over the limit: 429 -1003, retry when the minute resets (45 s on).
    let r = ping(&app, None).await;
    assert_eq!((r.status, r.body["code"].as_i64()), (429, Some(-1003)));
    assert_eq!(r.header("retry-after"), Some("45"));
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("11"));
    assert_eq!(
        r.body["msg"],
        "Too much request weight used; current limit is 10 request weight per 1 MINUTE. \
         Please use WebSocket Streams for live updates to avoid polling the API."
    );
    assert_eq!(ping(&app, None).await.status, 429);
    // Kept going after two 429s: banned for 2 minutes.
    let r = ping(&app, None).await;
    let until = START.0 + 15_000 + 120_000;
    assert_eq!((r.status, r.body["code"].as_i64()), (418, Some(-1003)));
    assert_eq!(r.header("retry-after"), Some("120"));
    assert_eq!(
        r.body["msg"],
        format!(
            "Way too much request weight used; IP banned until {until}. \
             Please use WebSocket Streams for live updates to avoid bans."
        )
    );
    // The ban outlives the minute, and is decided before a signed request is even read.
    app.clock.advance_ms(60_000);
    assert_eq!(ping(&app, None).await.status, 418);
    let r = send(
        reqwest::Client::new()
            .get(format!("{}/api/v3/account?timestamp=1&signature=x", app.base_url))
            .header("X-MBX-APIKEY", "not-a-key"),
    )
    .await;
    assert_eq!((r.status, r.body["code"].as_i64()), (418, Some(-1003)));
    // Health checks are not Binance's API: a banned load balancer still sees the node alive.
    let r = send(reqwest::Client::new().get(format!("{}/healthz", app.base_url))).await;
    assert_eq!((r.status, r.header("x-mbx-used-weight-1m")), (200, None));
    // Nor is the console, pages or JSON API: it answers in its own format under its own
    // throttles, never with Binance's 418 body its OpenAPI document does not describe.
    let r = send(reqwest::Client::new().get(format!("{}/api/console/v1/session", app.base_url))).await;
    assert_eq!((r.status, r.header("x-mbx-used-weight-1m")), (200, None));
    // Over: a fresh minute with a fresh count.
    app.clock.advance_ms(60_000);
    let r = ping(&app, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("1"));
}

#[tokio::test]
async fn ipv6_addresses_in_one_64_share_their_weight() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = small();
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 1..=10 {
        let r = ping(&app, Some(&format!("2001:db8::{i:x}"))).await;
        assert_eq!(r.header("x-mbx-used-weight-1m"), Some(i.to_string().as_str()));
    }
    assert_eq!(ping(&app, Some("2001:db8::ffff:1")).await.status, 429);
    // The next /64 and an IPv4 client have their own counters.
    let r = ping(&app, Some("2001:db8:0:1::1")).await;
    assert_eq!((r.status, r.header("x-mbx-used-weight-1m")), (200, Some("1")));
    let r = ping(&app, Some("192.0.2.1")).await;
    assert_eq!((r.status, r.header("x-mbx-used-weight-1m")), (200, Some("1")));
}

#[tokio::test]
async fn orders_carry_their_counts_and_the_limit_answers_minus_1015() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = RateLimitConfig { request_weight: vec![Window::new(Interval::Minute, 1, 1_000)], ..small() }
    })
    .await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    fund(&app, bob.account, "BTC", "1").await;
    let order = |client: &keygate_client::Client, path: &'static str, id: &str| {
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
        let key = client.api_key().to_owned();
        let url = format!("{}{path}?{q}", app.base_url);
        async move { send(reqwest::Client::new().post(url).header("X-MBX-APIKEY", key)).await }
    };
    let a = &alice.client;
    // An order the exchange refuses (a client order id Binance does not allow) is not counted.
    let r = order(a, "/api/v3/order", "bad id!").await;
    assert_eq!((r.status, r.body["code"].as_i64()), (400, Some(-1100)), "{:?}", r.body);
    assert_eq!(r.header("x-mbx-order-count-10s"), None);
    let r = order(a, "/api/v3/order", "a1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!((r.header("x-mbx-order-count-10s"), r.header("x-mbx-order-count-1d")), (Some("1"), Some("1")));
    assert!(r.header("x-mbx-used-weight-1m").is_some());
    // A test order neither counts nor carries the headers.
    let r = order(a, "/api/v3/order/test", "t1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("x-mbx-order-count-10s"), None);
    let r = order(a, "/api/v3/order", "a2").await;
    assert_eq!(r.header("x-mbx-order-count-10s"), Some("2"));
    // The third within 10 s: 429 -1015, the order never placed.
    app.clock.advance_ms(4_000);
    let r = order(a, "/api/v3/order", "a3").await;
    assert_eq!((r.status, r.body["code"].as_i64()), (429, Some(-1015)));
    assert_eq!(r.body["msg"], "Too many new orders; current limit is 2 orders per 10 SECOND.");
    assert_eq!(r.header("retry-after"), Some("6"));
    assert_eq!(r.header("x-mbx-order-count-10s"), Some("2"));
    let open = alice.client.signed(Method::GET, "/api/v3/openOrders", &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_eq!(open.body.as_array().unwrap().len(), 2);
    // Counted per account: Bob is not affected.
    assert_eq!(order(&bob.client, "/api/v3/order", "b1").await.status, 200);
    // Next window: one more, then the day's limit of 3.
    app.clock.advance_ms(6_000);
    let r = order(a, "/api/v3/order", "a4").await;
    assert_eq!(
        (r.status, r.header("x-mbx-order-count-10s"), r.header("x-mbx-order-count-1d")),
        (200, Some("1"), Some("3"))
    );
    app.clock.advance_ms(10_000);
    let r = order(a, "/api/v3/order", "a5").await;
    assert_eq!((r.status, r.body["code"].as_i64()), (429, Some(-1015)));
    assert_eq!(r.body["msg"], "Too many new orders; current limit is 3 orders per 1 DAY.");
    // A refused order is no refused request: it never leads to a ban.
    assert_eq!(ping(&app, None).await.status, 200);
}

#[tokio::test]
async fn rate_limits_off_refuse_nothing_and_publish_nothing() {
    let app = TestApp::spawn_with(|c| c.rate_limits = RateLimitConfig { enabled: false, ..small() }).await;
    for _ in 0..30 {
        let r = ping(&app, None).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-mbx-used-weight-1m"), None);
    }
    let r = send(reqwest::Client::new().get(format!("{}/api/v3/exchangeInfo", app.base_url))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["rateLimits"], serde_json::json!([]));
}

#[tokio::test]
async fn exchange_info_publishes_the_limits_in_force() {
    let app = TestApp::spawn().await;
    let r = send(reqwest::Client::new().get(format!("{}/api/v3/exchangeInfo", app.base_url))).await;
    assert_eq!(
        r.body["rateLimits"],
        serde_json::json!([
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ])
    );
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("20"));
    let app = TestApp::spawn_with(|c| c.rate_limits = RateLimitConfig::binance().scaled(10)).await;
    let r = send(reqwest::Client::new().get(format!("{}/api/v3/exchangeInfo", app.base_url))).await;
    let limits: Vec<u64> =
        r.body["rateLimits"].as_array().unwrap().iter().map(|l| l["limit"].as_u64().unwrap()).collect();
    assert_eq!(limits, vec![60_000, 1_000, 2_000_000, 610_000]);
}

async fn used_weight(app: &TestApp, path_and_query: &str) -> Option<u32> {
    let r = send(reqwest::Client::new().get(format!("{}{path_and_query}", app.base_url))).await;
    assert_eq!(r.status, 200, "{path_and_query}: {:?}", r.body);
    r.header("x-mbx-used-weight-1m").map(|v| v.parse().unwrap())
}

#[tokio::test]
async fn weight_is_charged_from_the_parameters_as_decoded_by_the_handler() {
    let app = TestApp::spawn().await;
    let mut total = 0;
    // The reviewer's cases: an encoded name or value must weigh what the handler reads.
    for (q, w) in [
        ("symbol=BTCUSDT&limit=5000", 250),
        ("symbol=BTCUSDT&lim%69t=5000", 250),
        ("symbol=BTCUSDT&limit=%35000", 250),
        ("symbol=BTCUSDT&limit=%31%30", 5),
    ] {
        total += w;
        assert_eq!(used_weight(&app, &format!("/api/v3/depth?{q}")).await, Some(total), "{q}");
    }
    // A query the parser refuses (a name sent twice) is charged the endpoint's most.
    let r =
        send(reqwest::Client::new().get(format!("{}/api/v3/depth?symbol=BTCUSDT&limit=5&limit=5", app.base_url))).await;
    assert_eq!((r.status, r.body["code"].as_i64()), (400, Some(-1101)));
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some((total + 250).to_string().as_str()));
}

#[tokio::test]
async fn body_parameters_that_add_weight_are_charged_once_the_request_is_read() {
    let app = TestApp::spawn_with(|c| {
        c.rate_limits = RateLimitConfig { request_weight: vec![Window::new(Interval::Minute, 1, 30)], ..small() }
    })
    .await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    let test_order = |in_query: &[(&str, &str)], in_body: &[(&str, &str)]| {
        let client = &alice.client;
        let query = keygate_client::query_string(in_query);
        // The signature covers the query followed by the body.
        let body_params = keygate_client::query_string(in_body);
        let mut body = if body_params.is_empty() { String::new() } else { format!("{body_params}&") };
        body.push_str(&format!("timestamp={}", client.now().0));
        let sig = client.signer().sign(format!("{query}{body}").as_bytes());
        body.push_str(&format!("&signature={sig}"));
        let url = format!("{}/api/v3/order/test?{query}", app.base_url);
        let req = reqwest::Client::new()
            .post(url)
            .header("X-MBX-APIKEY", client.api_key())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        async move { send(req).await }
    };
    let order = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "60000"),
    ];
    // Without the rates: 1.
    let r = test_order(&order, &[]).await;
    assert_eq!((r.status, r.header("x-mbx-used-weight-1m")), (200, Some("1")), "{:?}", r.body);
    // computeCommissionRates=true in the body: 20, as in the query.
    let r = test_order(&order, &[("computeCommissionRates", "true")]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["standardCommissionForOrder"].is_object(), "{:?}", r.body);
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("21"));
    // The next one would take the address to 41 of 30: refused before any work is done.
    app.clock.advance_ms(1);
    let r = test_order(&order, &[("computeCommissionRates", "true")]).await;
    assert_eq!((r.status, r.body["code"].as_i64()), (429, Some(-1003)), "{:?}", r.body);
    assert_eq!(r.header("x-mbx-used-weight-1m"), Some("41"));
}
