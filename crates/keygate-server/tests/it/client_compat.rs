//! Endpoints the real client libraries call that the first exchange routes lacked: ccxt's
//! `fetch_trades` reads `aggTrades`; every library's health check reads `system/status`; the
//! connector and the SDK expose `historicalTrades`, `uiKlines` and `account/commission`.

use super::exchange_support::{fund, public, trader};
use keygate_auth::Permission;
use keygate_testkit::{START, TestApp};
use reqwest::Method;

#[tokio::test]
async fn agg_trades_have_binances_shape_and_filters() {
    let app = TestApp::spawn().await;
    let (status, empty) = public(&app, "/api/v3/aggTrades?symbol=BTCUSDT").await;
    assert_eq!((status, empty), (200, serde_json::json!([])));

    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    fund(&app, bob.account, "USDT", "10000").await;
    // (Different quantities: an identical signed request would be a replay.)
    for (qty, price) in [("0.01", "60000"), ("0.012", "60000"), ("0.01", "60100")] {
        let sell = [
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", qty),
            ("price", price),
        ];
        assert_eq!(alice.client.signed(Method::POST, "/api/v3/order", &sell).await.unwrap().status, 200);
    }
    let buy = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.025")];
    let b = bob.client.signed(Method::POST, "/api/v3/order", &buy).await.unwrap();
    assert_eq!(b.body["status"], "FILLED", "{:?}", b.body);

    let (_, all) = public(&app, "/api/v3/aggTrades?symbol=BTCUSDT").await;
    let t = START.0;
    assert_eq!(
        all,
        serde_json::json!([
            {"a": 1, "p": "60000.00000000", "q": "0.01000000", "f": 1, "l": 1, "T": t, "m": false, "M": true},
            {"a": 2, "p": "60000.00000000", "q": "0.01200000", "f": 2, "l": 2, "T": t, "m": false, "M": true},
            {"a": 3, "p": "60100.00000000", "q": "0.00300000", "f": 3, "l": 3, "T": t, "m": false, "M": true},
        ])
    );
    let ids =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|a| a["a"].as_u64().unwrap()).collect::<Vec<_>>();
    // Most recent `limit`, oldest first; from an id, the first `limit` from there.
    assert_eq!(ids(&public(&app, "/api/v3/aggTrades?symbol=BTCUSDT&limit=2").await.1), [2, 3]);
    assert_eq!(ids(&public(&app, "/api/v3/aggTrades?symbol=BTCUSDT&fromId=2&limit=1").await.1), [2]);
    assert_eq!(ids(&public(&app, &format!("/api/v3/aggTrades?symbol=BTCUSDT&startTime={t}")).await.1), [1, 2, 3]);
    assert_eq!(ids(&public(&app, &format!("/api/v3/aggTrades?symbol=BTCUSDT&startTime={}", t + 1)).await.1), [0u64; 0]);
    assert_eq!(ids(&public(&app, &format!("/api/v3/aggTrades?symbol=BTCUSDT&endTime={}", t - 1)).await.1), [0u64; 0]);
    // Binance's refusals.
    let (status, e) = public(&app, &format!("/api/v3/aggTrades?symbol=BTCUSDT&fromId=1&startTime={t}")).await;
    assert_eq!((status, e["code"].as_i64()), (400, Some(-1128)));
    let (status, e) =
        public(&app, &format!("/api/v3/aggTrades?symbol=BTCUSDT&startTime={t}&endTime={}", t + 3_600_001)).await;
    assert_eq!((status, e["code"].as_i64()), (400, Some(-1127)));
    let (status, e) = public(&app, "/api/v3/aggTrades?symbol=NOPE").await;
    assert_eq!((status, e["code"].as_i64()), (400, Some(-1121)));
    let (status, e) = public(&app, "/api/v3/aggTrades?symbol=BTCUSDT&side=BUY").await;
    assert_eq!((status, e["code"].as_i64()), (400, Some(-1104)));
    app.shutdown().await;
}

#[tokio::test]
async fn system_status_is_normal() {
    let app = TestApp::spawn().await;
    assert_eq!(public(&app, "/sapi/v1/system/status").await, (200, serde_json::json!({"status": 0, "msg": "normal"})));
    app.shutdown().await;
}

#[tokio::test]
async fn historical_trades_page_by_id_and_ui_klines_match_klines() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    fund(&app, bob.account, "USDT", "10000").await;
    for (qty, price) in [("0.01", "60000"), ("0.012", "60000"), ("0.01", "60100")] {
        let sell = [
            ("symbol", "BTCUSDT"),
            ("side", "SELL"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", qty),
            ("price", price),
        ];
        assert_eq!(alice.client.signed(Method::POST, "/api/v3/order", &sell).await.unwrap().status, 200);
    }
    let buy = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.025")];
    assert_eq!(bob.client.signed(Method::POST, "/api/v3/order", &buy).await.unwrap().status, 200);

    let ids =
        |v: &serde_json::Value| v.as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect::<Vec<_>>();
    let (_, recent) = public(&app, "/api/v3/trades?symbol=BTCUSDT").await;
    let (status, all) = public(&app, "/api/v3/historicalTrades?symbol=BTCUSDT").await;
    assert_eq!((status, &all), (200, &recent));
    assert_eq!(
        all[1],
        serde_json::json!({"id": 2, "price": "60000.00000000", "qty": "0.01200000",
        "quoteQty": "720.00000000", "time": START.0, "isBuyerMaker": false, "isBestMatch": true})
    );
    assert_eq!(ids(&public(&app, "/api/v3/historicalTrades?symbol=BTCUSDT&fromId=2").await.1), [2, 3]);
    assert_eq!(ids(&public(&app, "/api/v3/historicalTrades?symbol=BTCUSDT&fromId=1&limit=2").await.1), [1, 2]);
    assert_eq!(ids(&public(&app, "/api/v3/historicalTrades?symbol=BTCUSDT&limit=1").await.1), [3]);

    let (status, ui) = public(&app, "/api/v3/uiKlines?symbol=BTCUSDT&interval=1m").await;
    assert_eq!(status, 200);
    assert_eq!(ui, public(&app, "/api/v3/klines?symbol=BTCUSDT&interval=1m").await.1);
    assert_eq!(ui[0][8], 3);
    app.shutdown().await;
}

#[tokio::test]
async fn account_commission_has_binances_shape() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[]).await;
    let a = alice.client.signed(Method::GET, "/api/v3/account/commission", &[("symbol", "ETHUSDT")]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let zero = serde_json::json!({"maker": "0.00000000", "taker": "0.00000000", "buyer": "0.00000000", "seller": "0.00000000"});
    assert_eq!(
        a.body,
        serde_json::json!({
            "symbol": "ETHUSDT",
            "standardCommission": {"maker": "0.00100000", "taker": "0.00100000", "buyer": "0.00000000", "seller": "0.00000000"},
            "specialCommission": zero,
            "taxCommission": zero,
            "discount": {"enabledForAccount": false, "enabledForSymbol": false, "discountAsset": "BNB", "discount": "0.00000000"},
        })
    );
    let e = alice.client.signed(Method::GET, "/api/v3/account/commission", &[("symbol", "NOPE")]).await.unwrap();
    assert_eq!((e.status, e.error().map(|e| e.code)), (400, Some(-1121)));
    let e = alice.client.signed(Method::GET, "/api/v3/account/commission", &[]).await.unwrap();
    assert_eq!((e.status, e.error().map(|e| e.code)), (400, Some(-1102)));
    app.shutdown().await;
}
