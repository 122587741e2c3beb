//! Target `config`: the exchange config TOML (`ExchangeConfig::from_toml`).
//!
//! Properties: never panics; an accepted config validates, prints as TOML that parses back to the
//! same config, and starts an exchange; on that exchange, a short fixed script per market
//! (deposits, a resting order at the lowest allowed price and quantity, a crossing order, a market
//! order by quote, cancels, a withdrawal on each network, advancing withdrawals) never panics,
//! never answers `Internal`, and keeps the ledger balanced, whatever the filters, fees and
//! decimals the config chose.

use keygate_exchange::{
    Command, Deposit, Exchange, ExchangeConfig, ExchangeError, MarketSpec, NewOrder, OrderType, Side, StpMode,
    TimeInForce, Withdraw, WithdrawPolicy,
};
use keygate_proto::{AccountId, Amount, UnixMillis};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(cfg) = ExchangeConfig::from_toml(&text) else { return };
    assert!(cfg.validate().is_ok(), "from_toml returned a config validate refuses");
    let printed = match cfg.to_toml() {
        Ok(t) => t,
        Err(e) => panic!("a valid config does not print: {e}"),
    };
    assert_eq!(ExchangeConfig::from_toml(&printed).as_ref(), Ok(&cfg), "printed config differs:\n{printed}");
    let mut ex = match Exchange::new(cfg.clone()) {
        Ok(ex) => ex,
        Err(e) => panic!("a valid config does not start an exchange: {e}"),
    };
    let now = std::cell::Cell::new(1_700_000_000_000u64);
    let mut apply = |ex: &mut Exchange, cmd: Command| {
        now.set(now.get() + 1000);
        let before = ex.clone();
        if let Err(e) = ex.apply(&cmd, UnixMillis(now.get())) {
            assert!(!matches!(e, ExchangeError::Internal(_)), "internal error {e:?} for {cmd:?}");
            assert!(*ex == before, "refused command changed the exchange");
        }
        if let Err(v) = ex.ledger().check_invariant() {
            panic!("{v} after {cmd:?}");
        }
    };
    let (a, b) = (AccountId(1), AccountId(2));
    for asset in cfg.assets.iter().take(8) {
        for acct in [a, b] {
            let amount = Amount::from_units(u64::MAX / 4);
            apply(
                &mut ex,
                Command::Deposit(Deposit { account: acct, coin: asset.coin.clone(), network: None, amount }),
            );
        }
    }
    for m in cfg.markets.iter().take(8) {
        script(&mut ex, m, &mut apply);
    }
    for asset in cfg.assets.iter().take(8) {
        for n in asset.networks.iter().take(4) {
            for amount in [n.withdraw_min, n.withdraw_max, Amount::from_units(n.withdraw_fee.units().saturating_add(1))]
            {
                apply(
                    &mut ex,
                    Command::Withdraw(Withdraw {
                        account: a,
                        coin: asset.coin.clone(),
                        network: Some(n.network.clone()),
                        address: "addr".to_owned(),
                        amount,
                        withdraw_order_id: None,
                        policy: WithdrawPolicy {
                            allowed_addresses: vec!["addr".to_owned()],
                            limit_24h: None,
                            key_id: "k".to_owned(),
                        },
                    }),
                );
            }
        }
    }
    now.set(now.get() + cfg.withdraw_delay_ms.min(1 << 40));
    apply(&mut ex, Command::AdvanceWithdrawals);
}

fn round_up(v: u64, step: u64) -> u64 {
    v.div_ceil(step.max(1)).saturating_mul(step.max(1))
}

fn script(ex: &mut Exchange, m: &MarketSpec, apply: &mut impl FnMut(&mut Exchange, Command)) {
    let price = Amount::from_units(round_up(m.min_price.units(), m.tick_size.units()));
    let high = Amount::from_units(m.max_price.units() / m.tick_size.units().max(1) * m.tick_size.units());
    let qty = Amount::from_units(round_up(m.min_qty.units(), m.step_size.units()));
    let big = Amount::from_units(m.max_qty.units() / m.step_size.units().max(1) * m.step_size.units());
    let order = |account, side, order_type, tif, price, quantity, quote| {
        Command::PlaceOrder(NewOrder {
            account: AccountId(account),
            symbol: m.symbol.clone(),
            side,
            order_type,
            time_in_force: tif,
            quantity,
            quote_order_qty: quote,
            price,
            new_client_order_id: None,
            stp_mode: Some(StpMode::None),
        })
    };
    let gtc = Some(TimeInForce::Gtc);
    for (p, q) in [(price, qty), (high, big), (m.reference_price, qty), (high, qty), (price, big)] {
        apply(ex, order(1, Side::Sell, OrderType::Limit, gtc, Some(p), Some(q), None));
        apply(ex, order(2, Side::Buy, OrderType::Limit, Some(TimeInForce::Ioc), Some(p), Some(q), None));
        apply(ex, order(2, Side::Buy, OrderType::LimitMaker, None, Some(p), Some(q), None));
        apply(ex, order(1, Side::Sell, OrderType::Market, None, None, Some(q), None));
        apply(ex, order(2, Side::Buy, OrderType::Market, None, None, None, Some(m.min_notional)));
        apply(ex, order(1, Side::Sell, OrderType::Market, None, None, None, Some(m.max_notional)));
    }
    for account in [AccountId(1), AccountId(2)] {
        apply(ex, Command::CancelOpenOrders { account, symbol: m.symbol.clone() });
    }
}
