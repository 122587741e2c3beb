//! Orders, fills and trades, with Binance's field names and enum spellings.

use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Binance's spelling on the wire.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            /// Parses Binance's spelling (exact, upper case), `None` for anything else.
            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Which side of the book an order takes.
    Side { /// Buys base with quote.
        Buy => "BUY", /// Sells base for quote.
        Sell => "SELL" }
);

wire_enum!(
    /// The order types the sandbox supports (others answer Binance's error at the HTTP layer).
    OrderType { /// Price-limited; rests per time in force.
        Limit => "LIMIT", /// Trades against the book now, never rests.
        Market => "MARKET", /// Rests only; refused if it would trade on arrival.
        LimitMaker => "LIMIT_MAKER" }
);

wire_enum!(
    /// How long a LIMIT order stays working.
    TimeInForce { /// Good till canceled.
        Gtc => "GTC", /// Immediate or cancel: whatever does not fill at once expires.
        Ioc => "IOC", /// Fill or kill: fills completely at once or expires untouched.
        Fok => "FOK" }
);

wire_enum!(
    /// Binance's order statuses (the subset a spot sandbox without stops can produce).
    OrderStatus { /// Working, nothing filled.
        New => "NEW", /// Working, partly filled.
        PartiallyFilled => "PARTIALLY_FILLED", /// Completely filled.
        Filled => "FILLED", /// Canceled by its owner.
        Canceled => "CANCELED", /// Refused by the engine (not produced: refusals are errors).
        Rejected => "REJECTED", /// Ended by its time in force or lack of liquidity.
        Expired => "EXPIRED", /// Ended by self-trade prevention.
        ExpiredInMatch => "EXPIRED_IN_MATCH" }
);

wire_enum!(
    /// Self-trade prevention: what happens when an account's order would trade with its own.
    StpMode { /// Let the self-trade happen.
        None => "NONE", /// Expire the incoming order.
        ExpireTaker => "EXPIRE_TAKER", /// Expire the resting order (the default).
        ExpireMaker => "EXPIRE_MAKER", /// Expire both.
        ExpireBoth => "EXPIRE_BOTH" }
);

impl OrderStatus {
    /// Whether the order is still working (in the book).
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::New | Self::PartiallyFilled)
    }
}

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

/// One fill of a newly placed order, as in the FULL response's `fills[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Trade price (the maker's).
    pub price: Amount,
    /// Quantity.
    pub qty: Amount,
    /// Commission charged to the taker.
    pub commission: Amount,
    /// The asset the commission was taken in (the one the taker received).
    pub commission_asset: AssetCode,
    /// The trade's id.
    pub trade_id: u64,
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

/// One account's view of a trade, as `GET /api/v3/myTrades` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MyTrade {
    /// The market.
    pub symbol: Symbol,
    /// Trade id.
    pub id: u64,
    /// This account's order.
    pub order_id: u64,
    /// Always -1.
    pub order_list_id: i64,
    /// Price.
    pub price: Amount,
    /// Quantity.
    pub qty: Amount,
    /// Quote quantity.
    pub quote_qty: Amount,
    /// Commission paid by this account.
    pub commission: Amount,
    /// Asset of the commission.
    pub commission_asset: AssetCode,
    /// Time.
    pub time: UnixMillis,
    /// Whether this account bought.
    pub is_buyer: bool,
    /// Whether this account's order was resting.
    pub is_maker: bool,
    /// Always true.
    pub is_best_match: bool,
}

/// A trade as the public `GET /api/v3/trades` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicTrade {
    /// Trade id.
    pub id: u64,
    /// Price.
    pub price: Amount,
    /// Quantity.
    pub qty: Amount,
    /// Quote quantity.
    pub quote_qty: Amount,
    /// Time.
    pub time: UnixMillis,
    /// Whether the buyer was the maker.
    pub is_buyer_maker: bool,
    /// Always true.
    pub is_best_match: bool,
}

/// Reference to an order by the exchange's id or the client's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderRef {
    /// `orderId`.
    Id(u64),
    /// `origClientOrderId`.
    ClientId(String),
}
