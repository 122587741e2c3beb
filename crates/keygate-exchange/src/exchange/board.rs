//! What a test order is checked against, copied out of the exchange so that `order/test` can be
//! answered on any thread.
//!
//! A test order changes nothing, but its checks read the exchange: the market's rules, the
//! account's open orders (a client order id in use, MAX_NUM_ORDERS) and the best prices (a
//! LIMIT_MAKER that would take). The engine publishes an [`OrderBoard`] after every change and
//! keeps each account's [`OpenOrderIds`] beside its balances; [`OrderBoard::test_order`] runs the
//! very checks [`Exchange::apply`] runs (`place::check`, over [`CheckSource`]), so the two cannot
//! drift apart. The one thing a board does not know is the 5-minute average price, which changes
//! with the clock: a MARKET order by quantity is left to the exchange itself.

use super::place::{CheckSource, check};
use super::{Exchange, MarketParams, NewOrder, Outcome};
use crate::error::ExchangeError;
use crate::order::{OrderType, Side};
use keygate_proto::{AccountId, Amount, Symbol, UnixMillis};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The exchange's state as a new order's checks read it, as of one moment: the markets' fixed
/// rules and each book's best prices. Cheap to make (the rules are shared with the board it
/// replaces) and to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBoard {
    /// Fixed for the exchange's life: made once and shared by every board after it.
    markets: Arc<Markets>,
    /// Per market, in index order: the best bid and the best ask.
    tops: Vec<(Option<u64>, Option<u64>)>,
}

/// The markets' symbols and rules, which never change once the exchange exists.
#[derive(Debug, PartialEq, Eq)]
struct Markets {
    index: BTreeMap<Symbol, u32>,
    params: Vec<MarketParams>,
}

/// One account's open orders as a new order's checks read them: per market, how many are open
/// and their client order ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOrderIds {
    /// Whose orders these are: a board checks only this account's orders against them.
    account: AccountId,
    /// Per market index: the open orders' count and client order ids.
    markets: BTreeMap<u32, (usize, BTreeSet<String>)>,
}

impl Exchange {
    /// The board of the exchange as it is now. Pass the board this one replaces, if any, to share
    /// its markets' rules rather than copy them again.
    #[must_use]
    pub fn order_board(&self, previous: Option<&OrderBoard>) -> OrderBoard {
        let markets = match previous {
            Some(p) => Arc::clone(&p.markets),
            None => Arc::new(Markets {
                index: self.symbol_index.clone(),
                params: self.markets.iter().map(|ms| ms.params).collect(),
            }),
        };
        let tops = self.markets.iter().map(|ms| (best(ms, Side::Buy), best(ms, Side::Sell))).collect();
        OrderBoard { markets, tops }
    }

    /// `account`'s open orders as a board's checks read them. Changes to them are noted like
    /// balance changes ([`Exchange::take_changed_accounts`]), so a copy kept until its account
    /// is listed there stays exact.
    #[must_use]
    pub fn open_order_ids(&self, account: AccountId) -> OpenOrderIds {
        let markets = self
            .accounts
            .get(&account)
            .map(|per_market| {
                per_market
                    .iter()
                    .filter(|(_, am)| !am.open.is_empty() || !am.open_client_ids.is_empty())
                    .map(|(m, am)| (*m, (am.open.len(), am.open_client_ids.keys().cloned().collect())))
                    .collect()
            })
            .unwrap_or_default();
        OpenOrderIds { account, markets }
    }
}

fn best(ms: &super::MarketState, side: Side) -> Option<u64> {
    ms.book.best(side).map(|(price, _)| price)
}

impl OrderBoard {
    /// What [`Exchange::apply`] with [`Command::TestOrder`](super::Command::TestOrder) would
    /// answer on the exchange this board and `open` were taken from, or `None` when the board
    /// cannot tell: a MARKET order by quantity (its notional is valued at the average price, which
    /// moves with the clock), or `open` of another account than the order's.
    #[must_use]
    pub fn test_order(&self, open: &OpenOrderIds, req: &NewOrder) -> Option<Result<Outcome, ExchangeError>> {
        if open.account != req.account || (req.order_type == OrderType::Market && req.quantity.is_some()) {
            return None;
        }
        let source = Source { board: self, open };
        // No average price is asked for (MARKET orders by quantity are not checked here), so the
        // time is never read.
        Some(check(&source, req, UnixMillis(0)).map(|_| Outcome::Tested))
    }

    /// The market's maker and taker commission rates, as [`Exchange::fee_rates`] answers.
    ///
    /// # Errors
    /// [`ExchangeError::UnknownSymbol`].
    pub fn fee_rates(&self, symbol: &Symbol) -> Result<(Amount, Amount), ExchangeError> {
        let m = self.markets.index.get(symbol).ok_or(ExchangeError::UnknownSymbol)?;
        let p = self.markets.params.get(*m as usize).ok_or(ExchangeError::UnknownSymbol)?;
        Ok((Amount::from_units(p.maker_fee), Amount::from_units(p.taker_fee)))
    }
}

/// A board and one account's open orders, read as the exchange would be.
struct Source<'a> {
    board: &'a OrderBoard,
    open: &'a OpenOrderIds,
}

impl CheckSource for Source<'_> {
    fn market_params(&self, symbol: &Symbol) -> Result<(usize, MarketParams), ExchangeError> {
        let markets = &self.board.markets;
        let m = *markets.index.get(symbol).ok_or(ExchangeError::UnknownSymbol)? as usize;
        let p = markets.params.get(m).ok_or(ExchangeError::Internal("market index"))?;
        Ok((m, *p))
    }

    fn open_count(&self, account: AccountId, m: usize) -> usize {
        debug_assert_eq!(account, self.open.account, "a board checks the account whose open orders it has");
        self.open.markets.get(&(m as u32)).map_or(0, |(n, _)| *n)
    }

    fn client_id_open(&self, account: AccountId, m: usize, client_id: &str) -> bool {
        debug_assert_eq!(account, self.open.account, "a board checks the account whose open orders it has");
        self.open.markets.get(&(m as u32)).is_some_and(|(_, ids)| ids.contains(client_id))
    }

    fn best_price(&self, m: usize, side: Side) -> Option<u64> {
        let (bid, ask) = self.board.tops.get(m).copied()?;
        match side {
            Side::Buy => bid,
            Side::Sell => ask,
        }
    }

    fn avg_price_units(&self, _m: usize, _now: UnixMillis) -> Option<u64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExchangeConfig;
    use crate::exchange::Command;
    use crate::order::TimeInForce;
    use crate::wallet::Deposit;

    fn order(account: i64, side: Side, t: OrderType, price: &str, qty: &str, cid: Option<&str>) -> NewOrder {
        NewOrder {
            account: AccountId(account),
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            side,
            order_type: t,
            time_in_force: (t == OrderType::Limit).then_some(TimeInForce::Gtc),
            quantity: Some(qty.parse().unwrap()),
            quote_order_qty: None,
            price: (t != OrderType::Market).then(|| price.parse().unwrap()),
            new_client_order_id: cid.map(str::to_owned),
            stp_mode: None,
        }
    }

    fn funded() -> Exchange {
        let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
        for (coin, amount) in [("USDT", "1000000"), ("BTC", "100")] {
            let deposit = Deposit {
                account: AccountId(1),
                coin: keygate_proto::AssetCode::parse(coin).unwrap(),
                network: None,
                amount: amount.parse().unwrap(),
            };
            ex.apply(&Command::Deposit(deposit), UnixMillis(1)).unwrap();
        }
        ex
    }

    /// Both answers for one test order: the exchange's own and the board's.
    fn both(
        ex: &mut Exchange,
        req: &NewOrder,
    ) -> (Result<Outcome, ExchangeError>, Option<Result<Outcome, ExchangeError>>) {
        let board = ex.order_board(None).test_order(&ex.open_order_ids(req.account), req);
        (ex.apply(&Command::TestOrder(req.clone()), UnixMillis(2)), board)
    }

    #[test]
    fn an_order_without_a_client_id_is_never_a_duplicate_even_when_its_derived_id_is_taken() {
        let mut ex = funded();
        // The id the next order (the second) would be given, taken by the first as its own.
        let next = crate::ids::client_order_id(2, super::super::NEW_ORDER_SALT);
        let rest = order(1, Side::Buy, OrderType::Limit, "40000", "0.01", Some(&next));
        ex.apply(&Command::PlaceOrder(rest), UnixMillis(2)).unwrap();
        let (exchange, board) = both(&mut ex, &order(1, Side::Buy, OrderType::Limit, "40000", "0.01", None));
        assert_eq!(exchange, Ok(Outcome::Tested));
        assert_eq!(board, Some(exchange));
        let placed =
            ex.apply(&Command::PlaceOrder(order(1, Side::Buy, OrderType::Limit, "40000", "0.01", None)), UnixMillis(3));
        let Ok(Outcome::Placed(p)) = placed else { panic!("{placed:?}") };
        assert_eq!(p.order.order_id, 2);
        assert_eq!(p.order.client_order_id, crate::ids::client_order_id(2, super::super::NEW_ORDER_SALT + 1));
        // The client's own id is still refused as a duplicate, on both.
        let (exchange, board) = both(&mut ex, &order(1, Side::Sell, OrderType::Limit, "70000", "0.01", Some(&next)));
        assert_eq!(exchange, Err(ExchangeError::DuplicateOrder));
        assert_eq!(board, Some(exchange));
    }

    #[test]
    fn a_limit_maker_that_would_take_is_refused_on_the_board_and_a_market_order_by_quantity_is_left_to_the_exchange() {
        let mut ex = funded();
        ex.apply(&Command::PlaceOrder(order(1, Side::Sell, OrderType::Limit, "50000", "0.01", None)), UnixMillis(2))
            .unwrap();
        let (exchange, board) = both(&mut ex, &order(2, Side::Buy, OrderType::LimitMaker, "50000", "0.01", None));
        assert_eq!(exchange, Err(ExchangeError::WouldTake));
        assert_eq!(board, Some(exchange));
        let (exchange, board) = both(&mut ex, &order(2, Side::Buy, OrderType::LimitMaker, "49990", "0.01", None));
        assert_eq!(exchange, Ok(Outcome::Tested));
        assert_eq!(board, Some(exchange));
        assert_eq!(both(&mut ex, &order(2, Side::Buy, OrderType::Market, "", "0.01", None)).1, None);
    }

    #[test]
    fn open_orders_of_another_account_are_not_used() {
        let ex = funded();
        let board = ex.order_board(None);
        assert_eq!(
            board.test_order(
                &ex.open_order_ids(AccountId(2)),
                &order(1, Side::Buy, OrderType::Limit, "40000", "0.01", None)
            ),
            None
        );
    }

    #[test]
    fn a_later_board_shares_the_rules_and_sees_the_new_top() {
        let mut ex = funded();
        let first = ex.order_board(None);
        ex.apply(&Command::PlaceOrder(order(1, Side::Buy, OrderType::Limit, "40000", "0.01", None)), UnixMillis(2))
            .unwrap();
        let second = ex.order_board(Some(&first));
        assert!(Arc::ptr_eq(&first.markets, &second.markets));
        assert_eq!(second, ex.order_board(None));
        assert_eq!(second.tops.first(), Some(&(Some(40_000 * 100_000_000), None)));
        assert_eq!(
            second.fee_rates(&Symbol::parse("BTCUSDT").unwrap()),
            ex.fee_rates(&Symbol::parse("BTCUSDT").unwrap())
        );
    }
}
