//! The client crate's typed calls against the real server: every endpoint's answer reads as its
//! `keygate_proto::binance` type, and a refusal reads as `ClientError::Api` with its `ErrorCode`.

use super::exchange_support::{fund, trader};
use keygate_auth::{IpAllowlist, Permission, Permissions, Restrictions};
use keygate_client::{ClientError, NewOrder, OrderRef};
use keygate_proto::binance::general::OneOrMany;
use keygate_proto::binance::market::{SymbolFilter, Ticker24h};
use keygate_proto::binance::trading::{OrderStatus, OrderType, Side, TestOrderResponse};
use keygate_proto::{AccountId, Amount, AssetCode, ErrorCode, Symbol, UnixMillis};
use keygate_testkit::{START, TestApp};
use reqwest::Method;

fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

fn btcusdt() -> Symbol {
    Symbol::parse("BTCUSDT").unwrap()
}

#[tokio::test]
async fn public_market_data_reads_as_typed_answers() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let c = &alice.client;
    c.ping().await.unwrap();
    assert_eq!(c.server_time().await.unwrap().server_time, START);
    assert_eq!(c.system_status().await.unwrap().status, 0);
    let info = c.exchange_info().await.unwrap();
    let btc = info.symbols.iter().find(|s| s.symbol == btcusdt()).unwrap();
    assert_eq!(btc.order_types, [OrderType::Limit, OrderType::LimitMaker, OrderType::Market]);
    assert!(matches!(btc.filters[0], SymbolFilter::Price { .. }));
    assert_eq!(info.rate_limits[0].rate_limit_type, "REQUEST_WEIGHT");

    let bob = trader(&app, "bob", &[Permission::Trade]).await;
    fund(&app, alice.account, "BTC", "1").await;
    fund(&app, bob.account, "USDT", "100000").await;
    c.new_order(&NewOrder::limit(btcusdt(), Side::Sell, amount("0.5"), amount("50000"))).await.unwrap();
    bob.client.new_order(&NewOrder::market(btcusdt(), Side::Buy, amount("0.2"))).await.unwrap();

    let depth = c.depth(&btcusdt(), Some(5)).await.unwrap();
    assert_eq!((depth.bids.len(), depth.asks), (0, vec![(amount("50000"), amount("0.3"))]));
    let trades = c.trades(&btcusdt()).await.unwrap();
    assert_eq!((trades.len(), trades[0].qty, trades[0].is_buyer_maker), (1, amount("0.2"), false));
    let agg = c.agg_trades(&btcusdt()).await.unwrap();
    assert_eq!((agg[0].id, agg[0].first_trade_id, agg[0].time), (trades[0].id, trades[0].id, trades[0].time));
    let klines = c.klines(&btcusdt(), "1m").await.unwrap();
    assert_eq!((klines[0].open_time, klines[0].volume, klines[0].trades), (START, amount("0.2"), 1));
    assert_eq!(c.ticker_price(&btcusdt()).await.unwrap().price, amount("50000"));
    assert_eq!(c.ticker_prices().await.unwrap().len(), info.symbols.len());
    let Ticker24h::Full(t) = c.ticker_24h(&btcusdt()).await.unwrap() else { panic!("a FULL ticker") };
    assert_eq!((t.count, t.ask_price), (1, amount("50000")));
    assert_eq!(c.book_ticker(&btcusdt()).await.unwrap().ask_qty, amount("0.3"));
    assert_eq!(c.avg_price(&btcusdt()).await.unwrap().price, amount("50000"));
    // The raw shapes read as the proto types too, for callers that pick the endpoint themselves.
    let mini: OneOrMany<Ticker24h> = c.public("/api/v3/ticker/24hr", &[("type", "MINI")]).await.unwrap();
    assert!(mini.into_vec().iter().all(|t| matches!(t, Ticker24h::Mini(_))));
    app.shutdown().await;
}

#[tokio::test]
async fn orders_and_the_account_read_as_typed_answers() {
    let app = TestApp::spawn().await;
    let alice = trader(&app, "alice", &[Permission::Trade]).await;
    let c = &alice.client;
    fund(&app, alice.account, "USDT", "1000").await;

    let order = NewOrder::limit(btcusdt(), Side::Buy, amount("0.01"), amount("40000")).with_client_id("a-1");
    let placed = c.new_order(&order).await.unwrap();
    let result = placed.result.as_ref().unwrap();
    assert_eq!((placed.client_order_id.as_str(), result.status), ("a-1", OrderStatus::New));
    assert_eq!((placed.order_list_id, placed.fills), (-1, Some(Vec::new())));
    let queried = c.query_order(&btcusdt(), OrderRef::ClientId("a-1")).await.unwrap();
    assert_eq!((queried.order_id, queried.price, queried.time), (placed.order_id, amount("40000"), START));
    assert_eq!(c.open_orders(None).await.unwrap(), vec![queried.clone()]);
    assert_eq!(c.all_orders(&btcusdt()).await.unwrap(), vec![queried]);
    assert!(c.my_trades(&btcusdt()).await.unwrap().is_empty());

    let account = c.account().await.unwrap();
    let usdt = account.balances.iter().find(|b| b.asset.as_str() == "USDT").unwrap();
    assert_eq!((usdt.free, usdt.locked, account.can_trade), (amount("600"), amount("400"), true));
    assert_eq!(account.uid, alice.account.0);
    let rates = c.account_commission(&btcusdt()).await.unwrap();
    assert_eq!((rates.standard_commission.maker, rates.discount.discount_asset.as_str()), (amount("0.001"), "BNB"));
    assert_eq!(c.trade_fee(Some(&btcusdt())).await.unwrap()[0].taker_commission, amount("0.001"));
    let key = c.api_restrictions().await.unwrap();
    assert!(key.enable_spot_and_margin_trading && !key.enable_withdrawals);

    let test = NewOrder::market_quote(btcusdt(), Side::Buy, amount("10"));
    assert!(matches!(c.test_order(&test, false).await.unwrap(), TestOrderResponse::Empty(_)));
    let TestOrderResponse::Commissions(with_rates) = c.test_order(&test, true).await.unwrap() else {
        panic!("commission rates")
    };
    assert_eq!(with_rates.standard_commission_for_order.taker, amount("0.001"));

    let canceled = c.cancel_order(&btcusdt(), OrderRef::Id(placed.order_id)).await.unwrap();
    assert_eq!((canceled.orig_client_order_id.as_str(), canceled.status), ("a-1", OrderStatus::Canceled));
    // A refusal is the Binance error, typed (a millisecond later: the same signature twice would
    // be refused as a replay first).
    app.clock.advance_ms(1);
    let again = c.cancel_order(&btcusdt(), OrderRef::Id(placed.order_id)).await.unwrap_err();
    let ClientError::Api { status, body } = again else { panic!("a Binance error: {again}") };
    assert_eq!((status, body.error_code()), (400, Some(ErrorCode::CancelRejected)));
    let none = c.cancel_open_orders(&btcusdt()).await.unwrap_err();
    assert!(matches!(none, ClientError::Api { ref body, .. } if body.code == -2011), "{none}");
    app.shutdown().await;
}

#[tokio::test]
async fn the_wallet_reads_as_typed_answers() {
    let app = TestApp::spawn().await;
    let account = AccountId(app.account("dave").await.id);
    let to = "bc1qallowedaddressallowedaddressallowed00";
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(),
        withdraw_addresses: vec![to.to_owned()],
        ..Restrictions::default()
    };
    let key = app.hmac_key("dave", Permissions::with(&[Permission::Withdraw]), r).await;
    let c = app.hmac_client(&key);
    fund(&app, account, "BTC", "1").await;
    let btc = AssetCode::parse("BTC").unwrap();

    let coins = c.all_coins().await.unwrap();
    let coin = coins.iter().find(|x| x.coin == btc).unwrap();
    assert_eq!((coin.free, coin.network_list[0].is_default), (amount("1"), true));
    let address = c.deposit_address(&btc).await.unwrap();
    let deposits = c.deposit_history().await.unwrap();
    assert_eq!((deposits[0].amount, &deposits[0].address), (amount("1"), &address.address));
    assert_eq!(deposits[0].insert_time, START);

    let applied = c.withdraw(&btc, to, amount("0.1")).await.unwrap();
    let history = c.withdraw_history().await.unwrap();
    assert_eq!((&history[0].id, history[0].status, &history[0].complete_time), (&applied.id, 4, &None));
    let refused = c.withdraw(&btc, "bc1qelsewhere", amount("0.1")).await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Api { ref body, .. } if body.error_code() == Some(ErrorCode::AddressNotWhitelisted)),
        "{refused}"
    );
    // A signed call read as a type of the caller's choice; an answer of another shape is a
    // decode error, not a panic.
    let wrong = c.call::<Vec<UnixMillis>>(Method::GET, "/api/v3/account", &[]).await.unwrap_err();
    assert!(matches!(wrong, ClientError::Decode { status: 200, .. }), "{wrong}");
    app.shutdown().await;
}
