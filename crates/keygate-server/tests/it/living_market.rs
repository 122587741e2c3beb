//! The simulated market over HTTP: history from the first second on every symbol, a taker flow
//! that fills a resting order at the touch, and the same market for the same seed and clock.

use super::exchange_support::{fund, public, trader};
use keygate_auth::Permission;
use keygate_exchange::MarketMakerConfig;
use keygate_exchange::market_maker::FlowConfig;
use keygate_proto::AccountId;
use keygate_testkit::TestApp;
use reqwest::Method;

const SYMBOLS: [&str; 4] = ["BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT"];

/// The demo's market: 30 days of history, the default flow.
fn living(seed: u64, days: u32) -> MarketMakerConfig {
    MarketMakerConfig {
        flow: Some(FlowConfig { account: AccountId(901), rate_milli: 1000 }),
        history_days: Some(days),
        ..MarketMakerConfig::new(AccountId(900), seed)
    }
}

async fn spawn_market(config: MarketMakerConfig) -> TestApp {
    let app = TestApp::spawn_with(|c| c.market_maker = Some(config)).await;
    // The first step seeds the history and quotes (the background task or this one).
    app.service.step_market().await.unwrap();
    let status = app.service.market_status().await.unwrap();
    assert!(status.history.is_some(), "{status:?}");
    app
}

/// Moves the clock on by `ms` and steps the market, as its background task would.
async fn advance(app: &TestApp, ms: u64) {
    app.clock.advance_ms(ms);
    app.service.step_market().await.unwrap();
}

#[tokio::test]
async fn a_fresh_simulated_market_answers_a_thousand_one_minute_candles_on_every_symbol() {
    let app = spawn_market(living(1, 30)).await;
    for s in SYMBOLS {
        for path in ["klines", "uiKlines"] {
            let (status, k) = public(&app, &format!("/api/v3/{path}?symbol={s}&interval=1m&limit=1000")).await;
            assert_eq!(status, 200, "{k}");
            let k = k.as_array().unwrap();
            assert_eq!(k.len(), 1000, "{s} {path}");
            assert!(k[..999].iter().all(|c| c[8].as_u64().unwrap() > 0), "{s}: every past minute traded");
        }
        let (_, day) = public(&app, &format!("/api/v3/klines?symbol={s}&interval=1d&limit=1000")).await;
        assert_eq!(day.as_array().unwrap().len(), 31, "{s}: 30 days and today");
        let (_, price) = public(&app, &format!("/api/v3/ticker/price?symbol={s}")).await;
        let (_, ticker) = public(&app, &format!("/api/v3/ticker/24hr?symbol={s}")).await;
        assert_eq!(ticker["lastPrice"], price["price"]);
        assert!(ticker["count"].as_u64().unwrap() > 10_000, "{s}: {ticker}");
        // The rolling window over a day is the 24-hour ticker; an hour is part of it.
        let (status, rolling) = public(&app, &format!("/api/v3/ticker?symbol={s}&windowSize=1d")).await;
        assert_eq!(status, 200, "{rolling}");
        for field in ["openPrice", "highPrice", "lowPrice", "lastPrice", "volume", "quoteVolume", "firstId", "lastId"] {
            assert_eq!(rolling[field], ticker[field], "{s} {field}");
        }
        assert_eq!(rolling.get("bidPrice"), None, "the rolling window has no book fields");
        let (_, hour) = public(&app, &format!("/api/v3/ticker?symbols=[\"{s}\"]&windowSize=1h&type=MINI")).await;
        let hour_count = hour[0]["count"].as_u64().unwrap();
        assert!(hour_count > 0 && hour_count < ticker["count"].as_u64().unwrap(), "{hour}");
        let (_, avg) = public(&app, &format!("/api/v3/avgPrice?symbol={s}")).await;
        assert!(avg["price"].as_str().unwrap().parse::<f64>().unwrap() > 0.0);
        let (_, hist) = public(&app, &format!("/api/v3/historicalTrades?symbol={s}&fromId=1&limit=5")).await;
        assert_eq!(hist.as_array().unwrap().len(), 5, "{s}: {hist}");
        let (_, agg) = public(&app, &format!("/api/v3/aggTrades?symbol={s}&limit=3")).await;
        assert_eq!(agg.as_array().unwrap().len(), 3, "{s}: {agg}");
    }
    for bad in [
        "/api/v3/ticker",
        "/api/v3/ticker?symbol=BTCUSDT&windowSize=60m",
        "/api/v3/ticker?symbol=BTCUSDT&windowSize=8d",
    ] {
        let (status, err) = public(&app, bad).await;
        assert_eq!(status, 400, "{bad}: {err}");
    }
    app.engine.query(|ex| ex.ledger().check_invariant()).await.unwrap().unwrap();
    app.shutdown().await;
}

#[tokio::test]
async fn a_resting_buy_one_tick_below_the_best_bid_fills_under_the_default_flow() {
    let app = spawn_market(living(2, 1)).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, bob.account, "USDT", "10000").await;
    let (_, book) = public(&app, "/api/v3/ticker/bookTicker?symbol=BTCUSDT").await;
    let bid: f64 = book["bidPrice"].as_str().unwrap().parse().unwrap();
    let price = format!("{:.2}", bid - 0.01);
    let placed = bob
        .client
        .signed(
            Method::POST,
            "/api/v3/order",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "LIMIT"),
                ("timeInForce", "GTC"),
                ("quantity", "0.001"),
                ("price", &price),
            ],
        )
        .await
        .unwrap();
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    let id = placed.body["orderId"].to_string();
    let mut waited = 0;
    loop {
        let q = bob.client.signed(Method::GET, "/api/v3/order", &[("symbol", "BTCUSDT"), ("orderId", &id)]).await;
        if q.unwrap().body["status"] == "FILLED" {
            break;
        }
        // Bounded: ten simulated minutes (it takes seconds).
        assert!(waited < 600_000, "not filled after {waited} ms");
        advance(&app, 500).await;
        waited += 500;
        app.engine.query(|ex| ex.ledger().check_invariant()).await.unwrap().unwrap();
    }
    let trades = bob.client.signed(Method::GET, "/api/v3/myTrades", &[("symbol", "BTCUSDT")]).await.unwrap();
    let trades = trades.body.as_array().unwrap().clone();
    assert!(!trades.is_empty());
    for t in &trades {
        assert_eq!((t["isMaker"].as_bool(), t["isBuyer"].as_bool()), (Some(true), Some(true)), "{t}");
        assert_eq!(t["price"].as_str().unwrap().parse::<f64>().unwrap(), price.parse::<f64>().unwrap());
        // The maker fee, 0.1 %, in the base asset bought.
        let (qty, fee): (f64, f64) =
            (t["qty"].as_str().unwrap().parse().unwrap(), t["commission"].as_str().unwrap().parse().unwrap());
        assert!((fee - qty * 0.001).abs() < 1e-8, "{t}");
        assert_eq!(t["commissionAsset"], "BTC");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn the_same_seed_and_clock_give_the_same_trades() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let app = spawn_market(living(3, 1)).await;
        for _ in 0..60 {
            advance(&app, 500).await;
        }
        let mut seen = Vec::new();
        for s in SYMBOLS {
            let (_, trades) = public(&app, &format!("/api/v3/trades?symbol={s}&limit=1000")).await;
            seen.push(trades);
        }
        app.shutdown().await;
        runs.push(seen);
    }
    assert_eq!(runs[0], runs[1]);
    // And the flow did trade in those thirty seconds: the last trades are live ones.
    let live = runs[0][0].as_array().unwrap().last().unwrap()["time"].as_u64().unwrap();
    assert!(live >= keygate_testkit::START.0, "{}", runs[0][0]);
}
