//! Orders, fills and trades, with Binance's field names and enum spellings.

use keygate_proto::{AccountId, Amount, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};

// The wire enums are Binance's vocabulary, defined once in the proto crate (the server writes
// them in its answers, the client reads them); the engine uses them as they are, and answers
// trade queries in the wire shapes too.
pub use keygate_proto::binance::market::Trade as PublicTrade;
pub use keygate_proto::binance::trading::{Fill, MyTrade, OrderStatus, OrderType, Side, StpMode, TimeInForce};

/// One order, as Binance's order objects describe it, plus the owner and the funds it still locks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The market.
    pub symbol: Symbol,
    /// Sequential per exchange, starting at 1.
    pub order_id: u64,
    /// Always -1 (no order lists in the sandbox).
    pub order_list_id: i64,
    /// The client's id (echoed) or a generated 22-character one.
    pub client_order_id: String,
    /// Owner.
    pub account: AccountId,
    /// Limit price; zero for MARKET.
    pub price: Amount,
    /// Requested quantity; for MARKET by `quoteOrderQty`, zero while it matches and the executed
    /// quantity once it ended (as Binance reports it).
    pub orig_qty: Amount,
    /// Quantity filled so far.
    pub executed_qty: Amount,
    /// Quote amount filled so far (Binance's spelling).
    pub cummulative_quote_qty: Amount,
    /// Requested quote amount for MARKET by `quoteOrderQty`, else zero.
    pub orig_quote_order_qty: Amount,
    /// Current status.
    pub status: OrderStatus,
    /// Time in force (GTC for MARKET and LIMIT_MAKER, as Binance reports).
    pub time_in_force: TimeInForce,
    /// Order type.
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// Always zero (no stop orders).
    pub stop_price: Amount,
    /// Always zero (no iceberg orders).
    pub iceberg_qty: Amount,
    /// Creation time (= transactTime).
    pub time: UnixMillis,
    /// Last change.
    pub update_time: UnixMillis,
    /// Whether the order is working in the book (true for all non-stop orders).
    pub is_working: bool,
    /// When the order started working.
    pub working_time: UnixMillis,
    /// The STP mode in force for this order.
    pub self_trade_prevention_mode: StpMode,
    /// Funds this order still holds locked (quote for BUY, base for SELL); zero once it ended.
    pub locked: Amount,
    /// Index of the market in the config.
    pub(crate) market: u32,
}

impl Order {
    /// Quantity still to fill (zero for quote-driven MARKET orders, which never rest).
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.orig_qty.units().saturating_sub(self.executed_qty.units())
    }
}

/// A trade as the exchange records it (both sides).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    /// Sequential per exchange, starting at 1.
    pub id: u64,
    /// The market.
    pub symbol: Symbol,
    /// Price (the maker's).
    pub price: Amount,
    /// Base quantity.
    pub qty: Amount,
    /// `price * qty`.
    pub quote_qty: Amount,
    /// When it happened.
    pub time: UnixMillis,
    /// The buying order.
    pub buyer_order_id: u64,
    /// The selling order.
    pub seller_order_id: u64,
    /// The buying account.
    pub buyer: AccountId,
    /// The selling account.
    pub seller: AccountId,
    /// Base commission taken from the buyer.
    pub buyer_commission: Amount,
    /// Quote commission taken from the seller.
    pub seller_commission: Amount,
    /// Whether the buyer was the resting order.
    pub is_buyer_maker: bool,
    pub(crate) market: u32,
}

/// Reference to an order by the exchange's id or the client's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRef {
    /// `orderId`.
    Id(u64),
    /// `origClientOrderId`.
    ClientId(String),
}
