//! `X-MBX-TIME-UNIT: MICROSECOND` (python-binance `time_unit=`, the official SDK's
//! `ConfigurationRestAPI(time_unit=...)`): `/api/*` answers carry their times in microseconds and
//! take `startTime`/`endTime` in microseconds; `/sapi/*` keeps milliseconds.

use super::exchange_support::{fund, trader};
use keygate_auth::{Permission, Permissions, Restrictions};
use keygate_client::{Answer, Client, signed_query};
use keygate_proto::AccountId;
use keygate_testkit::{START, TestApp};
use reqwest::Method;

const US: u64 = START.0 * 1000;

async fn get(app: &TestApp, path_and_query: &str, unit: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path_and_query}", app.base_url));
    if let Some(u) = unit {
        req = req.header("X-MBX-TIME-UNIT", u);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json;charset=UTF-8");
    (status, res.json().await.unwrap())
}

/// An unsigned request of any method and answer type with the time-unit header `unit`.
async fn with_unit(app: &TestApp, method: reqwest::Method, path: &str, unit: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", app.base_url))
        .header("X-MBX-TIME-UNIT", unit)
        .send()
        .await
        .unwrap()
}

/// A signed request, all parameters in the query string, with the time-unit header.
async fn signed(
    app: &TestApp,
    api_key: &str,
    client: &Client,
    method: Method,
    path: &str,
    params: &[(&str, &str)],
) -> Answer {
    let q = signed_query(params, client.now(), client.signer());
    let res = reqwest::Client::new()
        .request(method, format!("{}{path}?{q}", app.base_url))
        .header("X-MBX-APIKEY", api_key)
        .header("X-MBX-TIME-UNIT", "MICROSECOND")
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    Answer { status, reason: None, request_id: None, body: res.json().await.unwrap() }
}

#[tokio::test]
async fn server_time_follows_the_requested_unit_and_a_bad_unit_is_refused() {
    let app = TestApp::spawn().await;
    assert_eq!(get(&app, "/api/v3/time", None).await.1["serverTime"], START.0);
    assert_eq!(get(&app, "/api/v3/time", Some("MILLISECOND")).await.1["serverTime"], START.0);
    assert_eq!(get(&app, "/api/v3/time", Some("MICROSECOND")).await.1["serverTime"], US);
    assert_eq!(get(&app, "/api/v3/time", Some("microsecond")).await.1["serverTime"], US);
    let (_, info) = get(&app, "/api/v3/exchangeInfo?symbol=BTCUSDT", Some("MICROSECOND")).await;
    assert_eq!(info["serverTime"], US);
    assert_eq!(info["symbols"][0]["filters"][0]["tickSize"], "0.01000000");
    let (status, body) = get(&app, "/api/v3/time", Some("SECOND")).await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(-1100)));
    // Refused after the request is charged, like any refusal: a bad unit does not get a client
    // past its limits.
    let used = |r: &reqwest::Response| r.headers()["x-mbx-used-weight-1m"].to_str().unwrap().parse::<u32>().unwrap();
    let first = with_unit(&app, reqwest::Method::GET, "/api/v3/time", "SECOND").await;
    let second = with_unit(&app, reqwest::Method::GET, "/api/v3/depth?symbol=BTCUSDT&limit=5000", "SECOND").await;
    assert_eq!((first.status().as_u16(), second.status().as_u16()), (400, 400));
    assert_eq!(used(&second), used(&first) + 250, "depth at 5000 levels weighs 250, refused or not");
    // Paths that are not Binance's ignore the header, good or bad.
    for (path, status) in [("/readyz", 200), ("/api/console/v1/session", 200)] {
        assert_eq!(with_unit(&app, reqwest::Method::GET, path, "SECOND").await.status(), status, "{path}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn orders_trades_and_klines_answer_in_microseconds_and_filter_by_microsecond_times() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    let bob_account = AccountId(app.account("bob").await.id);
    fund(&app, bob_account, "USDT", "1000").await;
    let created = app.hmac_key("bob", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
    let bob_key = (created.key.api_key.clone(), app.hmac_client(&created));
    let sell = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "60000"),
    ];
    let a = alice.client.signed(Method::POST, "/api/v3/order", &sell).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["transactTime"], START.0);

    let buy = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.004")];
    let b = signed(&app, &bob_key.0, &bob_key.1, Method::POST, "/api/v3/order", &buy).await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert_eq!((b.body["transactTime"].as_u64(), b.body["workingTime"].as_u64()), (Some(US), Some(US)));
    assert_eq!(b.body["fills"][0]["price"], "60000.00000000");

    let id = b.body["orderId"].as_u64().unwrap().to_string();
    let q = [("symbol", "BTCUSDT"), ("orderId", id.as_str())];
    let o = signed(&app, &bob_key.0, &bob_key.1, Method::GET, "/api/v3/order", &q).await;
    assert_eq!(o.status, 200, "{:?}", o.body);
    for f in ["time", "updateTime", "workingTime"] {
        assert_eq!(o.body[f].as_u64(), Some(US), "{f}");
    }
    let start_in = US.to_string();
    let start_after = (US + 1000).to_string();
    let all = |start: &str| [("symbol", "BTCUSDT"), ("startTime", start)].map(|(k, v)| (k, v.to_owned()));
    for (start, want) in [(&start_in, 1), (&start_after, 0)] {
        let params = all(start);
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let orders = signed(&app, &bob_key.0, &bob_key.1, Method::GET, "/api/v3/allOrders", &params).await;
        assert_eq!(orders.status, 200, "{:?}", orders.body);
        assert_eq!(orders.body.as_array().unwrap().len(), want, "startTime {start}");
        let trades = signed(&app, &bob_key.0, &bob_key.1, Method::GET, "/api/v3/myTrades", &params).await;
        assert_eq!(trades.body.as_array().unwrap().len(), want, "startTime {start}");
        if want == 1 {
            assert_eq!(trades.body[0]["time"].as_u64(), Some(US));
        }
    }
    let acct = signed(&app, &bob_key.0, &bob_key.1, Method::GET, "/api/v3/account", &[]).await;
    assert_eq!(acct.body["updateTime"].as_u64(), Some(US));

    let (_, klines) =
        get(&app, &format!("/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime={US}"), Some("MICROSECOND")).await;
    let row = &klines[0];
    assert_eq!(row[0].as_u64(), Some(US));
    assert_eq!(row[6].as_u64(), Some(US + 59_999_000));
    assert_eq!(row[8], 1);
    let (_, t24) = get(&app, "/api/v3/ticker/24hr?symbol=BTCUSDT", Some("MICROSECOND")).await;
    assert_eq!(t24["closeTime"].as_u64(), Some(US));
    // aggTrades name their time `T`.
    let (_, agg) = get(&app, "/api/v3/aggTrades?symbol=BTCUSDT&limit=1", Some("MICROSECOND")).await;
    assert_eq!(agg[0]["T"].as_u64(), Some(US), "{agg}");

    // The wallet keeps milliseconds, as on Binance.
    let deposits = signed(&app, &bob_key.0, &bob_key.1, Method::GET, "/sapi/v1/capital/deposit/hisrec", &[]).await;
    assert_eq!(deposits.body[0]["insertTime"].as_u64(), Some(START.0));
    // And a bad unit is refused before anything happens.
    let bad = with_unit(&app, reqwest::Method::POST, "/api/v3/order", "NANOSECOND").await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(body["code"], -1100);
    app.shutdown().await;
}
