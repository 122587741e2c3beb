//! Orders over HTTP: placement with FULL fills and commissions, balances, queries and cancels by
//! both ids, history, test orders, quote-quantity market orders, and Binance's error codes.

use super::exchange_support::{assert_error, balance, fund, public, trader};
use keygate_auth::{Permission, Permissions, Restrictions};
use keygate_client::signed_query;
use keygate_testkit::{START, TestApp};
use reqwest::Method;

const ORDER: &str = "/api/v3/order";

#[tokio::test]
async fn a_resting_limit_order_is_filled_by_a_market_order_from_another_account() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    fund(&app, bob.account, "USDT", "1000").await;
    assert_eq!(balance(&alice.client, "BTC").await, ("1.00000000".into(), "0.00000000".into()));

    // Alice rests a LIMIT sell: FULL by default, no fills, funds locked.
    let sell = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "60000"),
        ("newClientOrderId", "alice-1"),
    ];
    let a = alice.client.signed(Method::POST, ORDER, &sell).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let order_id = a.body["orderId"].as_u64().unwrap();
    assert_eq!(a.body["orderListId"], -1);
    assert_eq!(a.body["clientOrderId"], "alice-1");
    assert_eq!(a.body["transactTime"], START.0);
    assert_eq!(a.body["status"], "NEW");
    assert_eq!(a.body["price"], "60000.00000000");
    assert_eq!(a.body["origQty"], "0.01000000");
    assert_eq!(a.body["cummulativeQuoteQty"], "0.00000000");
    assert_eq!(a.body["selfTradePreventionMode"], "EXPIRE_MAKER");
    assert_eq!(a.body["fills"], serde_json::json!([]));
    assert_eq!(balance(&alice.client, "BTC").await, ("0.99000000".into(), "0.01000000".into()));
    let (_, depth) = public(&app, "/api/v3/depth?symbol=BTCUSDT").await;
    assert_eq!(depth["asks"], serde_json::json!([["60000.00000000", "0.01000000"]]));

    // Bob takes part of it with a MARKET buy.
    let buy = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.004")];
    let b = bob.client.signed(Method::POST, ORDER, &buy).await.unwrap();
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert_eq!(b.body["status"], "FILLED");
    assert_eq!(b.body["type"], "MARKET");
    assert_eq!(b.body["executedQty"], "0.00400000");
    assert_eq!(b.body["cummulativeQuoteQty"], "240.00000000");
    assert_eq!(b.body["clientOrderId"].as_str().unwrap().len(), 22);
    assert_eq!(
        b.body["fills"],
        serde_json::json!([{"price": "60000.00000000", "qty": "0.00400000", "commission": "0.00000400",
            "commissionAsset": "BTC", "tradeId": 1}])
    );
    assert_eq!(balance(&bob.client, "BTC").await, ("0.00399600".into(), "0.00000000".into()));
    assert_eq!(balance(&bob.client, "USDT").await, ("760.00000000".into(), "0.00000000".into()));
    assert_eq!(balance(&alice.client, "USDT").await, ("239.76000000".into(), "0.00000000".into()));

    // A MARKET buy by quote amount.
    let by_cost = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quoteOrderQty", "120")];
    let c = bob.client.signed(Method::POST, ORDER, &by_cost).await.unwrap();
    assert_eq!(c.status, 200, "{:?}", c.body);
    assert_eq!(c.body["status"], "FILLED");
    // Binance answers the quantity bought as origQty (ccxt reads the order's amount there).
    assert_eq!(c.body["origQty"], "0.00200000");
    assert_eq!(c.body["origQuoteOrderQty"], "120.00000000");
    assert_eq!(c.body["executedQty"], "0.00200000");
    let id = c.body["orderId"].as_u64().unwrap().to_string();
    let q = bob.client.signed(Method::GET, ORDER, &[("symbol", "BTCUSDT"), ("orderId", &id)]).await.unwrap();
    assert_eq!((q.body["origQty"].as_str(), q.body["executedQty"].as_str()), (Some("0.00200000"), Some("0.00200000")));
    assert_eq!(c.body["fills"][0]["commission"], "0.00000200");
    assert_eq!(balance(&bob.client, "USDT").await.0, "640.00000000");

    // Alice's order, by id and by client id.
    for by in [("orderId", order_id.to_string()), ("origClientOrderId", "alice-1".to_owned())] {
        let q = alice.client.signed(Method::GET, ORDER, &[("symbol", "BTCUSDT"), (by.0, &by.1)]).await.unwrap();
        assert_eq!(q.status, 200, "{:?}", q.body);
        assert_eq!(q.body["orderId"].as_u64(), Some(order_id));
        assert_eq!(q.body["status"], "PARTIALLY_FILLED");
        assert_eq!(q.body["executedQty"], "0.00600000");
        assert_eq!(q.body["cummulativeQuoteQty"], "360.00000000");
        assert_eq!(
            (q.body["stopPrice"].as_str(), q.body["icebergQty"].as_str()),
            (Some("0.00000000"), Some("0.00000000"))
        );
        assert_eq!((q.body["time"].as_u64(), q.body["isWorking"].as_bool()), (Some(START.0), Some(true)));
        assert!(q.body["updateTime"].is_u64() && q.body["workingTime"].is_u64());
    }
    // Both ids must name the same order.
    let mismatch = alice
        .client
        .signed(
            Method::GET,
            ORDER,
            &[("symbol", "BTCUSDT"), ("orderId", &order_id.to_string()), ("origClientOrderId", "other")],
        )
        .await
        .unwrap();
    assert_error(&mismatch, 400, -2013);

    let open = alice.client.signed(Method::GET, "/api/v3/openOrders", &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_eq!(open.body.as_array().unwrap().len(), 1, "{:?}", open.body);
    let open_all = alice.client.signed(Method::GET, "/api/v3/openOrders", &[]).await.unwrap();
    assert_eq!(open_all.body.as_array().unwrap().len(), 1);
    let all = bob.client.signed(Method::GET, "/api/v3/allOrders", &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_eq!(all.body.as_array().unwrap().len(), 2);
    assert_eq!(all.body[1]["origQuoteOrderQty"], "120.00000000");
    let trades = alice.client.signed(Method::GET, "/api/v3/myTrades", &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_eq!(trades.status, 200);
    let t = trades.body.as_array().unwrap();
    assert_eq!(t.len(), 2);
    assert_eq!(t[0]["orderId"].as_u64(), Some(order_id));
    assert_eq!(t[0]["orderListId"], -1);
    assert_eq!((t[0]["isBuyer"].as_bool(), t[0]["isMaker"].as_bool()), (Some(false), Some(true)));
    assert_eq!((t[0]["commission"].as_str(), t[0]["commissionAsset"].as_str()), (Some("0.24000000"), Some("USDT")));
    assert_eq!((t[0]["quoteQty"].as_str(), t[0]["isBestMatch"].as_bool()), (Some("240.00000000"), Some(true)));

    // Klines and tickers reflect the trades.
    let (_, klines) = public(&app, "/api/v3/klines?symbol=BTCUSDT&interval=1m").await;
    let row = klines[0].as_array().unwrap().clone();
    assert_eq!(row.len(), 12);
    assert_eq!(row[0].as_u64(), Some(START.0));
    assert_eq!(row[1], "60000.00000000");
    assert_eq!(row[5], "0.00600000");
    assert_eq!(row[6].as_u64(), Some(START.0 + 59_999));
    assert_eq!(row[7], "360.00000000");
    assert_eq!(row[8].as_u64(), Some(2));
    assert_eq!((row[9].as_str(), row[11].as_str()), (Some("0.00600000"), Some("0")));
    let (_, ticker) = public(&app, "/api/v3/ticker/24hr?symbol=BTCUSDT").await;
    assert_eq!((ticker["count"].as_u64(), ticker["volume"].as_str()), (Some(2), Some("0.00600000")));
    let (_, trades) = public(&app, "/api/v3/trades?symbol=BTCUSDT").await;
    assert_eq!(trades.as_array().unwrap().len(), 2);

    // Alice cancels by client id: the rest is released. (A moment later than the query with the
    // same parameters, whose signature this TRADE request may not reuse.)
    app.clock.advance_ms(1);
    let cancel = alice
        .client
        .signed(Method::DELETE, ORDER, &[("symbol", "BTCUSDT"), ("origClientOrderId", "alice-1")])
        .await
        .unwrap();
    assert_eq!(cancel.status, 200, "{:?}", cancel.body);
    assert_eq!(cancel.body["status"], "CANCELED");
    assert_eq!(cancel.body["origClientOrderId"], "alice-1");
    assert_eq!(cancel.body["orderId"].as_u64(), Some(order_id));
    assert_eq!(cancel.body["executedQty"], "0.00600000");
    assert!(cancel.body["transactTime"].is_u64());
    assert_eq!(balance(&alice.client, "BTC").await, ("0.99400000".into(), "0.00000000".into()));
    assert_eq!(balance(&alice.client, "USDT").await.0, "359.64000000");
    // A second cancel of the same order: -2011.
    let again = alice
        .client
        .signed(Method::DELETE, ORDER, &[("symbol", "BTCUSDT"), ("orderId", &order_id.to_string())])
        .await
        .unwrap();
    assert_error(&again, 400, -2011);
    app.shutdown().await;
}

#[tokio::test]
async fn cancel_by_order_id_and_python_binance_style_delete_with_a_form_body() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, alice.account, "USDT", "1000").await;
    let limit = |price: &'static str| {
        [
            ("symbol", "ETHUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.1"),
            ("price", price),
            ("newOrderRespType", "ACK"),
        ]
    };
    let a = alice.client.signed(Method::POST, ORDER, &limit("2000")).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let keys: Vec<&String> = a.body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "ACK has symbol, orderId, orderListId, clientOrderId, transactTime: {keys:?}");
    let id = a.body["orderId"].as_u64().unwrap().to_string();
    let cancel = alice
        .client
        .signed(Method::DELETE, ORDER, &[("symbol", "ETHUSDT"), ("orderId", &id), ("newClientOrderId", "my-cancel")])
        .await
        .unwrap();
    assert_eq!(cancel.status, 200, "{:?}", cancel.body);
    assert_eq!(cancel.body["clientOrderId"], "my-cancel");
    assert_eq!(balance(&alice.client, "USDT").await, ("1000.00000000".into(), "0.00000000".into()));

    // python-binance: DELETE with every parameter, alphabetically, in a form body.
    for price in ["1900", "1800"] {
        let r = alice.client.signed(Method::POST, ORDER, &limit(price)).await.unwrap();
        assert_eq!(r.status, 200);
    }
    let id = alice.client.signed(Method::GET, "/api/v3/openOrders", &[]).await.unwrap().body[0]["orderId"]
        .as_u64()
        .unwrap()
        .to_string();
    let body = signed_query(
        &[("orderId", &id), ("recvWindow", "10000"), ("symbol", "ETHUSDT")],
        alice.client.now(),
        alice.client.signer(),
    );
    let one = alice.client.raw(Method::DELETE, ORDER, "", &body).await.unwrap();
    assert_eq!(one.status, 200, "{:?}", one.body);
    assert_eq!(one.body["status"], "CANCELED");
    let body =
        signed_query(&[("recvWindow", "10000"), ("symbol", "ETHUSDT")], alice.client.now(), alice.client.signer());
    let rest = alice.client.raw(Method::DELETE, "/api/v3/openOrders", "", &body).await.unwrap();
    assert_eq!(rest.status, 200, "{:?}", rest.body);
    assert_eq!(rest.body.as_array().unwrap().len(), 1);
    assert_eq!(rest.body[0]["status"], "CANCELED");
    let none = alice.client.signed(Method::DELETE, "/api/v3/openOrders", &[("symbol", "ETHUSDT")]).await.unwrap();
    assert_error(&none, 400, -2011);
    assert_eq!(balance(&alice.client, "USDT").await, ("1000.00000000".into(), "0.00000000".into()));
    app.shutdown().await;
}

#[tokio::test]
async fn test_orders_validate_without_changing_anything() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "50000"),
    ];
    // No balance needed, nothing placed.
    let a = alice.client.signed(Method::POST, "/api/v3/order/test", &params).await.unwrap();
    assert_eq!((a.status, &a.body), (200, &serde_json::json!({})));
    let mut with_rates = params.to_vec();
    with_rates.push(("computeCommissionRates", "true"));
    let a = alice.client.signed(Method::POST, "/api/v3/order/test", &with_rates).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["standardCommissionForOrder"], serde_json::json!({"maker": "0.00100000", "taker": "0.00100000"}));
    assert_eq!(a.body["taxCommissionForOrder"]["maker"], "0.00000000");
    assert_eq!(a.body["discount"]["enabledForAccount"], false);
    let mut bad = params.to_vec();
    bad[5] = ("price", "50000.001");
    let a = alice.client.signed(Method::POST, "/api/v3/order/test", &bad).await.unwrap();
    assert_error(&a, 400, -1013);
    let open = alice.client.signed(Method::GET, "/api/v3/openOrders", &[]).await.unwrap();
    assert_eq!(open.body, serde_json::json!([]));
    app.shutdown().await;
}

/// Test orders are checked off the engine thread, against the book and the account's open orders
/// as of the last answer: each step here follows an answer that changed what the next test order
/// must see.
#[tokio::test]
async fn test_orders_see_the_book_and_the_open_orders_as_of_the_last_answer() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    // Each request a millisecond later, so that the same parameters are signed anew.
    let test = async |client: &keygate_client::Client, params: Vec<(&'static str, &'static str)>| {
        app.clock.advance_ms(1);
        client.signed(Method::POST, "/api/v3/order/test", &params).await.unwrap()
    };
    let maker_buy = |price: &'static str| {
        vec![("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT_MAKER"), ("quantity", "0.001"), ("price", price)]
    };
    let mine = vec![
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "61000"),
        ("newClientOrderId", "mine"),
    ];
    // Bob's account has never been read: its first test order caches it.
    let a = test(&bob.client, maker_buy("61000")).await;
    assert_eq!((a.status, &a.body), (200, &serde_json::json!({})));
    assert_eq!((test(&alice.client, mine.clone()).await.status), 200);

    let placed = alice.client.signed(Method::POST, ORDER, &mine).await.unwrap();
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    // At once: the ask is in the book and Alice's client id is taken.
    let a = test(&bob.client, maker_buy("61000")).await;
    assert_error(&a, 400, -2010);
    assert_eq!(a.body["msg"], "Order would immediately match and take.");
    assert_eq!(test(&bob.client, maker_buy("60999.99")).await.status, 200);
    let a = test(&alice.client, mine.clone()).await;
    assert_error(&a, 400, -2010);
    assert_eq!(a.body["msg"], "Duplicate order sent.");
    // Another account may use the same client id.
    assert_eq!(
        test(&bob.client, [&maker_buy("50000")[..], &[("newClientOrderId", "mine")]].concat()).await.status,
        200
    );

    let canceled = alice
        .client
        .signed(Method::DELETE, ORDER, &[("symbol", "BTCUSDT"), ("origClientOrderId", "mine")])
        .await
        .unwrap();
    assert_eq!(canceled.status, 200, "{:?}", canceled.body);
    assert_eq!(test(&alice.client, mine.clone()).await.status, 200);
    assert_eq!(test(&bob.client, maker_buy("61000")).await.status, 200);

    // A MARKET order by quantity is valued at the average price: the engine thread checks it.
    let market = vec![("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.001")];
    assert_eq!(test(&bob.client, market).await.status, 200);
    let too_small = vec![("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.00001")];
    assert_error(&test(&bob.client, too_small).await, 400, -1013);
    let unknown =
        vec![("symbol", "NOPEUSDT"), ("side", "BUY"), ("type", "LIMIT_MAKER"), ("quantity", "1"), ("price", "1")];
    assert_error(&test(&bob.client, unknown).await, 400, -1121);
    app.shutdown().await;
}

#[tokio::test]
async fn order_errors_get_binances_codes_and_leave_balances_alone() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, alice.account, "USDT", "100").await;
    let base = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "50000"),
    ];
    let with = |name: &'static str, value: &'static str| {
        let mut v: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != name).copied().collect();
        v.push((name, value));
        v
    };
    let post = |params: Vec<(&'static str, &'static str)>| {
        let c = &alice.client;
        async move { c.signed(Method::POST, ORDER, &params).await.unwrap() }
    };

    let a = post(with("quantity", "1e-05")).await;
    assert_error(&a, 400, -1100);
    assert_eq!(
        a.error().unwrap().msg,
        "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'."
    );
    assert_error(&post(with("symbol", "DOGEUSDT")).await, 400, -1121);
    assert_error(&post(with("quantity", "0.01")).await, 400, -2010); // 500 USDT > 100 free
    assert_error(&post(with("price", "50000.005")).await, 400, -1013);
    assert_error(&post(with("quantity", "0.000001")).await, 400, -1013);
    let stop = post(with("type", "STOP_LOSS")).await;
    assert_error(&stop, 400, -2010);
    assert_eq!(stop.error().unwrap().msg, "Stop loss orders are not supported for this symbol.");
    assert_error(&post(with("type", "BOGUS")).await, 400, -1116);
    assert_error(&post(with("side", "HOLD")).await, 400, -1117);
    assert_error(&post(with("timeInForce", "GTX")).await, 400, -1115);
    assert_error(&post(with("icebergQty", "0.0001")).await, 400, -2010);
    assert_error(&post(with("stopPrice", "49000")).await, 400, -1106);
    assert_error(&post(with("strategyId", "7")).await, 400, -1104);
    assert_error(&post(with("newClientOrderId", "has space")).await, 400, -1100);
    assert_error(&post(with("newOrderRespType", "MAX")).await, 400, -1130);
    let mut no_price: Vec<(&str, &str)> = base.iter().filter(|(n, _)| *n != "price").copied().collect();
    no_price.push(("recvWindow", "10000"));
    assert_error(&post(no_price).await, 400, -1102);

    let q = alice.client.signed(Method::GET, ORDER, &[("symbol", "BTCUSDT"), ("orderId", "42")]).await.unwrap();
    assert_error(&q, 400, -2013);
    let q = alice.client.signed(Method::GET, ORDER, &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_error(&q, 400, -1102);
    app.clock.advance_ms(1); // a fresh signature: the query above signed the same parameters
    let c = alice.client.signed(Method::DELETE, ORDER, &[("symbol", "BTCUSDT"), ("orderId", "42")]).await.unwrap();
    assert_error(&c, 400, -2011);
    assert_eq!(balance(&alice.client, "USDT").await, ("100.00000000".into(), "0.00000000".into()));
    app.shutdown().await;
}

#[tokio::test]
async fn a_read_only_key_cannot_place_orders() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[]).await;
    fund(&app, alice.account, "USDT", "1000").await;
    let a = alice
        .client
        .signed(
            Method::POST,
            ORDER,
            &[("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quoteOrderQty", "10")],
        )
        .await
        .unwrap();
    assert_error(&a, 401, -2015);
    assert_eq!(a.reason.as_deref(), Some("PERMISSION_MISSING_TRADE"));
    assert_eq!(balance(&alice.client, "USDT").await, ("1000.00000000".into(), "0.00000000".into()));
    app.shutdown().await;
}

#[tokio::test]
async fn the_account_reports_commissions_permissions_and_balances_in_binances_shape() {
    let app = TestApp::spawn().await;
    let id = app.account("carol").await.id;
    let key = app.hmac_key("carol", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
    let client = app.hmac_client(&key);
    fund(&app, keygate_proto::AccountId(id), "ETH", "2.5").await;
    let a = client.signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = &a.body;
    assert_eq!((b["makerCommission"].as_u64(), b["takerCommission"].as_u64()), (Some(10), Some(10)));
    assert_eq!(b["commissionRates"]["maker"], "0.00100000");
    assert_eq!(
        (b["canTrade"].as_bool(), b["canWithdraw"].as_bool(), b["canDeposit"].as_bool()),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!((b["accountType"].as_str(), b["uid"].as_i64()), (Some("SPOT"), Some(id)));
    assert_eq!(b["permissions"], serde_json::json!(["SPOT"]));
    assert!(b["updateTime"].is_u64());
    assert_eq!(b["balances"].as_array().unwrap().len(), 4);
    let only = client.signed(Method::GET, "/api/v3/account", &[("omitZeroBalances", "true")]).await.unwrap();
    assert_eq!(
        only.body["balances"],
        serde_json::json!([{"asset": "ETH", "free": "2.50000000", "locked": "0.00000000"}])
    );
    let fee = client.signed(Method::GET, "/sapi/v1/asset/tradeFee", &[("symbol", "ETHBTC")]).await.unwrap();
    assert_eq!(
        fee.body,
        serde_json::json!([{"symbol": "ETHBTC", "makerCommission": "0.00100000", "takerCommission": "0.00100000"}])
    );
    app.shutdown().await;
}

/// `canTrade`, the number of balances and the balances of one `GET /api/v3/account`.
async fn read_account(client: &keygate_client::Client, omit_zero: bool) -> (bool, usize, serde_json::Value) {
    let params: &[(&str, &str)] = if omit_zero { &[("omitZeroBalances", "true")] } else { &[] };
    let a = client.signed(Method::GET, "/api/v3/account", params).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    (a.body["canTrade"].as_bool().unwrap(), a.body["balances"].as_array().unwrap().len(), a.body["balances"].clone())
}

/// The account answer is serialized once per state and request variant and reused: two keys of
/// one account with different permissions, reading alternately with and without
/// `omitZeroBalances`, each get their own flags and balance list, and the first read after a
/// change shows the change.
#[tokio::test]
async fn reused_account_answers_keep_each_keys_permissions_and_follow_every_change() {
    let app = TestApp::spawn().await;
    let id = app.account("dave").await.id;
    let account = keygate_proto::AccountId(id);
    let reader = app.hmac_client(&app.hmac_key("dave", Permissions::with(&[]), Restrictions::default()).await);
    let trader =
        app.hmac_client(&app.hmac_key("dave", Permissions::with(&[Permission::Trade]), Restrictions::default()).await);
    fund(&app, account, "ETH", "1").await;
    for round in 0..3 {
        app.clock.advance_ms(1); // fresh signatures for the repeated reads
        let (t, n, _) = read_account(&reader, false).await;
        assert_eq!((t, n), (false, 4), "round {round}");
        let (t, n, only) = read_account(&trader, true).await;
        assert_eq!((t, n), (true, 1), "round {round}");
        assert_eq!(only[0]["free"], "1.00000000", "round {round}");
        let (t, n, _) = read_account(&trader, false).await;
        assert_eq!((t, n), (true, 4), "round {round}");
        let (t, n, _) = read_account(&reader, true).await;
        assert_eq!((t, n), (false, 1), "round {round}");
    }
    fund(&app, account, "USDT", "5").await;
    let (_, n, only) = read_account(&reader, true).await;
    assert_eq!(n, 2, "the read after a deposit shows it: {only}");
    assert!(only.as_array().unwrap().iter().any(|b| b["asset"] == "USDT" && b["free"] == "5.00000000"), "{only}");
    app.shutdown().await;
}

/// binance-connector's get-then-cancel: `GET` and `DELETE /api/v3/order` with identical
/// parameters in the same millisecond carry one signature. Binance accepts both; a signature is
/// single-use per endpoint, so the cancel goes through and only a second cancel is a replay.
#[tokio::test]
async fn one_signature_may_query_and_then_cancel_an_order_but_not_cancel_twice() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, alice.account, "USDT", "1000").await;
    let limit = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "50000"),
    ];
    let placed = alice.client.signed(Method::POST, ORDER, &limit).await.unwrap();
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    let id = placed.body["orderId"].as_u64().unwrap().to_string();
    let q = signed_query(&[("symbol", "BTCUSDT"), ("orderId", &id)], alice.client.now(), alice.client.signer());
    let got = alice.client.raw(Method::GET, ORDER, &q, "").await.unwrap();
    assert_eq!((got.status, got.body["status"].as_str()), (200, Some("NEW")), "{:?}", got.body);
    let cancelled = alice.client.raw(Method::DELETE, ORDER, &q, "").await.unwrap();
    assert_eq!((cancelled.status, cancelled.body["status"].as_str()), (200, Some("CANCELED")), "{:?}", cancelled.body);
    // The same signature on the same single-use endpoint again: a replay.
    let again = alice.client.raw(Method::DELETE, ORDER, &q, "").await.unwrap();
    assert_error(&again, 400, -1022);
    assert_eq!(again.body["msg"], "Signature for this request was already used.");
    // A reading endpoint still takes a repeat, as Binance does.
    let reread = alice.client.raw(Method::GET, ORDER, &q, "").await.unwrap();
    assert_eq!((reread.status, reread.body["status"].as_str()), (200, Some("CANCELED")), "{:?}", reread.body);
    app.shutdown().await;
}
