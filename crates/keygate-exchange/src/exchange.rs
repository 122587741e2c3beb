//! The exchange state machine: one mutating entry point, [`Exchange::apply`].
//!
//! The server journals every [`Command`] with the `now` it was applied at; replaying the journal
//! into a fresh [`Exchange`] rebuilds exactly the same state, ids included. Every command is
//! validated completely before anything changes, so a refused command leaves the state as it was.
//!
//! This module holds the state and the commands' entry point; placing an order goes through
//! `place` (its checks, in Binance's order, then its funds, matching and what remains), and
//! matching through `matching` (walking the book, self-trade prevention, one fill at a time).

use crate::book::Book;
use crate::config::{ConfigError, ExchangeConfig, MarketSpec};
use crate::error::ExchangeError;
use crate::history::{History, HistoryRecord, HistorySpec, MAX_HISTORY_DAYS, MINUTE_MS, WalkParams};
use crate::ledger::{ChangedAccounts, Ledger};
use crate::order::{Fill, Order, OrderRef, OrderType, Side, StpMode, TimeInForce, Trade};
use crate::wallet::{Deposit, DepositRecord, Withdraw, WithdrawalRecord};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub use board::{OpenOrderIds, OrderBoard};

/// What a test order is checked against, away from the engine thread.
mod board;
/// Matching a taker against the book.
mod matching;
/// Placing an order, step by step.
mod place;

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
    /// Gives a sandbox without trades its simulated history (see [`crate::history`]): once, by
    /// the simulated market when it starts.
    SeedHistory(HistorySpec),
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
    /// The history was generated: what it is rebuilt from.
    HistorySeeded(HistoryRecord),
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

impl MarketParams {
    /// The asset an order on `side` locks while it works: a buy pays quote, a sell pays base.
    pub(crate) fn locked_asset(&self, side: Side) -> usize {
        match side {
            Side::Buy => self.quote,
            Side::Sell => self.base,
        }
    }
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
    /// The simulated history, once seeded (its record in snapshots; the rest regenerated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) history: Option<History>,
    /// Trade ids up to this one belong to the history: live trades are numbered after them.
    #[serde(default)]
    pub(crate) trade_id_base: u64,
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
            history: None,
            trade_id_base: 0,
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
            Command::SeedHistory(spec) => Outcome::HistorySeeded(self.seed_history(*spec, now)?),
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

    /// The live trade with id `id` (history trades are generated, not kept: see
    /// [`crate::history`]).
    pub(crate) fn trade(&self, id: u64) -> Option<&Trade> {
        id.checked_sub(1 + self.trade_id_base).and_then(|i| self.trades.get(i as usize))
    }

    /// The simulated history, once seeded.
    #[must_use]
    pub fn history(&self) -> Option<&History> {
        self.history.as_ref()
    }

    /// Whether any trade happened on this exchange (history aside).
    #[must_use]
    pub fn has_trades(&self) -> bool {
        !self.trades.is_empty()
    }

    /// The 5-minute average price used for MARKET notional checks: volume-weighted over the
    /// trades of the last five minutes, history included, else the last price.
    pub(crate) fn avg_price_units(&self, m: usize, now: UnixMillis) -> u64 {
        let agg = self.agg(m, now.0.saturating_sub(5 * 60_000), u64::MAX);
        match (agg.quote * UNIT).checked_div(agg.volume) {
            Some(avg) => u64::try_from(avg).unwrap_or(u64::MAX),
            None => self.last_price_units(m),
        }
    }

    /// Gives the exchange `spec.days` of history ending at the minute `now` is in.
    fn seed_history(&mut self, spec: HistorySpec, now: UnixMillis) -> Result<HistoryRecord, ExchangeError> {
        if self.history.is_some() {
            return Err(ExchangeError::Internal("the history is already seeded"));
        }
        if !self.trades.is_empty() {
            return Err(ExchangeError::Internal("history can only be seeded before the first trade"));
        }
        if spec.days > MAX_HISTORY_DAYS {
            return Err(ExchangeError::Internal("too many days of history"));
        }
        let end = now.0 - now.0 % MINUTE_MS;
        let days = spec.days.min(u32::try_from(end / (1440 * MINUTE_MS)).unwrap_or(u32::MAX));
        let markets = self
            .config
            .markets
            .iter()
            .zip(&self.markets)
            .map(|(spec, ms)| WalkParams::of(spec, ms.params.reference_price))
            .collect();
        let history = History::build(HistoryRecord { seed: spec.seed, days, end, markets });
        self.trade_id_base = history.trade_count();
        let record = history.record().clone();
        self.history = Some(history);
        Ok(record)
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
        self.ledger.unlock(account, p.locked_asset(side), locked)?;
        close_open(&mut self.accounts, &mut self.ledger, account, m, id, &cid);
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

/// Removes an order from its account's open sets, noting the account as changed.
fn close_open(
    accounts: &mut BTreeMap<AccountId, BTreeMap<u32, AccountMarket>>,
    ledger: &mut Ledger,
    account: AccountId,
    m: usize,
    id: u64,
    client_id: &str,
) {
    ledger.note_changed(account);
    if let Some(am) = accounts.get_mut(&account).and_then(|a| a.get_mut(&(m as u32))) {
        am.open.remove(&id);
        if am.open_client_ids.get(client_id) == Some(&id) {
            am.open_client_ids.remove(client_id);
        }
    }
}
