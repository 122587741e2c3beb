//! Matching, funds, filters and order management scenarios.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use keygate_exchange::*;
use keygate_proto::UnixMillis;

fn funded() -> T {
    let mut t = T::new();
    t.deposit(A, "USDT", "1000000");
    t.deposit(A, "BTC", "10");
    t.deposit(B, "USDT", "1000000");
    t.deposit(B, "BTC", "10");
    t
}

#[test]
fn a_crossing_limit_order_fills_at_the_makers_price_and_pays_commission_in_what_it_receives() {
    let mut t = funded();
    let maker = t.limit(A, Side::Sell, "50000", "1");
    assert_eq!(maker.order.status, OrderStatus::New);
    assert_eq!(t.locked(A, "BTC"), amt("1"));
    let taker = t.limit(B, Side::Buy, "51000", "1");
    assert_eq!(taker.order.status, OrderStatus::Filled);
    assert_eq!(taker.fills.len(), 1);
    let f = &taker.fills[0];
    assert_eq!(
        (f.price, f.qty, f.commission, f.commission_asset.as_str()),
        (amt("50000"), amt("1"), amt("0.001"), "BTC")
    );
    assert_eq!(taker.order.cummulative_quote_qty, amt("50000"));
    // Buyer: paid 50000 (the unused 1000 of its lock is released), received 1 - 0.001 BTC.
    assert_eq!(t.free(B, "USDT"), amt("950000"));
    assert_eq!(t.locked(B, "USDT"), amt("0"));
    assert_eq!(t.free(B, "BTC"), amt("10.999"));
    // Seller: received 50000 - 50 USDT.
    assert_eq!(t.free(A, "USDT"), amt("1049950"));
    assert_eq!(t.locked(A, "BTC"), amt("0"));
    assert_eq!(t.ex.ledger().totals(0).fees, amt("0.001").units());
    t.check_replay();
}

#[test]
fn partial_fills_leave_the_rest_resting_and_price_time_priority_decides_who_fills_first() {
    let mut t = funded();
    t.deposit(C, "USDT", "100000");
    let first = t.limit(A, Side::Sell, "50000", "0.5");
    let middle = t.limit(B, Side::Sell, "50000", "0.1");
    let second = t.limit(A, Side::Sell, "50000", "0.5");
    let worse = t.limit(B, Side::Sell, "50010", "0.5");
    let buy = t.limit(C, Side::Buy, "50010", "0.7");
    assert_eq!(buy.order.status, OrderStatus::Filled);
    let ids: Vec<_> = buy.fills.iter().map(|f| (f.qty, f.price)).collect();
    assert_eq!(ids, vec![(amt("0.5"), amt("50000")), (amt("0.1"), amt("50000")), (amt("0.1"), amt("50000"))]);
    let q = |who, id| t.ex.order(who, &sym("BTCUSDT"), &OrderRef::Id(id)).unwrap().clone();
    assert_eq!(q(A, first.order.order_id).status, OrderStatus::Filled);
    assert_eq!(q(B, middle.order.order_id).status, OrderStatus::Filled);
    assert_eq!(q(B, worse.order.order_id).status, OrderStatus::New);
    let s = q(A, second.order.order_id);
    assert_eq!((s.status, s.executed_qty), (OrderStatus::PartiallyFilled, amt("0.1")));
    // The buyer paid the makers' price; the unused part of its lock at 50010 was released.
    assert_eq!(t.free(C, "USDT"), amt("65000"));
    assert_eq!(t.locked(C, "USDT"), amt("0"));
    let depth = t.ex.depth(&sym("BTCUSDT"), None).unwrap();
    assert_eq!(depth.asks, vec![(amt("50000"), amt("0.4")), (amt("50010"), amt("0.5"))]);
    t.check_replay();
}

#[test]
fn an_order_without_funds_is_refused_with_insufficient_balance_and_changes_nothing() {
    let mut t = funded();
    let e = t.order(C, Side::Sell, OrderType::Limit, Some(TimeInForce::Gtc), Some("49000"), Some("0.1"), None);
    assert_eq!(e.unwrap_err().code(), -2010);
    let e = t.order(B, Side::Buy, OrderType::Limit, Some(TimeInForce::Gtc), Some("1000000"), Some("2"), None);
    assert_eq!(e.unwrap_err().message(), "Account has insufficient balance for requested action.");
}

#[test]
fn ioc_fills_what_it_can_and_expires_the_rest() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.3");
    let r = t.order(B, Side::Buy, OrderType::Limit, Some(TimeInForce::Ioc), Some("50000"), Some("1"), None).unwrap();
    assert_eq!((r.order.status, r.order.executed_qty), (OrderStatus::Expired, amt("0.3")));
    assert_eq!(t.locked(B, "USDT"), amt("0"));
    assert!(t.ex.open_orders(B, None).unwrap().is_empty());
}

#[test]
fn fok_is_all_or_nothing() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.3");
    let r = t.order(B, Side::Buy, OrderType::Limit, Some(TimeInForce::Fok), Some("50000"), Some("0.5"), None).unwrap();
    assert_eq!((r.order.status, r.order.executed_qty, r.fills.len()), (OrderStatus::Expired, amt("0"), 0));
    assert_eq!(t.ex.depth(&sym("BTCUSDT"), None).unwrap().asks, vec![(amt("50000"), amt("0.3"))]);
    assert_eq!(t.free(B, "USDT"), amt("1000000"));
    let r = t.order(B, Side::Buy, OrderType::Limit, Some(TimeInForce::Fok), Some("50000"), Some("0.3"), None).unwrap();
    assert_eq!(r.order.status, OrderStatus::Filled);
}

#[test]
fn market_orders_by_quantity_walk_the_book_and_expire_without_liquidity() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.1");
    t.limit(A, Side::Sell, "50100", "0.1");
    let r = t.order(B, Side::Buy, OrderType::Market, None, None, Some("0.15"), None).unwrap();
    assert_eq!(r.order.status, OrderStatus::Filled);
    assert_eq!(r.order.cummulative_quote_qty, amt("7505"));
    assert_eq!(r.order.price, amt("0"));
    assert_eq!(t.locked(B, "USDT"), amt("0"));
    let r = t.order(B, Side::Sell, OrderType::Market, None, None, Some("0.1"), None).unwrap();
    assert_eq!((r.order.status, r.fills.len()), (OrderStatus::Expired, 0));
    assert_eq!(t.locked(B, "BTC"), amt("0"));
}

#[test]
fn a_market_buy_whose_book_cost_exceeds_the_free_balance_is_refused() {
    let mut t = funded();
    t.deposit(C, "USDT", "100");
    t.limit(A, Side::Sell, "50000", "0.1");
    let e = t.order(C, Side::Buy, OrderType::Market, None, None, Some("0.01"), None).unwrap_err();
    assert_eq!(e, ExchangeError::InsufficientBalance);
}

#[test]
fn market_orders_by_quote_order_qty_work_on_both_sides() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "1");
    let r = t.order(B, Side::Buy, OrderType::Market, None, None, None, Some("100")).unwrap();
    assert_eq!(r.order.status, OrderStatus::Filled);
    assert_eq!(r.order.orig_quote_order_qty, amt("100"));
    assert_eq!((r.order.executed_qty, r.order.cummulative_quote_qty), (amt("0.002"), amt("100")));
    assert_eq!(r.order.orig_qty, r.order.executed_qty, "origQty reports the quantity bought");
    assert_eq!(t.locked(B, "USDT"), amt("0"));
    t.limit(A, Side::Buy, "40000", "1");
    let r = t.order(B, Side::Sell, OrderType::Market, None, None, None, Some("200")).unwrap();
    assert_eq!((r.order.status, r.order.executed_qty), (OrderStatus::Filled, amt("0.005")));
    assert_eq!(r.order.orig_qty, amt("0.005"), "origQty reports the quantity sold");
    assert_eq!(r.fills[0].commission_asset.as_str(), "USDT");
    assert_eq!(t.locked(B, "BTC"), amt("0"));
    t.check_replay();
}

#[test]
fn limit_maker_is_refused_when_it_would_take() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.1");
    let e = t.order(B, Side::Buy, OrderType::LimitMaker, None, Some("50000"), Some("0.1"), None).unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), (-2010, "Order would immediately match and take."));
    let ok = t.order(B, Side::Buy, OrderType::LimitMaker, None, Some("49999"), Some("0.1"), None).unwrap();
    assert_eq!(ok.order.status, OrderStatus::New);
}

fn stp_order(t: &mut T, side: Side, price: &str, mode: StpMode) -> PlacedOrder {
    let o = NewOrder {
        account: A,
        symbol: sym("BTCUSDT"),
        side,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        quantity: Some(amt("0.1")),
        quote_order_qty: None,
        price: Some(amt(price)),
        new_client_order_id: None,
        stp_mode: Some(mode),
    };
    match t.apply(Command::PlaceOrder(o)).unwrap() {
        Outcome::Placed(p) => p,
        _ => unreachable!(),
    }
}

#[test]
fn self_trade_prevention_expire_maker_is_the_default_and_expires_the_resting_order() {
    let mut t = funded();
    let maker = t.limit(A, Side::Sell, "50000", "0.1");
    let taker = t.limit(A, Side::Buy, "50000", "0.1");
    assert_eq!(taker.order.self_trade_prevention_mode, StpMode::ExpireMaker);
    assert!(taker.fills.is_empty());
    assert_eq!(taker.order.status, OrderStatus::New);
    let m = t.ex.order(A, &sym("BTCUSDT"), &OrderRef::Id(maker.order.order_id)).unwrap();
    assert_eq!(m.status, OrderStatus::ExpiredInMatch);
    assert_eq!(t.locked(A, "BTC"), amt("0"));
}

#[test]
fn self_trade_prevention_expire_taker_expires_the_incoming_order() {
    let mut t = funded();
    let maker = stp_order(&mut t, Side::Sell, "50000", StpMode::ExpireTaker);
    let taker = stp_order(&mut t, Side::Buy, "50000", StpMode::ExpireTaker);
    assert_eq!(taker.order.status, OrderStatus::ExpiredInMatch);
    assert_eq!(t.locked(A, "USDT"), amt("0"));
    let m = t.ex.order(A, &sym("BTCUSDT"), &OrderRef::Id(maker.order.order_id)).unwrap();
    assert_eq!(m.status, OrderStatus::New);
}

#[test]
fn self_trade_prevention_expire_both_expires_both_orders() {
    let mut t = funded();
    let maker = stp_order(&mut t, Side::Sell, "50000", StpMode::None);
    let taker = stp_order(&mut t, Side::Buy, "50000", StpMode::ExpireBoth);
    assert_eq!(taker.order.status, OrderStatus::ExpiredInMatch);
    let m = t.ex.order(A, &sym("BTCUSDT"), &OrderRef::Id(maker.order.order_id)).unwrap();
    assert_eq!(m.status, OrderStatus::ExpiredInMatch);
    assert_eq!((t.locked(A, "USDT"), t.locked(A, "BTC")), (amt("0"), amt("0")));
}

#[test]
fn self_trade_prevention_none_lets_the_account_trade_with_itself() {
    let mut t = funded();
    stp_order(&mut t, Side::Sell, "50000", StpMode::None);
    let taker = stp_order(&mut t, Side::Buy, "50000", StpMode::None);
    assert_eq!(taker.order.status, OrderStatus::Filled);
    let trades = t.ex.my_trades(A, &sym("BTCUSDT"), &TradeQuery::default()).unwrap();
    assert_eq!(trades.len(), 2);
    assert!(trades.iter().any(|x| x.is_buyer && !x.is_maker) && trades.iter().any(|x| !x.is_buyer && x.is_maker));
}

#[test]
fn filters_refuse_bad_price_quantity_notional_with_binance_messages() {
    let mut t = funded();
    let lim = |t: &mut T, p: &str, q: &str| {
        t.order(B, Side::Buy, OrderType::Limit, Some(TimeInForce::Gtc), Some(p), Some(q), None).unwrap_err().message()
    };
    assert_eq!(lim(&mut t, "50000.001", "0.1"), "Filter failure: PRICE_FILTER");
    assert_eq!(lim(&mut t, "2000000", "0.1"), "Filter failure: PRICE_FILTER");
    assert_eq!(lim(&mut t, "50000", "0.000015"), "Filter failure: LOT_SIZE");
    assert_eq!(lim(&mut t, "50000", "10000"), "Filter failure: LOT_SIZE");
    assert_eq!(lim(&mut t, "100", "0.01"), "Filter failure: NOTIONAL");
    let e = t.order(B, Side::Buy, OrderType::Market, None, None, Some("101"), None).unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), (-1013, "Filter failure: MARKET_LOT_SIZE"));
    let e = t.order(B, Side::Buy, OrderType::Market, None, None, None, Some("1")).unwrap_err();
    assert_eq!(e.message(), "Filter failure: NOTIONAL");
    let e = t.order(B, Side::Buy, OrderType::Market, None, None, None, None).unwrap_err();
    assert_eq!(e.code(), -1102);
    let e = t.order(B, Side::Buy, OrderType::Limit, None, Some("1"), Some("1"), None).unwrap_err();
    assert_eq!(e.code(), -1102);
    let e = t.order(B, Side::Buy, OrderType::Market, Some(TimeInForce::Gtc), None, Some("1"), None).unwrap_err();
    assert_eq!(e.code(), -1106);
}

#[test]
fn a_client_order_id_is_echoed_generated_when_absent_and_unique_among_open_orders() {
    let mut t = funded();
    let mut o = NewOrder {
        account: A,
        symbol: sym("BTCUSDT"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        quantity: Some(amt("0.1")),
        quote_order_qty: None,
        price: Some(amt("40000")),
        new_client_order_id: Some("x-my-1".into()),
        stp_mode: None,
    };
    let Outcome::Placed(p) = t.apply(Command::PlaceOrder(o.clone())).unwrap() else { unreachable!() };
    assert_eq!(p.order.client_order_id, "x-my-1");
    assert_eq!(t.apply(Command::PlaceOrder(o.clone())).unwrap_err().message(), "Duplicate order sent.");
    o.new_client_order_id = Some("bad id!".into());
    assert_eq!(t.apply(Command::PlaceOrder(o.clone())).unwrap_err().code(), -1100);
    o.new_client_order_id = None;
    let Outcome::Placed(g) = t.apply(Command::PlaceOrder(o.clone())).unwrap() else { unreachable!() };
    assert_eq!(g.order.client_order_id.len(), 22);
    assert_eq!(g.order.order_id, p.order.order_id + 1);
    // After the first is canceled its client id may be reused.
    t.apply(Command::CancelOrder {
        account: A,
        symbol: sym("BTCUSDT"),
        order: OrderRef::ClientId("x-my-1".into()),
        new_client_order_id: None,
    })
    .unwrap();
    o.new_client_order_id = Some("x-my-1".into());
    t.apply(Command::PlaceOrder(o)).unwrap();
}

#[test]
fn max_num_orders_caps_open_orders_per_account_and_market() {
    let mut cfg = ExchangeConfig::default();
    cfg.markets[0].max_num_orders = 2;
    let mut t = T::new();
    t.ex = Exchange::new(cfg).unwrap();
    t.deposit(A, "USDT", "100000");
    t.limit(A, Side::Buy, "40000", "0.1");
    t.limit(A, Side::Buy, "40000", "0.1");
    let e = t.order(A, Side::Buy, OrderType::Limit, Some(TimeInForce::Gtc), Some("40000"), Some("0.1"), None);
    assert_eq!(e.unwrap_err().message(), "Filter failure: MAX_NUM_ORDERS");
}

#[test]
fn cancel_by_order_id_or_client_id_releases_the_lock_and_unknown_orders_answer_2011() {
    let mut t = funded();
    let o1 = t.limit(A, Side::Buy, "40000", "0.1");
    let o2 = t.limit(A, Side::Buy, "40000", "0.1");
    let cancel = |r| Command::CancelOrder { account: A, symbol: sym("BTCUSDT"), order: r, new_client_order_id: None };
    let Outcome::Canceled(c) = t.apply(cancel(OrderRef::Id(o1.order.order_id))).unwrap() else { unreachable!() };
    assert_eq!(c.order.status, OrderStatus::Canceled);
    assert_eq!(c.cancel_client_order_id.len(), 22);
    t.apply(cancel(OrderRef::ClientId(o2.order.client_order_id.clone()))).unwrap();
    assert_eq!(t.locked(A, "USDT"), amt("0"));
    let e = t.apply(cancel(OrderRef::Id(o1.order.order_id))).unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), (-2011, "Unknown order sent."));
    // Another account cannot cancel A's order.
    let o3 = t.limit(A, Side::Buy, "40000", "0.1");
    let other = Command::CancelOrder {
        account: B,
        symbol: sym("BTCUSDT"),
        order: OrderRef::Id(o3.order.order_id),
        new_client_order_id: None,
    };
    assert_eq!(t.apply(other).unwrap_err().code(), -2011);
    t.check_replay();
}

#[test]
fn cancel_open_orders_cancels_all_of_a_symbol_and_answers_2011_when_none() {
    let mut t = funded();
    t.limit(A, Side::Buy, "40000", "0.1");
    t.limit(A, Side::Sell, "60000", "0.1");
    let cmd = Command::CancelOpenOrders { account: A, symbol: sym("BTCUSDT") };
    let Outcome::CanceledAll(v) = t.apply(cmd.clone()).unwrap() else { unreachable!() };
    assert_eq!(v.len(), 2);
    assert_eq!(t.apply(cmd).unwrap_err().code(), -2011);
    assert_eq!((t.locked(A, "USDT"), t.locked(A, "BTC")), (amt("0"), amt("0")));
}

#[test]
fn querying_an_order_that_does_not_exist_answers_2013_and_unknown_symbols_1121() {
    let t = funded();
    let e = t.ex.order(A, &sym("BTCUSDT"), &OrderRef::Id(99)).unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), (-2013, "Order does not exist."));
    assert_eq!(t.ex.order(A, &sym("DOGEUSDT"), &OrderRef::Id(1)).unwrap_err().code(), -1121);
}

#[test]
fn test_order_validates_filters_but_not_balance_and_changes_nothing() {
    let mut t = T::new();
    let mut o = NewOrder {
        account: C,
        symbol: sym("BTCUSDT"),
        side: Side::Buy,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        quantity: Some(amt("0.1")),
        quote_order_qty: None,
        price: Some(amt("40000")),
        new_client_order_id: None,
        stp_mode: None,
    };
    let before = t.ex.snapshot().unwrap();
    assert_eq!(t.ex.apply(&Command::TestOrder(o.clone()), UnixMillis(5)).unwrap(), Outcome::Tested);
    assert_eq!(before, t.ex.snapshot().unwrap());
    o.price = Some(amt("40000.001"));
    assert_eq!(t.apply(Command::TestOrder(o)).unwrap_err().code(), -1013);
}

#[test]
fn order_ids_and_trade_ids_are_sequential_per_exchange() {
    let mut t = funded();
    let a = t.limit(A, Side::Sell, "50000", "0.1");
    let b = t.limit(B, Side::Buy, "50000", "0.05");
    let c = t.limit(B, Side::Buy, "50000", "0.05");
    assert_eq!((a.order.order_id, b.order.order_id, c.order.order_id), (1, 2, 3));
    assert_eq!((b.fills[0].trade_id, c.fills[0].trade_id), (1, 2));
}

#[test]
fn all_orders_and_my_trades_follow_binance_query_rules() {
    let mut t = funded();
    for _ in 0..5 {
        t.limit(A, Side::Sell, "50000", "0.1");
        t.limit(B, Side::Buy, "50000", "0.1");
    }
    let s = sym("BTCUSDT");
    let all = t.ex.all_orders(A, &s, &OrderQuery::default()).unwrap();
    assert_eq!(all.iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![1, 3, 5, 7, 9]);
    let q = OrderQuery { order_id: Some(5), limit: Some(2), ..Default::default() };
    assert_eq!(t.ex.all_orders(A, &s, &q).unwrap().iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![5, 7]);
    let q = OrderQuery { limit: Some(2), ..Default::default() };
    assert_eq!(t.ex.all_orders(A, &s, &q).unwrap().iter().map(|o| o.order_id).collect::<Vec<_>>(), vec![7, 9]);
    let too_long = OrderQuery {
        start_time: Some(UnixMillis(0)),
        end_time: Some(UnixMillis(24 * 3600 * 1000 + 1)),
        ..Default::default()
    };
    let e = t.ex.all_orders(A, &s, &too_long).unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), (-1127, "More than 24 hours between startTime and endTime."));
    let q = OrderQuery { limit: Some(1001), ..Default::default() };
    assert_eq!(t.ex.all_orders(A, &s, &q).unwrap_err().code(), -1100);
    let q = OrderQuery { start_time: Some(UnixMillis(0)), ..Default::default() };
    assert!(t.ex.all_orders(A, &s, &q).unwrap().is_empty());

    let trades = t.ex.my_trades(B, &s, &TradeQuery::default()).unwrap();
    assert_eq!(trades.iter().map(|x| x.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    assert!(trades.iter().all(|x| x.is_buyer && !x.is_maker && x.commission_asset.as_str() == "BTC"));
    let q = TradeQuery { from_id: Some(3), limit: Some(2), ..Default::default() };
    assert_eq!(t.ex.my_trades(B, &s, &q).unwrap().iter().map(|x| x.id).collect::<Vec<_>>(), vec![3, 4]);
    let q = TradeQuery { order_id: Some(4), ..Default::default() };
    assert_eq!(t.ex.my_trades(B, &s, &q).unwrap().iter().map(|x| x.id).collect::<Vec<_>>(), vec![2]);
    let q = TradeQuery { from_id: Some(1), start_time: Some(UnixMillis(1)), ..Default::default() };
    assert_eq!(t.ex.my_trades(B, &s, &q).unwrap_err().code(), -1128);
}

#[test]
fn market_data_reflects_the_exchanges_own_trades() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.1");
    t.limit(B, Side::Buy, "50000", "0.1");
    t.now += 60_000;
    t.limit(A, Side::Sell, "51000", "0.1");
    t.limit(B, Side::Buy, "51000", "0.1");
    t.limit(A, Side::Sell, "52000", "0.2");
    t.limit(B, Side::Buy, "48000", "0.3");
    let s = sym("BTCUSDT");
    let now = UnixMillis(t.now);
    assert_eq!(t.ex.last_price(&s).unwrap(), amt("51000"));
    let bt = t.ex.book_ticker(&s).unwrap();
    assert_eq!(
        (bt.bid_price, bt.bid_qty, bt.ask_price, bt.ask_qty),
        (amt("48000"), amt("0.3"), amt("52000"), amt("0.2"))
    );
    let tk = t.ex.ticker_24h(&s, now).unwrap();
    assert_eq!(
        (tk.open_price, tk.last_price, tk.high_price, tk.low_price),
        (amt("50000"), amt("51000"), amt("51000"), amt("50000"))
    );
    assert_eq!((tk.price_change.as_str(), tk.price_change_percent.as_str()), ("1000.00000000", "2.000"));
    assert_eq!((tk.volume, tk.quote_volume, tk.count, tk.first_id, tk.last_id), (amt("0.2"), amt("10100"), 2, 1, 2));
    let k = t.ex.klines(&s, "1m", None, None, None, now).unwrap();
    assert!(k.len() >= 2);
    let traded: Vec<_> = k.iter().filter(|k| k.trades > 0).collect();
    assert_eq!(traded.len(), 2);
    assert_eq!((traded[0].open, traded[0].volume, traded[0].taker_buy_base), (amt("50000"), amt("0.1"), amt("0.1")));
    assert_eq!(t.ex.klines(&s, "7m", None, None, None, now).unwrap_err().code(), -1120);
    let avg = t.ex.avg_price(&s, now).unwrap();
    assert_eq!(avg.price, amt("50500"));
    let rt = t.ex.recent_trades(&s, Some(1)).unwrap();
    assert_eq!((rt.len(), rt[0].id), (1, 2));
    let d = t.ex.depth(&s, Some(5)).unwrap();
    assert!(d.last_update_id > 0);
    assert_eq!(t.ex.fee_rates(&s).unwrap(), (amt("0.001"), amt("0.001")));
    t.check_replay();
}

#[test]
fn snapshots_restore_an_equal_exchange() {
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.1");
    t.limit(B, Side::Buy, "50000", "0.05");
    let restored = Exchange::from_snapshot(&t.ex.snapshot().unwrap()).unwrap();
    assert_eq!(restored, t.ex);
    assert!(Exchange::from_snapshot(b"{}").is_err());
}

#[test]
fn klines_at_the_end_of_time_neither_overflow_nor_panic() {
    // Found by reading the engine fuzz target's query step: a monthly (and a fixed) interval whose
    // next start lies past u64::MAX milliseconds must stop there, not overflow.
    let mut t = funded();
    t.limit(A, Side::Sell, "50000", "0.1");
    t.limit(B, Side::Buy, "50000", "0.1");
    let s = sym("BTCUSDT");
    let now = UnixMillis(t.now);
    let end = Some(UnixMillis(u64::MAX));
    for interval in ["1M", "1w", "3d", "1s"] {
        for start in [None, Some(UnixMillis(u64::MAX)), Some(UnixMillis(u64::MAX - 40 * 86_400_000))] {
            let k = t.ex.klines(&s, interval, start, end, Some(3), now).unwrap();
            assert!(k.len() <= 3, "{interval} {start:?}");
            for w in k.windows(2) {
                assert!(w[0].open_time < w[1].open_time, "{interval} {start:?}: {w:?}");
            }
            for line in &k {
                assert!(line.close_time >= line.open_time, "{interval} {start:?}: {line:?}");
            }
        }
    }
}
