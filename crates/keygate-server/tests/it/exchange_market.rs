//! Public market data: `exchangeInfo` in Binance's exact shape, symbol selection, tickers, and the
//! futures stubs ccxt's `load_markets()` needs.

use super::exchange_support::public;
use keygate_testkit::{START, TestApp};

#[tokio::test]
async fn exchange_info_has_binances_shape_and_only_the_supported_order_types() {
    let app = TestApp::spawn().await;
    let (status, info) = public(&app, "/api/v3/exchangeInfo").await;
    assert_eq!(status, 200);
    assert_eq!(info["timezone"], "UTC");
    assert_eq!(info["serverTime"], START.0);
    assert_eq!(info["exchangeFilters"], serde_json::json!([]));
    assert_eq!(
        info["rateLimits"],
        serde_json::json!([
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ])
    );
    let symbols = info["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 4);
    let btc = symbols.iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    assert_eq!(btc["status"], "TRADING");
    assert_eq!((btc["baseAsset"].as_str(), btc["quoteAsset"].as_str()), (Some("BTC"), Some("USDT")));
    for field in [
        "baseAssetPrecision",
        "quotePrecision",
        "quoteAssetPrecision",
        "baseCommissionPrecision",
        "quoteCommissionPrecision",
    ] {
        assert_eq!(btc[field], 8, "{field}");
    }
    assert_eq!(btc["orderTypes"], serde_json::json!(["LIMIT", "LIMIT_MAKER", "MARKET"]));
    for (flag, value) in [
        ("icebergAllowed", false),
        ("ocoAllowed", false),
        ("otoAllowed", false),
        ("quoteOrderQtyMarketAllowed", true),
        ("allowTrailingStop", false),
        ("cancelReplaceAllowed", false),
        ("isSpotTradingAllowed", true),
        ("isMarginTradingAllowed", false),
    ] {
        assert_eq!(btc[flag], value, "{flag}");
    }
    assert_eq!(btc["permissions"], serde_json::json!([]));
    assert_eq!(btc["permissionSets"], serde_json::json!([["SPOT"]]));
    assert_eq!(btc["defaultSelfTradePreventionMode"], "EXPIRE_MAKER");
    assert_eq!(
        btc["allowedSelfTradePreventionModes"],
        serde_json::json!(["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"])
    );
    let filters = btc["filters"].as_array().unwrap();
    let types: Vec<&str> = filters.iter().map(|f| f["filterType"].as_str().unwrap()).collect();
    assert_eq!(types, ["PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "NOTIONAL", "MAX_NUM_ORDERS"]);
    assert_eq!(
        filters[0],
        serde_json::json!({"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"})
    );
    assert_eq!(filters[1]["stepSize"], "0.00001000");
    assert_eq!(
        filters[3],
        serde_json::json!({"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": true,
            "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5})
    );
    assert_eq!(filters[4], serde_json::json!({"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200}));
    app.shutdown().await;
}

#[tokio::test]
async fn exchange_info_filters_by_symbol_and_by_a_json_symbols_list() {
    let app = TestApp::spawn().await;
    let (_, one) = public(&app, "/api/v3/exchangeInfo?symbol=ETHBTC").await;
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["symbols"].as_array().unwrap().iter().map(|s| s["symbol"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names(&one), ["ETHBTC"]);
    // As the connector and the SDK send it: JSON, percent-encoded.
    let (status, two) = public(&app, "/api/v3/exchangeInfo?symbols=%5B%22ETHUSDT%22%2C%22BTCUSDT%22%5D").await;
    assert_eq!(status, 200);
    assert_eq!(names(&two), ["ETHUSDT", "BTCUSDT"]);
    let (status, err) = public(&app, "/api/v3/exchangeInfo?symbol=DOGEUSDT").await;
    assert_eq!(
        (status, &err["code"], &err["msg"]),
        (400, &serde_json::json!(-1121), &serde_json::json!("Invalid symbol."))
    );
    let (status, err) = public(&app, "/api/v3/exchangeInfo?symbols=%5B%22BTCUSDT%22%2C%22NOPE%22%5D").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1121)));
    let (status, err) = public(&app, "/api/v3/exchangeInfo?symbols=BTCUSDT").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1100)));
    let (status, err) = public(&app, "/api/v3/exchangeInfo?symbol=BTCUSDT&symbols=%5B%22BTCUSDT%22%5D").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1128)));
    let (status, err) = public(&app, "/api/v3/exchangeInfo?foo=1").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1104)));
    app.shutdown().await;
}

#[tokio::test]
async fn public_endpoints_ignore_an_empty_api_key_header() {
    let app = TestApp::spawn().await;
    let res = reqwest::Client::new()
        .get(format!("{}/api/v3/exchangeInfo?symbol=BTCUSDT", app.base_url))
        .header("X-MBX-APIKEY", "")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = reqwest::Client::new()
        .get(format!("{}/api/v3/ticker/price", app.base_url))
        .header("X-MBX-APIKEY", "kg_not_even_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn tickers_answer_one_object_for_symbol_and_arrays_otherwise() {
    let app = TestApp::spawn().await;
    let (_, one) = public(&app, "/api/v3/ticker/price?symbol=BTCUSDT").await;
    assert_eq!(one, serde_json::json!({"symbol": "BTCUSDT", "price": "60000.00000000"}));
    let (_, all) = public(&app, "/api/v3/ticker/price").await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (_, some) = public(&app, "/api/v3/ticker/24hr?symbols=%5B%22BTCUSDT%22,%22ETHUSDT%22%5D").await;
    let some = some.as_array().unwrap();
    assert_eq!(some.len(), 2);
    assert_eq!(some[1]["symbol"], "ETHUSDT");
    for field in ["priceChange", "priceChangePercent", "lastPrice", "bidPrice", "askQty", "volume", "quoteVolume"] {
        assert!(some[0][field].is_string(), "{field}");
    }
    assert_eq!((some[0]["firstId"].as_i64(), some[0]["count"].as_u64()), (Some(-1), Some(0)));
    let (_, mini) = public(&app, "/api/v3/ticker/24hr?symbol=BTCUSDT&type=MINI").await;
    assert!(mini.get("priceChange").is_none() && mini["openPrice"].is_string());
    let (_, book) = public(&app, "/api/v3/ticker/bookTicker?symbol=ETHBTC").await;
    assert_eq!(
        book,
        serde_json::json!({"symbol": "ETHBTC", "bidPrice": "0.00000000", "bidQty": "0.00000000",
            "askPrice": "0.00000000", "askQty": "0.00000000"})
    );
    let (_, avg) = public(&app, "/api/v3/avgPrice?symbol=BTCUSDT").await;
    assert_eq!((avg["mins"].as_u64(), avg["price"].as_str()), (Some(5), Some("60000.00000000")));
    let (_, depth) = public(&app, "/api/v3/depth?symbol=BTCUSDT&limit=5").await;
    assert_eq!(depth, serde_json::json!({"lastUpdateId": 0, "bids": [], "asks": []}));
    let (status, err) = public(&app, "/api/v3/depth?symbol=btcusdt").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1100)));
    let (status, err) = public(&app, "/api/v3/klines?symbol=BTCUSDT&interval=7m").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1120)));
    let (status, err) = public(&app, "/api/v3/klines?symbol=BTCUSDT").await;
    assert_eq!((status, err["code"].as_i64()), (400, Some(-1102)));
    app.shutdown().await;
}

#[tokio::test]
async fn futures_exchange_info_is_empty_for_ccxt_load_markets() {
    let app = TestApp::spawn().await;
    for path in ["/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"] {
        let (status, body) = public(&app, path).await;
        assert_eq!(status, 200);
        assert_eq!(
            body,
            serde_json::json!({"timezone": "UTC", "serverTime": START.0, "rateLimits": [], "exchangeFilters": [], "symbols": []})
        );
    }
    app.shutdown().await;
}

/// The market maker requotes by cancelling its quotes and placing new ones. Done as one engine
/// batch, a reader sees the old quotes or the new ones, never a book with one side emptied in
/// between (clients and bots took that for a market with no liquidity).
#[tokio::test]
async fn readers_never_see_a_side_of_the_market_makers_book_empty_while_it_requotes() {
    use keygate_proto::{AccountId, Symbol};
    let app = TestApp::spawn_with(|c| {
        // Requoting after every 1 bps of drift: nearly every tick (two a second) for each market.
        c.market_maker = Some(keygate_exchange::MarketMakerConfig {
            requote_bps: 1,
            ..keygate_exchange::MarketMakerConfig::new(AccountId(900), 7)
        });
    })
    .await;
    let symbols: Vec<Symbol> =
        ["BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT"].iter().map(|s| Symbol::parse(s).unwrap()).collect();
    let tops = || {
        let symbols = symbols.clone();
        app.engine.query(move |ex| {
            symbols
                .iter()
                .map(|s| ex.depth(s, Some(5)).map(|d| (d.bids.first().map(|b| b.0), d.asks.first().map(|a| a.0))))
                .collect::<Result<Vec<_>, _>>()
        })
    };
    // The first quotes.
    let mut last = loop {
        let t = tops().await.unwrap().unwrap();
        if t.iter().all(|(b, a)| b.is_some() && a.is_some()) {
            break t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (mut requotes, mut reads, mut empty) = (0, 0, 0);
    #[allow(clippy::disallowed_methods)] // Wall time: the market maker ticks on a real timer.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        let t = tops().await.unwrap().unwrap();
        reads += 1;
        empty += t.iter().filter(|(b, a)| b.is_none() || a.is_none()).count();
        requotes += t.iter().zip(&last).filter(|(now, before)| now != before).count();
        last = t;
        if requotes >= 12 {
            break;
        }
    }
    // Without requotes the test would prove nothing.
    assert!(requotes >= 12, "only {requotes} requotes in {reads} reads");
    assert_eq!(empty, 0, "{empty} empty sides seen in {reads} reads over {requotes} requotes");
    app.shutdown().await;
}
