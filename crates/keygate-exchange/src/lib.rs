//! The sandbox exchange behind keygate's API keys: pure domain logic, wire-compatible with
//! Binance Spot.
//!
//! No I/O, no clock, no randomness: every mutating call goes through [`Exchange::apply`] with the
//! caller's `now`, so that the server can journal [`Command`]s and replay them after a restart into
//! exactly the same state. Amounts are [`keygate_proto::Amount`] (integer 1e-8 units).

pub mod book;
pub mod config;
pub mod error;
pub mod exchange;
pub mod history;
mod ids;
pub mod ledger;
pub mod market_maker;
pub mod order;
pub mod query;
pub mod wallet;

pub use config::{AssetSpec, ConfigError, ExchangeConfig, MarketSpec, NetworkSpec};
pub use error::ExchangeError;
pub use exchange::{CanceledOrder, Command, Exchange, NewOrder, OpenOrderIds, OrderBoard, Outcome, PlacedOrder};
pub use history::{DEFAULT_HISTORY_DAYS, History, HistoryRecord, HistorySpec, MAX_HISTORY_DAYS};
pub use ledger::{AssetReport, Balance, ChangedAccounts, InvariantViolation, Ledger};
pub use market_maker::{MarketMaker, MarketMakerConfig};
pub use order::{
    Fill, MyTrade, Order, OrderRef, OrderStatus, OrderType, PublicTrade, Side, StpMode, TimeInForce, Trade,
};
pub use query::{
    AvgPrice, BalanceView, BookTicker, Depth, HistoryQuery, Kline, KlineInterval, OrderQuery, Ticker24h, TradeQuery,
};
pub use wallet::{Deposit, DepositAddress, DepositRecord, Withdraw, WithdrawPolicy, WithdrawalRecord};
