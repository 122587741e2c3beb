//! The simulated history: candles from the first second, deterministic for a seed, and every
//! market-data query agreeing with it.
#![allow(clippy::unwrap_used, missing_docs)]

use keygate_exchange::{
    Command, Deposit, Exchange, ExchangeConfig, HistorySpec, NewOrder, OrderType, Outcome, Side, StpMode, TimeInForce,
};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};

/// 2026-01-15T10:30:20Z: not on a minute boundary, on purpose.
const NOW: u64 = 1_768_473_020_000;
const DAY: u64 = 86_400_000;

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

fn seeded(seed: u64, days: u32) -> Exchange {
    let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
    let out = ex.apply(&Command::SeedHistory(HistorySpec { seed, days }), UnixMillis(NOW)).unwrap();
    assert!(matches!(out, Outcome::HistorySeeded(_)), "{out:?}");
    ex
}

#[test]
fn a_seeded_sandbox_answers_a_thousand_one_minute_candles_on_every_market_ending_at_its_price() {
    let ex = seeded(7, 30);
    for m in ex.markets().to_vec() {
        let k = ex.klines(&m.symbol, "1m", None, None, Some(1000), UnixMillis(NOW)).unwrap();
        assert_eq!(k.len(), 1000, "{}", m.symbol);
        // The current, live minute is last (no trade yet: the last close repeated).
        assert_eq!(k[999].open_time.0, NOW - NOW % 60_000);
        assert_eq!(k[999].trades, 0);
        // The history ends at the market's price: the live market starts from there.
        assert_eq!(k[998].close, m.reference_price, "{}", m.symbol);
        assert_eq!(ex.last_price(&m.symbol).unwrap(), m.reference_price);
        for w in k.windows(2) {
            assert_eq!(w[1].open_time.0 - w[0].open_time.0, 60_000, "no gap");
        }
        for c in &k[..999] {
            assert!(c.trades > 0 && c.volume > Amount::ZERO, "{}: {c:?}", m.symbol);
            assert!(c.low <= c.open && c.open <= c.high && c.low <= c.close && c.close <= c.high, "{c:?}");
            assert!(c.taker_buy_base <= c.volume);
        }
        // 30 days of it, and nothing before.
        let first = ex.klines(&m.symbol, "1d", Some(UnixMillis(0)), None, Some(1000), UnixMillis(NOW)).unwrap();
        assert_eq!(first.len(), 31, "{}: 30 whole or cut days and today", m.symbol);
    }
}

#[test]
fn the_same_seed_gives_the_same_history_and_another_seed_another() {
    let a = seeded(7, 3);
    let b = seeded(7, 3);
    let c = seeded(8, 3);
    let s = sym("ETHUSDT");
    let k = |ex: &Exchange| ex.klines(&s, "5m", None, None, Some(1000), UnixMillis(NOW)).unwrap();
    assert_eq!(k(&a), k(&b));
    assert_ne!(k(&a), k(&c));
    assert_eq!(a, b);
}

#[test]
fn every_interval_and_every_trade_query_agree_with_the_one_minute_candles() {
    let ex = seeded(11, 3);
    let s = sym("BTCUSDT");
    let now = UnixMillis(NOW);
    let hour_start = NOW - NOW % 3_600_000 - 5 * 3_600_000;
    let minutes = ex.klines(&s, "1m", Some(UnixMillis(hour_start)), None, Some(60), now).unwrap();
    let hour = ex.klines(&s, "1h", Some(UnixMillis(hour_start)), None, Some(1), now).unwrap();
    let sum = |f: fn(&keygate_exchange::Kline) -> Amount| {
        Amount::from_units(minutes.iter().map(|k| f(k).units()).sum::<u64>())
    };
    assert_eq!(hour[0].open, minutes[0].open);
    assert_eq!(hour[0].close, minutes[59].close);
    assert_eq!(hour[0].high, minutes.iter().map(|k| k.high).max().unwrap());
    assert_eq!(hour[0].low, minutes.iter().map(|k| k.low).min().unwrap());
    assert_eq!(hour[0].volume, sum(|k| k.volume));
    assert_eq!(hour[0].quote_volume, sum(|k| k.quote_volume));
    assert_eq!(hour[0].taker_buy_base, sum(|k| k.taker_buy_base));
    assert_eq!(hour[0].trades, minutes.iter().map(|k| k.trades).sum::<u64>());

    // The trades of one minute, by time and by id, add up to its candle.
    let c = &minutes[17];
    let by_time = ex.trades_since(&s, None, Some(c.open_time), Some(c.close_time), 1000).unwrap();
    assert_eq!(by_time.len() as u64, c.trades);
    assert_eq!(by_time.first().unwrap().price, c.open);
    assert_eq!(by_time.last().unwrap().price, c.close);
    assert_eq!(Amount::from_units(by_time.iter().map(|t| t.qty.units()).sum()), c.volume);
    assert_eq!(Amount::from_units(by_time.iter().map(|t| t.quote_qty.units()).sum()), c.quote_volume);
    assert!(by_time.windows(2).all(|w| w[1].id == w[0].id + 1 && w[1].time >= w[0].time));
    let by_id = ex.trades_since(&s, Some(by_time[0].id), None, None, by_time.len()).unwrap();
    assert_eq!(by_id, by_time);
    let secs = ex.klines(&s, "1s", Some(c.open_time), Some(c.close_time), Some(1000), now).unwrap();
    assert_eq!(secs.len(), 60);
    assert_eq!(secs.iter().map(|k| k.trades).sum::<u64>(), c.trades);

    // The 24-hour ticker is the day's candles; avgPrice the last five minutes' trades.
    let day = ex.ticker_24h(&s, now).unwrap();
    let trades_in_day = ex.klines(&s, "1m", Some(UnixMillis(NOW - DAY)), None, Some(1000), now).unwrap();
    assert!(day.count > trades_in_day.iter().map(|k| k.trades).sum::<u64>(), "a day is more than 1000 minutes");
    assert_eq!(day.last_price, ex.last_price(&s).unwrap());
    assert!(day.volume > Amount::ZERO && day.high_price >= day.low_price);
    let window = ex.ticker_window(&s, 3_600_000, now).unwrap();
    let last_hour = ex.trades_since(&s, None, Some(UnixMillis(NOW - 3_600_000)), Some(now), 1000).unwrap();
    assert_eq!(window.first_id, last_hour[0].id as i64);
    let recent = ex.trades_since(&s, None, Some(UnixMillis(NOW - 300_000)), Some(now), 1000).unwrap();
    let (q, v) = recent
        .iter()
        .fold((0u128, 0u128), |(q, v), t| (q + u128::from(t.quote_qty.units()), v + u128::from(t.qty.units())));
    let avg = ex.avg_price(&s, now).unwrap();
    assert_eq!(u128::from(avg.price.units()), q * 100_000_000 / v);
    assert_eq!(avg.close_time, ex.recent_trades(&s, Some(1)).unwrap()[0].time);
}

#[test]
fn live_trades_continue_the_history_with_the_next_ids_and_candles() {
    let mut ex = seeded(3, 2);
    let s = sym("BTCUSDT");
    let history_last = ex.recent_trades(&s, Some(1)).unwrap()[0].clone();
    let (a, b) = (AccountId(1), AccountId(2));
    for (acct, coin, amount) in [(a, "BTC", "1"), (b, "USDT", "100000")] {
        let d = Deposit {
            account: acct,
            coin: AssetCode::parse(coin).unwrap(),
            network: None,
            amount: Amount::parse(amount).unwrap(),
        };
        ex.apply(&Command::Deposit(d), UnixMillis(NOW + 1)).unwrap();
    }
    let order = |account, side, stp| NewOrder {
        account,
        symbol: s.clone(),
        side,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        quantity: Some(Amount::parse("0.01").unwrap()),
        quote_order_qty: None,
        price: Some(Amount::parse("60010").unwrap()),
        new_client_order_id: None,
        stp_mode: stp,
    };
    ex.apply(&Command::PlaceOrder(order(a, Side::Sell, None)), UnixMillis(NOW + 90_000)).unwrap();
    ex.apply(&Command::PlaceOrder(order(b, Side::Buy, Some(StpMode::None))), UnixMillis(NOW + 90_001)).unwrap();
    ex.ledger().check_invariant().unwrap();
    let latest = ex.recent_trades(&s, Some(2)).unwrap();
    assert_eq!(latest[0], history_last);
    assert_eq!(latest[1].id, history_last.id + 1 + other_markets_trades(&ex, &s));
    assert_eq!(ex.last_price(&s).unwrap(), Amount::parse("60010").unwrap());
    let k = ex.klines(&s, "1m", None, None, Some(4), UnixMillis(NOW + 90_002)).unwrap();
    // The history's last minute, the minute it ended in, the next one with the trade.
    assert_eq!(k[3].trades, 1);
    assert_eq!(k[3].close, Amount::parse("60010").unwrap());
    assert_eq!(k[2].close, k[1].close);
    let my = ex.my_trades(b, &s, &keygate_exchange::TradeQuery::default()).unwrap();
    assert_eq!(my[0].id, latest[1].id);
    let from = ex.trades_since(&s, Some(history_last.id), None, None, 10).unwrap();
    assert_eq!(from.iter().map(|t| t.id).collect::<Vec<_>>(), vec![history_last.id, latest[1].id]);
}

/// Trade ids are shared by every market: the history's trades of the markets after `s` come
/// between `s`'s last history trade and the first live one.
fn other_markets_trades(ex: &Exchange, s: &Symbol) -> u64 {
    let later: Vec<_> = ex.markets().iter().skip_while(|m| &m.symbol != s).skip(1).map(|m| m.symbol.clone()).collect();
    later
        .iter()
        .map(|m| {
            let first = ex.trades_since(m, Some(0), None, None, 1).unwrap()[0].id;
            let last = ex.recent_trades(m, Some(1)).unwrap()[0].id;
            last - first + 1
        })
        .sum()
}

#[test]
fn a_snapshot_holds_the_history_in_a_few_hundred_bytes_and_restores_it_whole() {
    let ex = seeded(5, 30);
    let bare = Exchange::new(ExchangeConfig::default()).unwrap().snapshot().unwrap();
    let snap = ex.snapshot().unwrap();
    assert!(snap.len() - bare.len() < 2_000, "{} bytes for the history", snap.len() - bare.len());
    let back = Exchange::from_snapshot(&snap).unwrap();
    assert_eq!(back, ex);
    let s = sym("BNBUSDT");
    let k = |e: &Exchange| e.klines(&s, "4h", None, None, Some(1000), UnixMillis(NOW)).unwrap();
    assert_eq!(k(&back), k(&ex));
}

#[test]
fn history_is_seeded_once_and_only_before_the_first_trade() {
    let mut ex = seeded(1, 1);
    assert!(ex.apply(&Command::SeedHistory(HistorySpec { seed: 1, days: 1 }), UnixMillis(NOW)).is_err());
    let mut fresh = Exchange::new(ExchangeConfig::default()).unwrap();
    assert!(fresh.apply(&Command::SeedHistory(HistorySpec { seed: 1, days: 366 }), UnixMillis(NOW)).is_err());
    ex.ledger().check_invariant().unwrap();
}

#[test]
fn each_market_moves_with_its_own_volatility() {
    let ex = seeded(9, 10);
    let vol = |s: &str| {
        let k = ex.klines(&sym(s), "1h", None, Some(UnixMillis(NOW - 3_600_000)), Some(230), UnixMillis(NOW)).unwrap();
        let r: Vec<f64> = k.windows(2).map(|w| (w[1].close.units() as f64 / w[0].close.units() as f64).ln()).collect();
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / r.len() as f64).sqrt() * 24f64.sqrt() * 10_000.0
    };
    let (btc, eth) = (vol("BTCUSDT"), vol("ETHUSDT"));
    // Configured: 250 and 350 bps a day.
    assert!((125.0..500.0).contains(&btc), "BTCUSDT daily volatility {btc:.0} bps");
    assert!((175.0..700.0).contains(&eth), "ETHUSDT daily volatility {eth:.0} bps");
}
