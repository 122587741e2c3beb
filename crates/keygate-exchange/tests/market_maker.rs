//! The simulated market maker: liquidity in a fresh sandbox, determinism, requoting on moves.

use keygate_exchange::{
    Command, Deposit, Exchange, ExchangeConfig, MarketMaker, MarketMakerConfig, NewOrder, OrderType, Outcome, Side,
};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};

const MM: AccountId = AccountId(999);

fn apply_all(ex: &mut Exchange, cmds: &[Command], now: u64) {
    for c in cmds {
        ex.apply(c, UnixMillis(now)).unwrap_or_else(|e| panic!("{c:?}: {e}"));
    }
}

#[test]
fn a_fresh_sandbox_gets_quotes_on_every_market_and_a_market_order_fills() {
    let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
    let mut mm = MarketMaker::new(MarketMakerConfig::new(MM, 42), &ex);
    let cmds = mm.tick(&ex);
    apply_all(&mut ex, &cmds, 1_000);
    for m in ex.markets().to_vec() {
        let depth = ex.depth(&m.symbol, Some(10)).unwrap();
        assert_eq!(depth.bids.len(), 5, "{}", m.symbol);
        assert_eq!(depth.asks.len(), 5, "{}", m.symbol);
        assert!(depth.bids[0].0 < depth.asks[0].0, "{}: the book is not crossed", m.symbol);
    }
    let buyer = AccountId(1);
    ex.apply(
        &Command::Deposit(Deposit {
            account: buyer,
            coin: AssetCode::parse("USDT").unwrap(),
            network: None,
            amount: Amount::parse("100000").unwrap(),
        }),
        UnixMillis(1_001),
    )
    .unwrap();
    let out = ex
        .apply(
            &Command::PlaceOrder(NewOrder {
                account: buyer,
                symbol: Symbol::parse("BTCUSDT").unwrap(),
                side: Side::Buy,
                order_type: OrderType::Market,
                time_in_force: None,
                quantity: None,
                quote_order_qty: Some(Amount::parse("100").unwrap()),
                price: None,
                new_client_order_id: None,
                stp_mode: None,
            }),
            UnixMillis(1_002),
        )
        .unwrap();
    let Outcome::Placed(p) = out else { panic!("{out:?}") };
    assert!(!p.fills.is_empty(), "the market order found liquidity");
    ex.ledger().check_invariant().unwrap();
}

#[test]
fn the_same_seed_gives_the_same_quotes_and_another_seed_does_not() {
    let ex = Exchange::new(ExchangeConfig::default()).unwrap();
    let run = |seed| {
        let mut ex = ex.clone();
        let mut mm = MarketMaker::new(MarketMakerConfig::new(MM, seed), &ex);
        let mut all = Vec::new();
        for t in 0..50 {
            let cmds = mm.tick(&ex);
            apply_all(&mut ex, &cmds, 1_000 + t);
            all.extend(cmds);
        }
        all
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn it_requotes_only_when_the_reference_moves_past_the_threshold() {
    let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
    let mut cfg = MarketMakerConfig::new(MM, 3);
    cfg.max_move_bps = 0;
    let mut mm = MarketMaker::new(cfg, &ex);
    let first = mm.tick(&ex);
    apply_all(&mut ex, &first, 1_000);
    assert!(mm.tick(&ex).is_empty(), "a still reference and intact quotes need nothing");
}
