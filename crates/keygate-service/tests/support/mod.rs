//! What several test files of the service build the same way: exchange commands, and a node on
//! a shared PostgreSQL test database.

// Each test file uses some of these, none all of them.
#![allow(dead_code, clippy::unwrap_used)]

use keygate_exchange::{Command, Deposit, NewOrder, OrderType, Side, TimeInForce};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol};
use keygate_service::{Assembly, ManualClock, PasswordParams, Service, ServiceConfig, StoreSource};
use keygate_store::conformance::{Harness as _, PgHarness};
use std::sync::Arc;

/// A deposit of `amount` `coin` to `account`.
pub fn deposit(account: i64, coin: &str, amount: &str) -> Command {
    Command::Deposit(Deposit {
        account: AccountId(account),
        coin: AssetCode::parse(coin).unwrap(),
        network: None,
        amount: Amount::parse(amount).unwrap(),
    })
}

/// A GTC limit order on BTCUSDT.
pub fn limit(account: i64, side: Side, qty: &str, price: &str) -> Command {
    Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        symbol: Symbol::parse("BTCUSDT").unwrap(),
        side,
        order_type: OrderType::Limit,
        time_in_force: Some(TimeInForce::Gtc),
        quantity: Some(Amount::parse(qty).unwrap()),
        quote_order_qty: None,
        price: Some(Amount::parse(price).unwrap()),
        new_client_order_id: None,
        stp_mode: None,
    })
}

/// A node: a service assembled on a store of its own (its own pool) over the test database,
/// as a `keygate serve` process would be, without the exchange.
pub async fn pg_node(h: &PgHarness, clock: &Arc<ManualClock>) -> Service {
    Assembly::new(StoreSource::Opened(h.open().await), clock.clone())
        .config(ServiceConfig {
            password: PasswordParams::insecure_for_tests(),
            require_2fa_for_trading_keys: false,
            ..ServiceConfig::default()
        })
        .start()
        .await
        .unwrap()
}
