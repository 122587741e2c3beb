//! The exchange state machine: one mutating entry point, [`Exchange::apply`].
//!
//! The server journals every [`Command`] with the `now` it was applied at; replaying the journal
//! into a fresh [`Exchange`] rebuilds exactly the same state, ids included. Every command is
//! validated completely before anything changes, so a refused command leaves the state as it was.

use crate::book::Book;
use crate::config::{ConfigError, ExchangeConfig, MarketSpec};
use crate::error::{ExchangeError, OVERFLOW};
use crate::ledger::{ChangedAccounts, Ledger};
use crate::order::{Fill, Order, OrderRef, OrderType, Side, StpMode, TimeInForce, Trade};
use crate::wallet::{Deposit, DepositRecord, Withdraw, WithdrawalRecord};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// 1e8: the number of units in one whole coin.
pub(crate) const UNIT: u128 = 100_000_000;

/// Salt for generated client order ids of new orders.
const NEW_ORDER_SALT: u64 = 0x6b65_7967_6174_6501;
/// Salt for generated client order ids of cancel requests.
const CANCEL_SALT: u64 = 0x6b65_7967_6174_6502;

/// A request to place (or test) an order, with Binance's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    /// The owner (from the API key).
    pub account: AccountId,
    /// `symbol`.
    pub symbol: Symbol,
    /// `side`.
    pub side: Side,
    /// `type`.
    pub order_type: OrderType,
    /// `timeInForce` (LIMIT only).
    pub time_in_force: Option<TimeInForce>,
    /// `quantity`.
    pub quantity: Option<Amount>,
    /// `quoteOrderQty` (MARKET only).
    pub quote_order_qty: Option<Amount>,
    /// `price` (LIMIT and LIMIT_MAKER).
    pub price: Option<Amount>,
    /// `newClientOrderId`.
    pub new_client_order_id: Option<String>,
    /// `selfTradePreventionMode` (default EXPIRE_MAKER).
    pub stp_mode: Option<StpMode>,
}

/// Everything that changes the exchange. Serialisable so that the server can journal it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// `POST /api/v3/order`.
    PlaceOrder(NewOrder),
    /// `POST /api/v3/order/test`: parameters and filters only; changes nothing.
    TestOrder(NewOrder),
    /// `DELETE /api/v3/order`.
    CancelOrder {
        /// The owner.
        account: AccountId,
        /// `symbol`.
        symbol: Symbol,
        /// `orderId` or `origClientOrderId`.
        order: OrderRef,
        /// `newClientOrderId` for the cancel itself (generated when absent).
        new_client_order_id: Option<String>,
    },
    /// `DELETE /api/v3/openOrders`.
    CancelOpenOrders {
        /// The owner.
        account: AccountId,
        /// `symbol`.
        symbol: Symbol,
    },
    /// Operator deposit (CLI, admin channel, demo faucet).
    Deposit(Deposit),
    /// `POST /sapi/v1/capital/withdraw/apply`, with the key's policy.
    Withdraw(Withdraw),
    /// Completes withdrawals whose processing delay has passed.
    AdvanceWithdrawals,
}

/// A placed order and its fills: what the FULL response needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedOrder {
    /// The order after matching.
    pub order: Order,
    /// Its fills, in execution order.
    pub fills: Vec<Fill>,
}

/// A canceled order: what the cancel response needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanceledOrder {
    /// The order after cancellation (`clientOrderId` of the order is `origClientOrderId`).
    pub order: Order,
    /// The cancel request's own client id (the response's `clientOrderId`).
    pub cancel_client_order_id: String,
}

/// What a successful command produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// An order was placed (possibly filled, expired, or resting).
    Placed(PlacedOrder),
    /// The test order passed validation.
    Tested,
    /// One order was canceled.
    Canceled(CanceledOrder),
    /// Every open order of the symbol was canceled, in order id order.
    CanceledAll(Vec<CanceledOrder>),
    /// A deposit was credited.
    Deposited(DepositRecord),
    /// A withdrawal was accepted and is PROCESSING.
    WithdrawApplied(WithdrawalRecord),
    /// These withdrawals completed.
    WithdrawalsCompleted(Vec<WithdrawalRecord>),
}

/// A market's filters and asset indices, copied out of the spec for the hot path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MarketParams {
    pub(crate) base: usize,
    pub(crate) quote: usize,
    pub(crate) tick: u64,
    pub(crate) min_price: u64,
    pub(crate) max_price: u64,
    pub(crate) step: u64,
    pub(crate) min_qty: u64,
    pub(crate) max_qty: u64,
    pub(crate) market_min_qty: u64,
    pub(crate) market_max_qty: u64,
    pub(crate) min_notional: u64,
    pub(crate) max_notional: u64,
    pub(crate) maker_fee: u64,
    pub(crate) taker_fee: u64,
    pub(crate) max_num_orders: u32,
    pub(crate) reference_price: u64,
}

/// One market's live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MarketState {
    pub(crate) params: MarketParams,
    pub(crate) book: Book,
    /// Ids of this market's trades, ascending (and so in time order).
    pub(crate) trades: Vec<u64>,
}

/// One account's orders and trades on one market.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountMarket {
    /// Every order id, ascending.
    pub(crate) orders: Vec<u64>,
    /// `(trade id, is_buyer)`, ascending; a self-trade appears twice.
    pub(crate) trades: Vec<(u64, bool)>,
    /// Open order ids.
    pub(crate) open: BTreeSet<u64>,
    /// Client ids of open orders.
    pub(crate) open_client_ids: BTreeMap<String, u64>,
}

/// The sandbox exchange: config, ledger, books, orders, trades, deposits and withdrawals.
///
/// `Serialize + Deserialize` is the snapshot format; `PartialEq` lets tests compare a replayed
/// exchange with the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    pub(crate) config: ExchangeConfig,
    pub(crate) ledger: Ledger,
    pub(crate) markets: Vec<MarketState>,
    pub(crate) symbol_index: BTreeMap<Symbol, u32>,
    pub(crate) asset_index: BTreeMap<AssetCode, u32>,
    /// Every order ever placed; `orders[id - 1]` has order id `id`.
    pub(crate) orders: Vec<Order>,
    /// Every trade; `trades[id - 1]` has trade id `id`.
    pub(crate) trades: Vec<Trade>,
    pub(crate) accounts: BTreeMap<AccountId, BTreeMap<u32, AccountMarket>>,
    pub(crate) deposits: Vec<DepositRecord>,
    pub(crate) withdrawals: Vec<WithdrawalRecord>,
    /// Withdrawals before this index are no longer PROCESSING.
    pub(crate) next_withdrawal: usize,
    /// The latest `now` applied: time never runs backwards inside the engine.
    pub(crate) clock: UnixMillis,
}

/// `price * qty` in quote units (exact when the config's decimals sum to at most 8).
pub(crate) fn notional(price: u64, qty: u64) -> u128 {
    u128::from(price) * u128::from(qty) / UNIT
}

/// `amount * rate`, rounded down to 1e-8.
pub(crate) fn commission(amount: u64, rate: u64) -> u64 {
    u64::try_from(u128::from(amount) * u128::from(rate) / UNIT).unwrap_or(amount)
}

fn params_of(spec: &MarketSpec, asset_index: &BTreeMap<AssetCode, u32>) -> Result<MarketParams, ConfigError> {
    let idx = |a: &AssetCode| {
        asset_index.get(a).map(|i| *i as usize).ok_or_else(|| ConfigError(format!("unknown asset {a}")))
    };
    Ok(MarketParams {
        base: idx(&spec.base)?,
        quote: idx(&spec.quote)?,
        tick: spec.tick_size.units(),
        min_price: spec.min_price.units(),
        max_price: spec.max_price.units(),
        step: spec.step_size.units(),
        min_qty: spec.min_qty.units(),
        max_qty: spec.max_qty.units(),
        market_min_qty: spec.market_min_qty.units(),
        market_max_qty: spec.market_max_qty.units(),
        min_notional: spec.min_notional.units(),
        max_notional: spec.max_notional.units(),
        maker_fee: spec.maker_fee.units(),
        taker_fee: spec.taker_fee.units(),
        max_num_orders: spec.max_num_orders,
        reference_price: spec.reference_price.units(),
    })
}

/// How a taker's size is bounded while walking the book.
#[derive(Debug, Clone, Copy)]
enum Target {
    Qty(u64),
    Quote(u64),
}

/// Binance's `^[.A-Z:/a-z0-9_-]{1,36}$` for `newClientOrderId`.
fn valid_client_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 36
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

impl Exchange {
    /// A fresh exchange over a validated config.
    ///
    /// # Errors
    /// [`ConfigError`] when [`ExchangeConfig::validate`] refuses the config.
    pub fn new(config: ExchangeConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let asset_index: BTreeMap<AssetCode, u32> =
            config.assets.iter().enumerate().map(|(i, a)| (a.coin.clone(), i as u32)).collect();
        let symbol_index = config.markets.iter().enumerate().map(|(i, m)| (m.symbol.clone(), i as u32)).collect();
        let markets = config
            .markets
            .iter()
            .map(|spec| {
                Ok(MarketState { params: params_of(spec, &asset_index)?, book: Book::default(), trades: vec![] })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let ledger = Ledger::new(config.assets.iter().map(|a| a.coin.clone()).collect());
        Ok(Self {
            config,
            ledger,
            markets,
            symbol_index,
            asset_index,
            orders: Vec::new(),
            trades: Vec::new(),
            accounts: BTreeMap::new(),
            deposits: Vec::new(),
            withdrawals: Vec::new(),
            next_withdrawal: 0,
            clock: UnixMillis(0),
        })
    }

    /// The state as bytes (JSON), for periodic snapshots.
    ///
    /// # Errors
    /// Only if serialisation fails, which it does not for this type.
    pub fn snapshot(&self) -> Result<Vec<u8>, ExchangeError> {
        serde_json::to_vec(self).map_err(|_| ExchangeError::Internal("snapshot serialisation failed"))
    }

    /// Restores a snapshot taken by [`Exchange::snapshot`], checking the config and the ledger.
    ///
    /// # Errors
    /// [`ExchangeError::Internal`] when the bytes are not a snapshot or do not balance.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self, ExchangeError> {
        let ex: Self = serde_json::from_slice(bytes).map_err(|_| ExchangeError::Internal("malformed snapshot"))?;
        ex.config.validate().map_err(|_| ExchangeError::Internal("snapshot config is invalid"))?;
        ex.ledger.check_invariant().map_err(|_| ExchangeError::Internal("snapshot ledger does not balance"))?;
        Ok(ex)
    }

    /// The config the exchange runs with.
    #[must_use]
    pub fn config(&self) -> &ExchangeConfig {
        &self.config
    }

    /// The ledger (balances and totals).
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The accounts whose balances may have changed since the last call (see [`ChangedAccounts`]).
    pub fn take_changed_accounts(&mut self) -> ChangedAccounts {
        self.ledger.take_changed()
    }

    /// The engine's clock: the latest `now` applied.
    #[must_use]
    pub fn clock(&self) -> UnixMillis {
        self.clock
    }

    /// Applies one command at time `now` (never earlier than the previous command's).
    ///
    /// # Errors
    /// The Binance-shaped [`ExchangeError`] for a refused command; the state is then unchanged.
    pub fn apply(&mut self, cmd: &Command, now: UnixMillis) -> Result<Outcome, ExchangeError> {
        let now = now.max(self.clock);
        let out = match cmd {
            Command::PlaceOrder(o) => self.place_order(o, now, false)?,
            Command::TestOrder(o) => return self.place_order(o, now, true),
            Command::CancelOrder { account, symbol, order, new_client_order_id } => {
                Outcome::Canceled(self.cancel_order(*account, symbol, order, new_client_order_id.as_deref(), now)?)
            }
            Command::CancelOpenOrders { account, symbol } => {
                Outcome::CanceledAll(self.cancel_open_orders(*account, symbol, now)?)
            }
            Command::Deposit(d) => Outcome::Deposited(self.deposit(d, now)?),
            Command::Withdraw(w) => Outcome::WithdrawApplied(self.withdraw(w, now)?),
            Command::AdvanceWithdrawals => Outcome::WithdrawalsCompleted(self.advance_withdrawals(now)?),
        };
        self.clock = now;
        Ok(out)
    }

    pub(crate) fn market_idx(&self, symbol: &Symbol) -> Result<usize, ExchangeError> {
        self.symbol_index.get(symbol).map(|i| *i as usize).ok_or(ExchangeError::UnknownSymbol)
    }

    pub(crate) fn market(&self, m: usize) -> Result<&MarketState, ExchangeError> {
        self.markets.get(m).ok_or(ExchangeError::Internal("market index"))
    }

    pub(crate) fn order_at(&self, id: u64) -> Option<&Order> {
        id.checked_sub(1).and_then(|i| self.orders.get(i as usize))
    }

    fn account_market(&self, account: AccountId, m: usize) -> Option<&AccountMarket> {
        self.accounts.get(&account).and_then(|a| a.get(&(m as u32)))
    }

    /// The 5-minute average price used for MARKET notional checks (reference price if no trades).
    pub(crate) fn avg_price_units(&self, m: usize, now: UnixMillis) -> u64 {
        let Ok(ms) = self.market(m) else { return 0 };
        let from = now.0.saturating_sub(5 * 60_000);
        let (mut qty, mut quote) = (0u128, 0u128);
        for id in ms.trades.iter().rev() {
            let Some(t) = id.checked_sub(1).and_then(|i| self.trades.get(i as usize)) else { break };
            if t.time.0 < from {
                break;
            }
            qty += u128::from(t.qty.units());
            quote += u128::from(t.quote_qty.units());
        }
        if let Some(avg) = (quote * UNIT).checked_div(qty) {
            return u64::try_from(avg).unwrap_or(u64::MAX);
        }
        match ms.trades.last().and_then(|id| id.checked_sub(1)).and_then(|i| self.trades.get(i as usize)) {
            Some(t) => t.price.units(),
            None => ms.params.reference_price,
        }
    }

    /// Walks the opposite book without changing it, applying the same self-trade rules as
    /// matching, and returns `(qty, quote)` that a taker would fill up to `target`.
    fn preview(
        &self,
        m: usize,
        account: AccountId,
        side: Side,
        stp: StpMode,
        limit: Option<u64>,
        target: Target,
    ) -> (u64, u128) {
        let Ok(ms) = self.market(m) else { return (0, 0) };
        let step = ms.params.step.max(1);
        let levels: Box<dyn Iterator<Item = (&u64, &crate::book::Level)>> = match side {
            Side::Buy => Box::new(ms.book.asks.iter()),
            Side::Sell => Box::new(ms.book.bids.iter().rev()),
        };
        let (mut qty, mut quote) = (0u64, 0u128);
        for (&price, level) in levels {
            if let Some(l) = limit
                && ((side == Side::Buy && price > l) || (side == Side::Sell && price < l))
            {
                break;
            }
            for id in &level.queue {
                let Some(maker) = self.order_at(*id) else { continue };
                if !maker.status.is_open() {
                    continue;
                }
                if maker.account == account && stp != StpMode::None {
                    match stp {
                        StpMode::ExpireMaker => continue,
                        _ => return (qty, quote),
                    }
                }
                let avail = maker.remaining();
                let q = match target {
                    Target::Qty(t) => avail.min(t.saturating_sub(qty)),
                    Target::Quote(t) => {
                        let left = u128::from(t).saturating_sub(quote);
                        let afford = u64::try_from(left * UNIT / u128::from(price.max(1))).unwrap_or(u64::MAX);
                        avail.min(afford - afford % step)
                    }
                };
                if q == 0 {
                    return (qty, quote);
                }
                qty = qty.saturating_add(q);
                quote += notional(price, q);
            }
        }
        (qty, quote)
    }

    fn place_order(&mut self, req: &NewOrder, now: UnixMillis, test: bool) -> Result<Outcome, ExchangeError> {
        let m = self.market_idx(&req.symbol)?;
        let p = self.market(m)?.params;

        // Parameters per type, as Binance checks them.
        let tif = match req.order_type {
            OrderType::Limit => req.time_in_force.ok_or_else(|| ExchangeError::missing("timeInForce"))?,
            OrderType::Market | OrderType::LimitMaker => {
                if req.time_in_force.is_some() {
                    return Err(ExchangeError::not_required("timeInForce"));
                }
                TimeInForce::Gtc
            }
        };
        let (price, target) = match req.order_type {
            OrderType::Limit | OrderType::LimitMaker => {
                if req.quote_order_qty.is_some() {
                    return Err(ExchangeError::not_required("quoteOrderQty"));
                }
                let price = req.price.ok_or_else(|| ExchangeError::missing("price"))?.units();
                let qty = req.quantity.ok_or_else(|| ExchangeError::missing("quantity"))?.units();
                (Some(price), Target::Qty(qty))
            }
            OrderType::Market => {
                if req.price.is_some() {
                    return Err(ExchangeError::not_required("price"));
                }
                match (req.quantity, req.quote_order_qty) {
                    (Some(q), None) => (None, Target::Qty(q.units())),
                    (None, Some(q)) => (None, Target::Quote(q.units())),
                    (None, None) => {
                        return Err(ExchangeError::BadParam {
                            code: keygate_proto::ErrorCode::MandatoryParamEmptyOrMalformed,
                            msg: "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                                .to_owned(),
                        });
                    }
                    (Some(_), Some(_)) => return Err(ExchangeError::bad_combination()),
                }
            }
        };

        // Filters.
        if let Some(price) = price
            && (price < p.min_price || price > p.max_price || price % p.tick != 0)
        {
            return Err(ExchangeError::Filter("PRICE_FILTER"));
        }
        let notional_units = match (price, target) {
            (Some(price), Target::Qty(q)) => {
                if q == 0 || q < p.min_qty || q > p.max_qty || q % p.step != 0 {
                    return Err(ExchangeError::Filter("LOT_SIZE"));
                }
                notional(price, q)
            }
            (None, Target::Qty(q)) => {
                if q == 0 || q < p.market_min_qty || q > p.market_max_qty || q % p.step != 0 {
                    return Err(ExchangeError::Filter("MARKET_LOT_SIZE"));
                }
                notional(self.avg_price_units(m, now), q)
            }
            (_, Target::Quote(q)) => u128::from(q),
        };
        if notional_units == 0
            || notional_units < u128::from(p.min_notional)
            || notional_units > u128::from(p.max_notional)
        {
            return Err(ExchangeError::Filter("NOTIONAL"));
        }

        // Client order id and per-account limits.
        let order_id = self.orders.len() as u64 + 1;
        let am = self.account_market(req.account, m);
        let client_order_id = match &req.new_client_order_id {
            Some(c) => {
                if !valid_client_id(c) {
                    return Err(ExchangeError::illegal("newClientOrderId", "^[a-zA-Z0-9-_]{1,36}$"));
                }
                c.clone()
            }
            None => crate::ids::client_order_id(order_id, NEW_ORDER_SALT),
        };
        if am.is_some_and(|a| a.open_client_ids.contains_key(&client_order_id)) {
            return Err(ExchangeError::DuplicateOrder);
        }
        if am.map_or(0, |a| a.open.len()) >= p.max_num_orders as usize {
            return Err(ExchangeError::Filter("MAX_NUM_ORDERS"));
        }
        let book = &self.market(m)?.book;
        if req.order_type == OrderType::LimitMaker
            && let Some(price) = price
        {
            let takes = match req.side {
                Side::Buy => book.best(Side::Sell).is_some_and(|(ask, _)| price >= ask),
                Side::Sell => book.best(Side::Buy).is_some_and(|(bid, _)| price <= bid),
            };
            if takes {
                return Err(ExchangeError::WouldTake);
            }
        }
        if test {
            return Ok(Outcome::Tested);
        }

        // Funds to lock.
        let stp = req.stp_mode.unwrap_or(StpMode::ExpireMaker);
        let (lock_asset, lock) = match (req.side, price, target) {
            (Side::Buy, Some(price), Target::Qty(q)) => (p.quote, notional(price, q)),
            (Side::Buy, None, Target::Qty(q)) => {
                (p.quote, self.preview(m, req.account, Side::Buy, stp, None, Target::Qty(q)).1)
            }
            (Side::Buy, _, Target::Quote(q)) => (p.quote, u128::from(q)),
            (Side::Sell, _, Target::Qty(q)) => (p.base, u128::from(q)),
            (Side::Sell, _, Target::Quote(q)) => {
                (p.base, u128::from(self.preview(m, req.account, Side::Sell, stp, None, Target::Quote(q)).0))
            }
        };
        let free = self.ledger.balance(req.account, lock_asset).free;
        let lock = u64::try_from(lock).map_err(|_| ExchangeError::InsufficientBalance)?;
        if lock > free {
            return Err(ExchangeError::InsufficientBalance);
        }

        // From here on the command succeeds.
        let fok_fails = tif == TimeInForce::Fok
            && matches!(target, Target::Qty(q) if self.preview(m, req.account, req.side, stp, price, target).0 < q);
        self.ledger.lock(req.account, lock_asset, lock)?;
        let (orig_qty, orig_quote) = match target {
            Target::Qty(q) => (q, 0),
            Target::Quote(q) => (0, q),
        };
        self.orders.push(Order {
            symbol: req.symbol.clone(),
            order_id,
            order_list_id: -1,
            client_order_id,
            account: req.account,
            price: Amount::from_units(price.unwrap_or(0)),
            orig_qty: Amount::from_units(orig_qty),
            executed_qty: Amount::ZERO,
            cummulative_quote_qty: Amount::ZERO,
            orig_quote_order_qty: Amount::from_units(orig_quote),
            status: crate::order::OrderStatus::New,
            time_in_force: tif,
            order_type: req.order_type,
            side: req.side,
            stop_price: Amount::ZERO,
            iceberg_qty: Amount::ZERO,
            time: now,
            update_time: now,
            is_working: true,
            working_time: now,
            self_trade_prevention_mode: stp,
            locked: Amount::from_units(lock),
            market: m as u32,
        });
        self.accounts.entry(req.account).or_default().entry(m as u32).or_default().orders.push(order_id);

        let fills = if fok_fails { Vec::new() } else { self.match_order(order_id, m, price, target, now)? };
        self.finish_taker(order_id, m, price, target, fok_fails, now)?;
        let order = self.order_at(order_id).cloned().ok_or(ExchangeError::Internal("order vanished"))?;
        Ok(Outcome::Placed(PlacedOrder { order, fills }))
    }

    /// Matches the taker against the book; returns its fills. The taker's final status is set by
    /// [`Self::finish_taker`], except EXPIRED_IN_MATCH which is set here.
    fn match_order(
        &mut self,
        taker_id: u64,
        m: usize,
        limit: Option<u64>,
        target: Target,
        now: UnixMillis,
    ) -> Result<Vec<Fill>, ExchangeError> {
        use crate::order::OrderStatus;
        let ti = (taker_id - 1) as usize;
        let (side, account, stp) = {
            let t = self.orders.get(ti).ok_or(ExchangeError::Internal("taker"))?;
            (t.side, t.account, t.self_trade_prevention_mode)
        };
        let opp = match side {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        };
        let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
        let p = ms.params;
        let step = p.step.max(1);
        let (base_code, quote_code) = (
            self.ledger.assets().get(p.base).cloned().ok_or(ExchangeError::Internal("asset"))?,
            self.ledger.assets().get(p.quote).cloned().ok_or(ExchangeError::Internal("asset"))?,
        );
        let mut fills = Vec::new();
        loop {
            let taker = self.orders.get(ti).ok_or(ExchangeError::Internal("taker"))?;
            let (spent_quote, done_qty) = (taker.cummulative_quote_qty.units(), taker.executed_qty.units());
            let taker_locked = taker.locked.units();
            let book = &mut ms.book;
            let best = match opp {
                Side::Sell => book.asks.keys().next().copied(),
                Side::Buy => book.bids.keys().next_back().copied(),
            };
            let Some(price) = best else { break };
            if let Some(l) = limit
                && ((side == Side::Buy && price > l) || (side == Side::Sell && price < l))
            {
                break;
            }
            let levels = book.side_mut(opp);
            let Some(level) = levels.get_mut(&price) else { break };
            // Skip ids of orders that are no longer open (lazy deletion).
            let mut maker_id = None;
            while let Some(&id) = level.queue.front() {
                if id.checked_sub(1).and_then(|i| self.orders.get(i as usize)).is_some_and(|o| o.status.is_open()) {
                    maker_id = Some(id);
                    break;
                }
                level.queue.pop_front();
            }
            let Some(maker_id) = maker_id else {
                levels.remove(&price);
                continue;
            };
            let mi = (maker_id - 1) as usize;
            let maker = self.orders.get(mi).ok_or(ExchangeError::Internal("maker"))?;
            let maker_rem = maker.remaining();
            if maker.account == account && stp != StpMode::None {
                if matches!(stp, StpMode::ExpireMaker | StpMode::ExpireBoth) {
                    let (maker_account, maker_locked, maker_cid) =
                        (maker.account, maker.locked.units(), maker.client_order_id.clone());
                    level.queue.pop_front();
                    book.remove(opp, price, maker_rem);
                    let maker_asset = if opp == Side::Buy { p.quote } else { p.base };
                    self.ledger.unlock(maker_account, maker_asset, maker_locked)?;
                    if let Some(o) = self.orders.get_mut(mi) {
                        o.status = OrderStatus::ExpiredInMatch;
                        o.update_time = now;
                        o.locked = Amount::ZERO;
                    }
                    close_open(&mut self.accounts, maker_account, m, maker_id, &maker_cid);
                }
                if matches!(stp, StpMode::ExpireTaker | StpMode::ExpireBoth) {
                    if let Some(o) = self.orders.get_mut(ti) {
                        o.status = OrderStatus::ExpiredInMatch;
                    }
                    break;
                }
                continue;
            }
            let q = match target {
                Target::Qty(t) => maker_rem.min(t.saturating_sub(done_qty)),
                Target::Quote(t) => {
                    let left = u128::from(t.saturating_sub(spent_quote));
                    let afford = u64::try_from(left * UNIT / u128::from(price.max(1))).unwrap_or(u64::MAX);
                    maker_rem.min(afford - afford % step)
                }
            };
            let quote = u64::try_from(notional(price, q)).map_err(|_| OVERFLOW)?;
            // The taker never spends more than it locked (preview and matching agree; this is
            // the guard that keeps the ledger sound even if they did not).
            let affordable = match side {
                Side::Buy => quote <= taker_locked,
                Side::Sell => q <= taker_locked,
            };
            if q == 0 || !affordable {
                break;
            }

            // Settle.
            let (buyer_i, seller_i) = if side == Side::Buy { (ti, mi) } else { (mi, ti) };
            let (buyer_rate, seller_rate) =
                if side == Side::Buy { (p.taker_fee, p.maker_fee) } else { (p.maker_fee, p.taker_fee) };
            let buyer_comm = commission(q, buyer_rate);
            let seller_comm = commission(quote, seller_rate);
            let buyer = self.orders.get(buyer_i).map(|o| o.account).ok_or(ExchangeError::Internal("buyer"))?;
            let seller = self.orders.get(seller_i).map(|o| o.account).ok_or(ExchangeError::Internal("seller"))?;
            self.ledger.spend_locked(buyer, p.quote, quote)?;
            self.ledger.credit(buyer, p.base, q - buyer_comm)?;
            self.ledger.add_fee(p.base, buyer_comm)?;
            self.ledger.spend_locked(seller, p.base, q)?;
            self.ledger.credit(seller, p.quote, quote - seller_comm)?;
            self.ledger.add_fee(p.quote, seller_comm)?;
            for (i, spent) in [(buyer_i, quote), (seller_i, q)] {
                let o = self.orders.get_mut(i).ok_or(ExchangeError::Internal("order"))?;
                o.locked = Amount::from_units(o.locked.units().checked_sub(spent).ok_or(OVERFLOW)?);
                o.executed_qty = Amount::from_units(o.executed_qty.units().checked_add(q).ok_or(OVERFLOW)?);
                o.cummulative_quote_qty =
                    Amount::from_units(o.cummulative_quote_qty.units().checked_add(quote).ok_or(OVERFLOW)?);
                o.update_time = now;
                o.status = if o.orig_qty.units() != 0 && o.remaining() == 0 {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
            }
            // The book.
            level.qty = level.qty.saturating_sub(q);
            if maker_rem == q {
                level.queue.pop_front();
                level.live = level.live.saturating_sub(1);
                if level.live == 0 {
                    levels.remove(&price);
                }
                let (maker_account, maker_locked, maker_cid) = {
                    let o = self.orders.get_mut(mi).ok_or(ExchangeError::Internal("maker"))?;
                    let l = o.locked.units();
                    o.locked = Amount::ZERO;
                    (o.account, l, o.client_order_id.clone())
                };
                let maker_asset = if opp == Side::Buy { p.quote } else { p.base };
                self.ledger.unlock(maker_account, maker_asset, maker_locked)?;
                close_open(&mut self.accounts, maker_account, m, maker_id, &maker_cid);
            }
            book.update_id += 1;

            // The trade.
            let trade_id = self.trades.len() as u64 + 1;
            let (buyer_order_id, seller_order_id) =
                if side == Side::Buy { (taker_id, maker_id) } else { (maker_id, taker_id) };
            self.trades.push(Trade {
                id: trade_id,
                symbol: self.config.markets.get(m).map(|s| s.symbol.clone()).ok_or(ExchangeError::Internal("spec"))?,
                price: Amount::from_units(price),
                qty: Amount::from_units(q),
                quote_qty: Amount::from_units(quote),
                time: now,
                buyer_order_id,
                seller_order_id,
                buyer,
                seller,
                buyer_commission: Amount::from_units(buyer_comm),
                seller_commission: Amount::from_units(seller_comm),
                is_buyer_maker: side == Side::Sell,
                market: m as u32,
            });
            ms.trades.push(trade_id);
            for (acct, is_buyer) in [(buyer, true), (seller, false)] {
                self.accounts.entry(acct).or_default().entry(m as u32).or_default().trades.push((trade_id, is_buyer));
            }
            let (commission_amt, commission_asset) =
                if side == Side::Buy { (buyer_comm, base_code.clone()) } else { (seller_comm, quote_code.clone()) };
            fills.push(Fill {
                price: Amount::from_units(price),
                qty: Amount::from_units(q),
                commission: Amount::from_units(commission_amt),
                commission_asset,
                trade_id,
            });
        }
        Ok(fills)
    }

    /// Rests the taker or ends it, releasing what it no longer needs locked.
    fn finish_taker(
        &mut self,
        order_id: u64,
        m: usize,
        price: Option<u64>,
        target: Target,
        fok_failed: bool,
        now: UnixMillis,
    ) -> Result<(), ExchangeError> {
        use crate::order::OrderStatus;
        let i = (order_id - 1) as usize;
        let p = self.market(m)?.params;
        let o = self.orders.get_mut(i).ok_or(ExchangeError::Internal("taker"))?;
        let rests = !fok_failed
            && o.status != OrderStatus::ExpiredInMatch
            && o.remaining() > 0
            && (o.order_type == OrderType::LimitMaker
                || (o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc));
        if rests {
            let (side, rem, account, cid) = (o.side, o.remaining(), o.account, o.client_order_id.clone());
            let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
            ms.book.insert(side, price.unwrap_or(0), order_id, rem);
            let am = self.accounts.entry(account).or_default().entry(m as u32).or_default();
            am.open.insert(order_id);
            am.open_client_ids.insert(cid, order_id);
            return Ok(());
        }
        // The order ends now.
        o.status = match (o.status, target) {
            (OrderStatus::ExpiredInMatch, _) => OrderStatus::ExpiredInMatch,
            (_, Target::Qty(_)) if o.remaining() == 0 => OrderStatus::Filled,
            (_, Target::Quote(q)) if o.executed_qty.units() > 0 => {
                // Filled when what is left of the quote cannot buy another step at the last price.
                let left = u128::from(q.saturating_sub(o.cummulative_quote_qty.units()));
                let last = self.trades.last().map_or(u64::MAX, |t| t.price.units());
                if left < notional(last, p.step) || left == 0 { OrderStatus::Filled } else { OrderStatus::Expired }
            }
            _ => OrderStatus::Expired,
        };
        // A quote-driven MARKET order asked for no quantity; once it ends, Binance reports the
        // quantity it bought or sold as `origQty` (clients such as ccxt read the order's amount
        // from it), and `origQuoteOrderQty` keeps the quote amount asked for.
        if matches!(target, Target::Quote(_)) {
            o.orig_qty = o.executed_qty;
        }
        o.update_time = now;
        let (account, leftover, side) = (o.account, o.locked.units(), o.side);
        o.locked = Amount::ZERO;
        let asset = if side == Side::Buy { p.quote } else { p.base };
        self.ledger.unlock(account, asset, leftover)
    }

    fn resolve_open(&self, account: AccountId, m: usize, order: &OrderRef) -> Result<u64, ExchangeError> {
        let am = self.account_market(account, m).ok_or(ExchangeError::UnknownOrder)?;
        let id = match order {
            OrderRef::Id(id) => *id,
            OrderRef::ClientId(c) => *am.open_client_ids.get(c).ok_or(ExchangeError::UnknownOrder)?,
        };
        if am.open.contains(&id) { Ok(id) } else { Err(ExchangeError::UnknownOrder) }
    }

    fn cancel_by_id(
        &mut self,
        id: u64,
        m: usize,
        cancel_cid: String,
        now: UnixMillis,
    ) -> Result<CanceledOrder, ExchangeError> {
        use crate::order::OrderStatus;
        let p = self.market(m)?.params;
        let o = id.checked_sub(1).and_then(|i| self.orders.get_mut(i as usize)).ok_or(ExchangeError::UnknownOrder)?;
        let (side, price, rem, account, locked) = (o.side, o.price.units(), o.remaining(), o.account, o.locked.units());
        o.status = OrderStatus::Canceled;
        o.update_time = now;
        o.locked = Amount::ZERO;
        let cid = o.client_order_id.clone();
        let order = o.clone();
        let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
        ms.book.remove(side, price, rem);
        self.ledger.unlock(account, if side == Side::Buy { p.quote } else { p.base }, locked)?;
        close_open(&mut self.accounts, account, m, id, &cid);
        Ok(CanceledOrder { order, cancel_client_order_id: cancel_cid })
    }

    fn cancel_order(
        &mut self,
        account: AccountId,
        symbol: &Symbol,
        order: &OrderRef,
        new_client_order_id: Option<&str>,
        now: UnixMillis,
    ) -> Result<CanceledOrder, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let id = self.resolve_open(account, m, order)?;
        let cid = match new_client_order_id {
            Some(c) if valid_client_id(c) => c.to_owned(),
            Some(_) => return Err(ExchangeError::illegal("newClientOrderId", "^[a-zA-Z0-9-_]{1,36}$")),
            None => crate::ids::client_order_id(id, CANCEL_SALT),
        };
        self.cancel_by_id(id, m, cid, now)
    }

    fn cancel_open_orders(
        &mut self,
        account: AccountId,
        symbol: &Symbol,
        now: UnixMillis,
    ) -> Result<Vec<CanceledOrder>, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let ids: Vec<u64> =
            self.account_market(account, m).map(|a| a.open.iter().copied().collect()).unwrap_or_default();
        if ids.is_empty() {
            return Err(ExchangeError::UnknownOrder);
        }
        ids.into_iter().map(|id| self.cancel_by_id(id, m, crate::ids::client_order_id(id, CANCEL_SALT), now)).collect()
    }
}

/// Removes an order from its account's open sets.
fn close_open(
    accounts: &mut BTreeMap<AccountId, BTreeMap<u32, AccountMarket>>,
    account: AccountId,
    m: usize,
    id: u64,
    client_id: &str,
) {
    if let Some(am) = accounts.get_mut(&account).and_then(|a| a.get_mut(&(m as u32))) {
        am.open.remove(&id);
        if am.open_client_ids.get(client_id) == Some(&id) {
            am.open_client_ids.remove(client_id);
        }
    }
}
