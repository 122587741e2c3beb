//! Orders and trades: `POST/GET/DELETE /api/v3/order`, `order/test`, `openOrders`, `allOrders`
//! and `myTrades`, with Binance's enum spellings.
//!
//! The enums are the exchange engine's vocabulary too (it re-exports them), so an order's status
//! is spelt in exactly one place.

use super::account::Discount;
use super::general::EmptyObject;
use crate::{Amount, AssetCode, Symbol, UnixMillis};
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

/// `POST /api/v3/order`: the ACK fields, plus the order after matching for RESULT and FULL, plus
/// the fills for FULL (`newOrderRespType` chooses; the fields keep Binance's order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewOrderResponse {
    /// The market.
    pub symbol: Symbol,
    /// The exchange's id of the order.
    pub order_id: u64,
    /// Always -1: the sandbox has no order lists.
    pub order_list_id: i64,
    /// The client's id, echoed or generated.
    pub client_order_id: String,
    /// When the order was placed.
    pub transact_time: UnixMillis,
    /// The order after matching: RESULT and FULL only.
    #[serde(flatten)]
    pub result: Option<OrderResult>,
    /// The fills, in execution order: FULL only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fills: Option<Vec<Fill>>,
}

/// What a RESULT or FULL answer adds to ACK: the order after matching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderResult {
    /// Limit price; zero for MARKET.
    pub price: Amount,
    /// Requested quantity.
    pub orig_qty: Amount,
    /// Quantity filled.
    pub executed_qty: Amount,
    /// Requested quote amount of a MARKET order by `quoteOrderQty`, else zero.
    pub orig_quote_order_qty: Amount,
    /// Quote amount filled (Binance's spelling).
    pub cummulative_quote_qty: Amount,
    /// Status after matching.
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Order type.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// When the order started working.
    pub working_time: UnixMillis,
    /// The self-trade prevention mode in force.
    pub self_trade_prevention_mode: StpMode,
}

/// One entry of a FULL answer's `fills`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fill {
    /// Trade price (the maker's).
    pub price: Amount,
    /// Quantity.
    pub qty: Amount,
    /// Commission charged to the taker.
    pub commission: Amount,
    /// The asset the commission was taken in.
    pub commission_asset: AssetCode,
    /// The trade's id.
    pub trade_id: u64,
}

/// An order as `GET /api/v3/order`, `openOrders` and `allOrders` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// The market.
    pub symbol: Symbol,
    /// The exchange's id.
    pub order_id: u64,
    /// Always -1.
    pub order_list_id: i64,
    /// The client's id.
    pub client_order_id: String,
    /// Limit price; zero for MARKET.
    pub price: Amount,
    /// Requested quantity.
    pub orig_qty: Amount,
    /// Quantity filled.
    pub executed_qty: Amount,
    /// Quote amount filled (Binance's spelling).
    pub cummulative_quote_qty: Amount,
    /// Current status.
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Order type.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// Always zero: no stop orders.
    pub stop_price: Amount,
    /// Always zero: no iceberg orders.
    pub iceberg_qty: Amount,
    /// Creation time.
    pub time: UnixMillis,
    /// Last change.
    pub update_time: UnixMillis,
    /// Whether the order works in the book (true for every non-stop order).
    pub is_working: bool,
    /// When the order started working.
    pub working_time: UnixMillis,
    /// Requested quote amount of a MARKET order by `quoteOrderQty`, else zero.
    pub orig_quote_order_qty: Amount,
    /// The self-trade prevention mode in force.
    pub self_trade_prevention_mode: StpMode,
}

/// A canceled order, as `DELETE /api/v3/order` returns it and `DELETE /api/v3/openOrders` lists
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanceledOrder {
    /// The market.
    pub symbol: Symbol,
    /// The order's own client id.
    pub orig_client_order_id: String,
    /// The exchange's id.
    pub order_id: u64,
    /// Always -1.
    pub order_list_id: i64,
    /// The cancel request's client id (`newClientOrderId`, or generated).
    pub client_order_id: String,
    /// When the order was canceled.
    pub transact_time: UnixMillis,
    /// Limit price; zero for MARKET.
    pub price: Amount,
    /// Requested quantity.
    pub orig_qty: Amount,
    /// Quantity filled before the cancel.
    pub executed_qty: Amount,
    /// Requested quote amount of a MARKET order by `quoteOrderQty`, else zero.
    pub orig_quote_order_qty: Amount,
    /// Quote amount filled (Binance's spelling).
    pub cummulative_quote_qty: Amount,
    /// `CANCELED`.
    pub status: OrderStatus,
    /// Time in force.
    pub time_in_force: TimeInForce,
    /// Order type.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Side.
    pub side: Side,
    /// The self-trade prevention mode in force.
    pub self_trade_prevention_mode: StpMode,
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

/// `POST /api/v3/order/test`: `{}`, or the commission the order would pay with
/// `computeCommissionRates=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TestOrderResponse {
    /// `computeCommissionRates=true` (tried first when reading: `{}` is not one).
    Commissions(TestOrderCommissions),
    /// `{}`.
    Empty(EmptyObject),
}

/// The commission rates a test order would pay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestOrderCommissions {
    /// The market's maker and taker rates.
    pub standard_commission_for_order: MakerTaker,
    /// Always zero: the sandbox charges no tax.
    pub tax_commission_for_order: MakerTaker,
    /// The BNB discount (none in the sandbox).
    pub discount: Discount,
}

/// A maker/taker pair of commission rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MakerTaker {
    /// Rate charged to the resting side.
    pub maker: Amount,
    /// Rate charged to the taking side.
    pub taker: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::golden::round_trip;

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    fn btcusdt() -> Symbol {
        Symbol::parse("BTCUSDT").unwrap()
    }

    fn result() -> OrderResult {
        OrderResult {
            price: amount("50000"),
            orig_qty: amount("0.5"),
            executed_qty: amount("0.5"),
            orig_quote_order_qty: Amount::ZERO,
            cummulative_quote_qty: amount("25000"),
            status: OrderStatus::Filled,
            time_in_force: TimeInForce::Gtc,
            order_type: OrderType::Limit,
            side: Side::Sell,
            working_time: UnixMillis(1_767_225_600_000),
            self_trade_prevention_mode: StpMode::ExpireMaker,
        }
    }

    #[test]
    fn new_order_answers_have_binances_ack_result_and_full_shapes() {
        let mut order = NewOrderResponse {
            symbol: btcusdt(),
            order_id: 1,
            order_list_id: -1,
            client_order_id: "alice-1".to_owned(),
            transact_time: UnixMillis(1_767_225_600_000),
            result: None,
            fills: None,
        };
        let ack = r#"{"symbol":"BTCUSDT","orderId":1,"orderListId":-1,"clientOrderId":"alice-1","transactTime":1767225600000}"#;
        round_trip(&order, ack);
        order.result = Some(result());
        let result_json = r#"{"symbol":"BTCUSDT","orderId":1,"orderListId":-1,"clientOrderId":"alice-1","transactTime":1767225600000,"price":"50000.00000000","origQty":"0.50000000","executedQty":"0.50000000","origQuoteOrderQty":"0.00000000","cummulativeQuoteQty":"25000.00000000","status":"FILLED","timeInForce":"GTC","type":"LIMIT","side":"SELL","workingTime":1767225600000,"selfTradePreventionMode":"EXPIRE_MAKER"}"#;
        round_trip(&order, result_json);
        order.fills = Some(vec![Fill {
            price: amount("50000"),
            qty: amount("0.5"),
            commission: amount("25"),
            commission_asset: AssetCode::parse("USDT").unwrap(),
            trade_id: 7,
        }]);
        let full = r#"{"symbol":"BTCUSDT","orderId":1,"orderListId":-1,"clientOrderId":"alice-1","transactTime":1767225600000,"price":"50000.00000000","origQty":"0.50000000","executedQty":"0.50000000","origQuoteOrderQty":"0.00000000","cummulativeQuoteQty":"25000.00000000","status":"FILLED","timeInForce":"GTC","type":"LIMIT","side":"SELL","workingTime":1767225600000,"selfTradePreventionMode":"EXPIRE_MAKER","fills":[{"price":"50000.00000000","qty":"0.50000000","commission":"25.00000000","commissionAsset":"USDT","tradeId":7}]}"#;
        round_trip(&order, full);
        // FULL with no fills yet (a resting order) still has the empty list.
        order.fills = Some(Vec::new());
        round_trip(&order, &full.replace(r#"[{"price":"50000.00000000","qty":"0.50000000","commission":"25.00000000","commissionAsset":"USDT","tradeId":7}]"#, "[]"));
    }

    #[test]
    fn orders_keep_binances_field_order_and_misspelling() {
        let order = Order {
            symbol: btcusdt(),
            order_id: 2,
            order_list_id: -1,
            client_order_id: "x-1".to_owned(),
            price: amount("51000"),
            orig_qty: amount("0.5"),
            executed_qty: amount("0.1"),
            cummulative_quote_qty: amount("5100"),
            status: OrderStatus::PartiallyFilled,
            time_in_force: TimeInForce::Ioc,
            order_type: OrderType::LimitMaker,
            side: Side::Buy,
            stop_price: Amount::ZERO,
            iceberg_qty: Amount::ZERO,
            time: UnixMillis(1),
            update_time: UnixMillis(2),
            is_working: true,
            working_time: UnixMillis(1),
            orig_quote_order_qty: Amount::ZERO,
            self_trade_prevention_mode: StpMode::None,
        };
        round_trip(
            &order,
            r#"{"symbol":"BTCUSDT","orderId":2,"orderListId":-1,"clientOrderId":"x-1","price":"51000.00000000","origQty":"0.50000000","executedQty":"0.10000000","cummulativeQuoteQty":"5100.00000000","status":"PARTIALLY_FILLED","timeInForce":"IOC","type":"LIMIT_MAKER","side":"BUY","stopPrice":"0.00000000","icebergQty":"0.00000000","time":1,"updateTime":2,"isWorking":true,"workingTime":1,"origQuoteOrderQty":"0.00000000","selfTradePreventionMode":"NONE"}"#,
        );
    }

    #[test]
    fn canceled_orders_name_both_client_ids() {
        let c = CanceledOrder {
            symbol: btcusdt(),
            orig_client_order_id: "alice-1".to_owned(),
            order_id: 2,
            order_list_id: -1,
            client_order_id: "c1".to_owned(),
            transact_time: UnixMillis(3),
            price: amount("51000"),
            orig_qty: amount("0.5"),
            executed_qty: Amount::ZERO,
            orig_quote_order_qty: Amount::ZERO,
            cummulative_quote_qty: Amount::ZERO,
            status: OrderStatus::Canceled,
            time_in_force: TimeInForce::Gtc,
            order_type: OrderType::Limit,
            side: Side::Sell,
            self_trade_prevention_mode: StpMode::ExpireMaker,
        };
        round_trip(
            &c,
            r#"{"symbol":"BTCUSDT","origClientOrderId":"alice-1","orderId":2,"orderListId":-1,"clientOrderId":"c1","transactTime":3,"price":"51000.00000000","origQty":"0.50000000","executedQty":"0.00000000","origQuoteOrderQty":"0.00000000","cummulativeQuoteQty":"0.00000000","status":"CANCELED","timeInForce":"GTC","type":"LIMIT","side":"SELL","selfTradePreventionMode":"EXPIRE_MAKER"}"#,
        );
    }

    #[test]
    fn my_trades_have_binances_shape() {
        let t = MyTrade {
            symbol: btcusdt(),
            id: 1,
            order_id: 1,
            order_list_id: -1,
            price: amount("50000"),
            qty: amount("0.5"),
            quote_qty: amount("25000"),
            commission: amount("25"),
            commission_asset: AssetCode::parse("USDT").unwrap(),
            time: UnixMillis(1_767_225_601_500),
            is_buyer: false,
            is_maker: true,
            is_best_match: true,
        };
        round_trip(
            &t,
            r#"{"symbol":"BTCUSDT","id":1,"orderId":1,"orderListId":-1,"price":"50000.00000000","qty":"0.50000000","quoteQty":"25000.00000000","commission":"25.00000000","commissionAsset":"USDT","time":1767225601500,"isBuyer":false,"isMaker":true,"isBestMatch":true}"#,
        );
    }

    #[test]
    fn test_orders_answer_an_empty_object_or_the_commissions() {
        round_trip(&TestOrderResponse::Empty(EmptyObject {}), "{}");
        let rates = TestOrderResponse::Commissions(TestOrderCommissions {
            standard_commission_for_order: MakerTaker { maker: amount("0.001"), taker: amount("0.001") },
            tax_commission_for_order: MakerTaker { maker: Amount::ZERO, taker: Amount::ZERO },
            discount: Discount::none(),
        });
        round_trip(
            &rates,
            r#"{"standardCommissionForOrder":{"maker":"0.00100000","taker":"0.00100000"},"taxCommissionForOrder":{"maker":"0.00000000","taker":"0.00000000"},"discount":{"enabledForAccount":false,"enabledForSymbol":false,"discountAsset":"BNB","discount":"0.00000000"}}"#,
        );
    }

    #[test]
    fn enums_use_binances_spelling_both_ways() {
        for s in [OrderStatus::New, OrderStatus::PartiallyFilled, OrderStatus::ExpiredInMatch] {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        assert!(OrderStatus::PartiallyFilled.is_open() && !OrderStatus::Filled.is_open());
        assert_eq!(OrderType::parse("STOP_LOSS"), None);
        assert_eq!(Side::parse("buy"), None);
    }
}
