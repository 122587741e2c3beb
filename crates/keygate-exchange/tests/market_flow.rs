//! The simulated market over its history: the market maker follows the history's walk, the taker
//! flow trades against the book, resting orders at the touch fill, and all of it is deterministic.
#![allow(clippy::unwrap_used, missing_docs)]

use keygate_exchange::market_maker::{DEFAULT_FLOW_RATE_MILLI, FlowConfig};
use keygate_exchange::{
    Command, Deposit, Exchange, ExchangeConfig, HistorySpec, MarketMaker, MarketMakerConfig, NewOrder, OrderRef,
    OrderStatus, OrderType, Side, TimeInForce, TradeQuery,
};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};

const NOW: u64 = 1_768_473_020_000;
const MM: AccountId = AccountId(900);
const FLOW: AccountId = AccountId(901);
const USER: AccountId = AccountId(1);
/// The background task's period.
const TICK_MS: u64 = 500;

struct Sim {
    ex: Exchange,
    mm: MarketMaker,
    now: u64,
}

impl Sim {
    fn new(seed: u64, rate_milli: u64) -> Self {
        let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
        ex.apply(&Command::SeedHistory(HistorySpec { seed, days: 2 }), UnixMillis(NOW)).unwrap();
        let config = MarketMakerConfig {
            flow: (rate_milli > 0).then_some(FlowConfig { account: FLOW, rate_milli }),
            ..MarketMakerConfig::new(MM, seed)
        };
        let mm = MarketMaker::new(config, &ex);
        let mut sim = Self { ex, mm, now: NOW };
        sim.step();
        sim
    }

    /// One tick of the background task: everything the market asks for, at `now`.
    fn step(&mut self) -> usize {
        let cmds = self.mm.tick_at(&self.ex, UnixMillis(self.now));
        for c in &cmds {
            // A refusal (a quote that would cross, an order the book cannot fill) is the
            // market's own business; the state must stay balanced either way.
            let _ = self.ex.apply(c, UnixMillis(self.now));
            self.ex.ledger().check_invariant().unwrap();
        }
        cmds.len()
    }

    fn run_for(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.now < until {
            self.now += TICK_MS;
            self.step();
        }
    }
}

fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}

#[test]
fn the_flow_trades_on_every_market_and_prices_follow_the_walk_without_a_gap() {
    let mut sim = Sim::new(21, DEFAULT_FLOW_RATE_MILLI);
    let history_close: Vec<Amount> = sim.ex.markets().iter().map(|m| sim.ex.last_price(&m.symbol).unwrap()).collect();
    sim.run_for(10 * 60_000);
    for (m, before) in sim.ex.markets().to_vec().iter().zip(history_close) {
        let flow_trades = sim.ex.my_trades(FLOW, &m.symbol, &TradeQuery { limit: Some(1000), ..Default::default() });
        let n = flow_trades.unwrap().len();
        // About one order a second for ten minutes.
        assert!((300..=1000).contains(&n), "{}: {n} flow trades", m.symbol);
        let k = sim.ex.klines(&m.symbol, "1m", None, None, Some(12), UnixMillis(sim.now)).unwrap();
        // The first live minute opens within a few basis points of the history's close.
        let open = k[1].open.units() as f64;
        let drift_bps = (open / before.units() as f64 - 1.0).abs() * 10_000.0;
        assert!(drift_bps < 30.0, "{}: first live trade {drift_bps:.1} bps from the history's close", m.symbol);
        assert!(k[2..].iter().all(|c| c.trades > 0), "{}: every live minute trades", m.symbol);
    }
}

#[test]
fn the_same_seed_and_clock_give_the_same_market() {
    let run = |seed| {
        let mut sim = Sim::new(seed, DEFAULT_FLOW_RATE_MILLI);
        sim.run_for(60_000);
        sim.ex
    };
    let (a, b, c) = (run(4), run(4), run(5));
    assert_eq!(a, b);
    assert_ne!(a, c);
    let s = sym("BTCUSDT");
    assert_eq!(a.recent_trades(&s, Some(1000)).unwrap(), b.recent_trades(&s, Some(1000)).unwrap());
}

#[test]
fn a_resting_buy_one_tick_below_the_best_bid_fills_as_a_maker() {
    for seed in [1, 2, 3] {
        let mut sim = Sim::new(seed, DEFAULT_FLOW_RATE_MILLI);
        let s = sym("BTCUSDT");
        let usdt = AssetCode::parse("USDT").unwrap();
        let d = Deposit { account: USER, coin: usdt.clone(), network: None, amount: Amount::parse("10000").unwrap() };
        sim.ex.apply(&Command::Deposit(d), UnixMillis(sim.now)).unwrap();
        let bid = sim.ex.book_ticker(&s).unwrap().bid_price.units();
        let price = bid - 1_000_000; // one tick: 0.01 USDT
        let placed = sim
            .ex
            .apply(
                &Command::PlaceOrder(NewOrder {
                    account: USER,
                    symbol: s.clone(),
                    side: Side::Buy,
                    order_type: OrderType::Limit,
                    time_in_force: Some(TimeInForce::Gtc),
                    quantity: Some(Amount::parse("0.001").unwrap()),
                    quote_order_qty: None,
                    price: Some(Amount::from_units(price)),
                    new_client_order_id: None,
                    stp_mode: None,
                }),
                UnixMillis(sim.now),
            )
            .unwrap();
        let keygate_exchange::Outcome::Placed(p) = placed else { panic!("{placed:?}") };
        let id = p.order.order_id;
        let started = sim.now;
        // Bounded: under the default flow it fills within ten minutes.
        while sim.ex.order(USER, &s, &OrderRef::Id(id)).unwrap().status != OrderStatus::Filled {
            assert!(sim.now - started < 10 * 60_000, "seed {seed}: not filled after ten minutes");
            sim.now += TICK_MS;
            sim.step();
        }
        let mine = sim.ex.my_trades(USER, &s, &TradeQuery::default()).unwrap();
        assert!(!mine.is_empty());
        let maker_fee = sim.ex.fee_rates(&s).unwrap().0;
        for t in &mine {
            assert!(t.is_maker && t.is_buyer, "{t:?}");
            assert_eq!(t.price.units(), price, "filled at its own price");
            assert_eq!(t.commission.units(), t.qty.units() * maker_fee.units() / 100_000_000);
        }
        sim.ex.ledger().check_invariant().unwrap();
    }
}

#[test]
fn with_the_flow_off_nothing_trades_and_the_quotes_still_follow_the_walk() {
    let mut sim = Sim::new(6, 0);
    let s = sym("ETHUSDT");
    let before = sim.ex.book_ticker(&s).unwrap();
    sim.run_for(30 * 60_000);
    assert!(sim.ex.my_trades(MM, &s, &TradeQuery::default()).unwrap().is_empty());
    assert_ne!(sim.ex.book_ticker(&s).unwrap(), before, "the walk moved the quotes in 30 minutes");
}
