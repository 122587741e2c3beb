//! Shared helpers for the engine tests.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::too_many_arguments)]

use keygate_exchange::*;
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};

pub const A: AccountId = AccountId(1);
pub const B: AccountId = AccountId(2);
pub const C: AccountId = AccountId(3);

pub fn amt(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}
pub fn sym(s: &str) -> Symbol {
    Symbol::parse(s).unwrap()
}
pub fn coin(s: &str) -> AssetCode {
    AssetCode::parse(s).unwrap()
}

pub struct T {
    pub ex: Exchange,
    pub now: u64,
    pub log: Vec<(Command, UnixMillis)>,
}

impl T {
    pub fn new() -> Self {
        Self { ex: Exchange::new(ExchangeConfig::default()).unwrap(), now: 1_700_000_000_000, log: vec![] }
    }
    pub fn apply(&mut self, cmd: Command) -> Result<Outcome, ExchangeError> {
        self.now += 1;
        let before = self.ex.snapshot().unwrap();
        let r = self.ex.apply(&cmd, UnixMillis(self.now));
        match &r {
            Ok(_) => self.log.push((cmd, UnixMillis(self.now))),
            Err(_) => assert_eq!(before, self.ex.snapshot().unwrap(), "failed command changed state"),
        }
        self.ex.ledger().check_invariant().unwrap();
        r
    }
    pub fn deposit(&mut self, who: AccountId, c: &str, a: &str) {
        self.apply(Command::Deposit(Deposit { account: who, coin: coin(c), network: None, amount: amt(a) })).unwrap();
    }
    pub fn order(
        &mut self,
        who: AccountId,
        side: Side,
        ty: OrderType,
        tif: Option<TimeInForce>,
        price: Option<&str>,
        qty: Option<&str>,
        quote: Option<&str>,
    ) -> Result<PlacedOrder, ExchangeError> {
        let o = NewOrder {
            account: who,
            symbol: sym("BTCUSDT"),
            side,
            order_type: ty,
            time_in_force: tif,
            quantity: qty.map(amt),
            quote_order_qty: quote.map(amt),
            price: price.map(amt),
            new_client_order_id: None,
            stp_mode: None,
        };
        match self.apply(Command::PlaceOrder(o))? {
            Outcome::Placed(p) => Ok(p),
            other => panic!("unexpected {other:?}"),
        }
    }
    pub fn limit(&mut self, who: AccountId, side: Side, price: &str, qty: &str) -> PlacedOrder {
        self.order(who, side, OrderType::Limit, Some(TimeInForce::Gtc), Some(price), Some(qty), None).unwrap()
    }
    pub fn free(&self, who: AccountId, c: &str) -> Amount {
        self.ex.balances(who).into_iter().find(|b| b.asset.as_str() == c).unwrap().free
    }
    pub fn locked(&self, who: AccountId, c: &str) -> Amount {
        self.ex.balances(who).into_iter().find(|b| b.asset.as_str() == c).unwrap().locked
    }
    /// Replays the log into a fresh exchange and checks it equals this one.
    pub fn check_replay(&self) {
        let mut fresh = Exchange::new(ExchangeConfig::default()).unwrap();
        for (c, now) in &self.log {
            fresh.apply(c, *now).unwrap();
        }
        assert_eq!(fresh.snapshot().unwrap(), self.ex.snapshot().unwrap());
        assert_eq!(fresh, self.ex);
    }
}
