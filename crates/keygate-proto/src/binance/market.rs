//! Public market data: `exchangeInfo`, `depth`, `trades`, `historicalTrades`, `aggTrades`,
//! `klines`/`uiKlines`, the tickers and `avgPrice`.

use super::trading::{OrderType, StpMode};
use crate::{Amount, AssetCode, Symbol, UnixMillis};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

/// `GET /api/v3/exchangeInfo`; also the empty answer of the futures `exchangeInfo` ccxt asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeInfo {
    /// `UTC`.
    pub timezone: String,
    /// Server time.
    pub server_time: UnixMillis,
    /// The limits the server enforces (empty when they are off).
    pub rate_limits: Vec<RateLimit>,
    /// keygate's own field, absent from Binance's answers: who `rateLimits` count across.
    /// `NODE`: each keygate node counts its own requests and orders (one node, or several
    /// without shared counters, or while they do not answer); `CLUSTER`: every node sharing the
    /// counters counts together. Absent when limits are off. Clients that read Binance's answer
    /// skip fields they do not know, as the compatibility suite shows for CCXT and python-binance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limits_scope: Option<String>,
    /// Exchange-wide filters: none in the sandbox.
    pub exchange_filters: Vec<serde_json::Value>,
    /// The markets.
    pub symbols: Vec<SymbolInfo>,
}

/// One entry of `rateLimits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// `REQUEST_WEIGHT`, `ORDERS` or `RAW_REQUESTS`.
    pub rate_limit_type: String,
    /// `SECOND`, `MINUTE` or `DAY`.
    pub interval: String,
    /// How many intervals the window spans.
    pub interval_num: u32,
    /// The most the window allows.
    pub limit: u32,
}

/// One market in `exchangeInfo.symbols`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // Binance's shape: one flag per feature.
pub struct SymbolInfo {
    /// The market.
    pub symbol: Symbol,
    /// `TRADING`.
    pub status: String,
    /// The asset bought and sold.
    pub base_asset: AssetCode,
    /// Decimals of the base asset.
    pub base_asset_precision: u32,
    /// The asset prices are in.
    pub quote_asset: AssetCode,
    /// Decimals of the quote asset (Binance's older name, still sent).
    pub quote_precision: u32,
    /// Decimals of the quote asset.
    pub quote_asset_precision: u32,
    /// Decimals of commissions in the base asset.
    pub base_commission_precision: u32,
    /// Decimals of commissions in the quote asset.
    pub quote_commission_precision: u32,
    /// The order types the market takes.
    pub order_types: Vec<OrderType>,
    /// Always false.
    pub iceberg_allowed: bool,
    /// Always false.
    pub oco_allowed: bool,
    /// Always false.
    pub oto_allowed: bool,
    /// MARKET orders by `quoteOrderQty` are allowed.
    pub quote_order_qty_market_allowed: bool,
    /// Always false.
    pub allow_trailing_stop: bool,
    /// Always false.
    pub cancel_replace_allowed: bool,
    /// Always true.
    pub is_spot_trading_allowed: bool,
    /// Always false.
    pub is_margin_trading_allowed: bool,
    /// The market's filters.
    pub filters: Vec<SymbolFilter>,
    /// Always empty (Binance moved permissions to `permissionSets`).
    pub permissions: Vec<String>,
    /// `[["SPOT"]]`, or empty with `showPermissionSets=false`.
    pub permission_sets: Vec<Vec<String>>,
    /// The STP mode of orders that name none.
    pub default_self_trade_prevention_mode: StpMode,
    /// The STP modes orders may name.
    pub allowed_self_trade_prevention_modes: Vec<StpMode>,
}

/// A market filter, tagged by `filterType`: only the types the official SDK knows (an unknown one
/// makes it return a raw dict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "filterType")]
pub enum SymbolFilter {
    /// Price range and tick.
    #[serde(rename = "PRICE_FILTER", rename_all = "camelCase")]
    Price {
        /// Lowest price.
        min_price: Amount,
        /// Highest price.
        max_price: Amount,
        /// Prices are multiples of this.
        tick_size: Amount,
    },
    /// Quantity range and step of LIMIT orders.
    #[serde(rename = "LOT_SIZE", rename_all = "camelCase")]
    LotSize {
        /// Least quantity.
        min_qty: Amount,
        /// Most quantity.
        max_qty: Amount,
        /// Quantities are multiples of this.
        step_size: Amount,
    },
    /// Quantity range and step of MARKET orders.
    #[serde(rename = "MARKET_LOT_SIZE", rename_all = "camelCase")]
    MarketLotSize {
        /// Least quantity.
        min_qty: Amount,
        /// Most quantity.
        max_qty: Amount,
        /// Quantities are multiples of this.
        step_size: Amount,
    },
    /// Notional (price times quantity) range.
    #[serde(rename = "NOTIONAL", rename_all = "camelCase")]
    Notional {
        /// Least notional.
        min_notional: Amount,
        /// Whether MARKET orders are held to the minimum.
        apply_min_to_market: bool,
        /// Most notional.
        max_notional: Amount,
        /// Whether MARKET orders are held to the maximum.
        apply_max_to_market: bool,
        /// Minutes of the average price MARKET orders are checked against.
        avg_price_mins: u32,
    },
    /// Open orders an account may have on the market.
    #[serde(rename = "MAX_NUM_ORDERS", rename_all = "camelCase")]
    MaxNumOrders {
        /// The most open orders.
        max_num_orders: u32,
    },
}

/// `GET /api/v3/depth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Depth {
    /// Changes with every change of the book.
    pub last_update_id: u64,
    /// `[price, quantity]`, best (highest) first.
    pub bids: Vec<(Amount, Amount)>,
    /// `[price, quantity]`, best (lowest) first.
    pub asks: Vec<(Amount, Amount)>,
}

/// A public trade, as `GET /api/v3/trades` and `historicalTrades` return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
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

/// One row of `GET /api/v3/aggTrades`, in Binance's one-letter fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggTrade {
    /// `a`: aggregate id.
    #[serde(rename = "a")]
    pub id: u64,
    /// `p`: price.
    #[serde(rename = "p")]
    pub price: Amount,
    /// `q`: quantity.
    #[serde(rename = "q")]
    pub qty: Amount,
    /// `f`: first trade id.
    #[serde(rename = "f")]
    pub first_trade_id: u64,
    /// `l`: last trade id.
    #[serde(rename = "l")]
    pub last_trade_id: u64,
    /// `T`: time.
    #[serde(rename = "T")]
    pub time: UnixMillis,
    /// `m`: whether the buyer was the maker.
    #[serde(rename = "m")]
    pub is_buyer_maker: bool,
    /// `M`: always true.
    #[serde(rename = "M")]
    pub is_best_match: bool,
}

/// One candle of `GET /api/v3/klines` and `uiKlines`. On the wire it is an array: open time,
/// open, high, low, close, volume, close time, quote volume, trade count, taker buy base, taker
/// buy quote, and an unused `"0"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "KlineRow", from = "KlineRowIn")]
pub struct Kline {
    /// Start of the interval.
    pub open_time: UnixMillis,
    /// First price.
    pub open: Amount,
    /// Highest price.
    pub high: Amount,
    /// Lowest price.
    pub low: Amount,
    /// Last price.
    pub close: Amount,
    /// Base volume.
    pub volume: Amount,
    /// Last millisecond of the interval.
    pub close_time: UnixMillis,
    /// Quote volume.
    pub quote_volume: Amount,
    /// Number of trades.
    pub trades: u64,
    /// Base volume bought by takers.
    pub taker_buy_base: Amount,
    /// Quote volume bought by takers.
    pub taker_buy_quote: Amount,
}

/// A kline as written: Binance's array with the unused `"0"` last.
type KlineRow =
    (UnixMillis, Amount, Amount, Amount, Amount, Amount, UnixMillis, Amount, u64, Amount, Amount, &'static str);
/// A kline as read: the unused last element is skipped whatever it holds.
type KlineRowIn =
    (UnixMillis, Amount, Amount, Amount, Amount, Amount, UnixMillis, Amount, u64, Amount, Amount, IgnoredAny);

impl From<Kline> for KlineRow {
    fn from(k: Kline) -> Self {
        (
            k.open_time,
            k.open,
            k.high,
            k.low,
            k.close,
            k.volume,
            k.close_time,
            k.quote_volume,
            k.trades,
            k.taker_buy_base,
            k.taker_buy_quote,
            "0",
        )
    }
}

impl From<KlineRowIn> for Kline {
    fn from(r: KlineRowIn) -> Self {
        Self {
            open_time: r.0,
            open: r.1,
            high: r.2,
            low: r.3,
            close: r.4,
            volume: r.5,
            close_time: r.6,
            quote_volume: r.7,
            trades: r.8,
            taker_buy_base: r.9,
            taker_buy_quote: r.10,
        }
    }
}

/// `GET /api/v3/ticker/24hr`, `type=FULL` (the default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticker24hFull {
    /// The market.
    pub symbol: Symbol,
    /// Last price minus open price, signed (`-1.00000000`).
    pub price_change: String,
    /// The change in percent, signed, three decimals.
    pub price_change_percent: String,
    /// Volume-weighted average price.
    pub weighted_avg_price: Amount,
    /// Last price before the window.
    pub prev_close_price: Amount,
    /// Last price.
    pub last_price: Amount,
    /// Quantity of the last trade.
    pub last_qty: Amount,
    /// Best bid.
    pub bid_price: Amount,
    /// Quantity at the best bid.
    pub bid_qty: Amount,
    /// Best ask.
    pub ask_price: Amount,
    /// Quantity at the best ask.
    pub ask_qty: Amount,
    /// First price of the window.
    pub open_price: Amount,
    /// Highest price.
    pub high_price: Amount,
    /// Lowest price.
    pub low_price: Amount,
    /// Base volume.
    pub volume: Amount,
    /// Quote volume.
    pub quote_volume: Amount,
    /// Start of the window.
    pub open_time: UnixMillis,
    /// End of the window.
    pub close_time: UnixMillis,
    /// First trade id in the window, -1 when none.
    pub first_id: i64,
    /// Last trade id in the window, -1 when none.
    pub last_id: i64,
    /// Trades in the window.
    pub count: u64,
}

/// `GET /api/v3/ticker/24hr`, `type=MINI`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticker24hMini {
    /// The market.
    pub symbol: Symbol,
    /// First price of the window.
    pub open_price: Amount,
    /// Highest price.
    pub high_price: Amount,
    /// Lowest price.
    pub low_price: Amount,
    /// Last price.
    pub last_price: Amount,
    /// Base volume.
    pub volume: Amount,
    /// Quote volume.
    pub quote_volume: Amount,
    /// Start of the window.
    pub open_time: UnixMillis,
    /// End of the window.
    pub close_time: UnixMillis,
    /// First trade id in the window, -1 when none.
    pub first_id: i64,
    /// Last trade id in the window, -1 when none.
    pub last_id: i64,
    /// Trades in the window.
    pub count: u64,
}

/// `GET /api/v3/ticker` (rolling window statistics), `type=FULL` (the default): the 24-hour
/// ticker's fields without the previous close, the last quantity and the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TickerWindowFull {
    /// The market.
    pub symbol: Symbol,
    /// Last price minus open price, signed.
    pub price_change: String,
    /// The change in percent, signed, three decimals.
    pub price_change_percent: String,
    /// Volume-weighted average price.
    pub weighted_avg_price: Amount,
    /// First price of the window.
    pub open_price: Amount,
    /// Highest price.
    pub high_price: Amount,
    /// Lowest price.
    pub low_price: Amount,
    /// Last price.
    pub last_price: Amount,
    /// Base volume.
    pub volume: Amount,
    /// Quote volume.
    pub quote_volume: Amount,
    /// Start of the window.
    pub open_time: UnixMillis,
    /// End of the window.
    pub close_time: UnixMillis,
    /// First trade id in the window, -1 when none.
    pub first_id: i64,
    /// Last trade id in the window, -1 when none.
    pub last_id: i64,
    /// Trades in the window.
    pub count: u64,
}

/// A rolling-window ticker in either shape (`type=MINI` is the 24-hour ticker's MINI shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TickerWindow {
    /// `type=FULL` (the default).
    Full(Box<TickerWindowFull>),
    /// `type=MINI`.
    Mini(Box<Ticker24hMini>),
}

/// A 24-hour ticker in either shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ticker24h {
    /// `type=FULL` (the default; tried first when reading, a MINI lacks its fields).
    Full(Box<Ticker24hFull>),
    /// `type=MINI`.
    Mini(Box<Ticker24hMini>),
}

/// `GET /api/v3/ticker/bookTicker`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BookTicker {
    /// The market.
    pub symbol: Symbol,
    /// Best bid (zero when the side is empty).
    pub bid_price: Amount,
    /// Quantity at the best bid.
    pub bid_qty: Amount,
    /// Best ask (zero when the side is empty).
    pub ask_price: Amount,
    /// Quantity at the best ask.
    pub ask_qty: Amount,
}

/// `GET /api/v3/ticker/price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// The market.
    pub symbol: Symbol,
    /// Last price.
    pub price: Amount,
}

/// `GET /api/v3/avgPrice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvgPrice {
    /// Minutes the average covers.
    pub mins: u32,
    /// Volume-weighted average price.
    pub price: Amount,
    /// Time of the last trade counted.
    pub close_time: UnixMillis,
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

    #[test]
    fn exchange_info_has_binances_shape() {
        let info = ExchangeInfo {
            timezone: "UTC".to_owned(),
            server_time: UnixMillis(1_767_225_600_000),
            rate_limits: vec![RateLimit {
                rate_limit_type: "REQUEST_WEIGHT".to_owned(),
                interval: "MINUTE".to_owned(),
                interval_num: 1,
                limit: 6000,
            }],
            rate_limits_scope: Some("NODE".to_owned()),
            exchange_filters: Vec::new(),
            symbols: vec![SymbolInfo {
                symbol: btcusdt(),
                status: "TRADING".to_owned(),
                base_asset: AssetCode::parse("BTC").unwrap(),
                base_asset_precision: 8,
                quote_asset: AssetCode::parse("USDT").unwrap(),
                quote_precision: 8,
                quote_asset_precision: 8,
                base_commission_precision: 8,
                quote_commission_precision: 8,
                order_types: vec![OrderType::Limit, OrderType::LimitMaker, OrderType::Market],
                iceberg_allowed: false,
                oco_allowed: false,
                oto_allowed: false,
                quote_order_qty_market_allowed: true,
                allow_trailing_stop: false,
                cancel_replace_allowed: false,
                is_spot_trading_allowed: true,
                is_margin_trading_allowed: false,
                filters: vec![
                    SymbolFilter::Price {
                        min_price: amount("0.01"),
                        max_price: amount("1000000"),
                        tick_size: amount("0.01"),
                    },
                    SymbolFilter::LotSize {
                        min_qty: amount("0.00001"),
                        max_qty: amount("9000"),
                        step_size: amount("0.00001"),
                    },
                    SymbolFilter::MarketLotSize {
                        min_qty: Amount::ZERO,
                        max_qty: amount("100"),
                        step_size: amount("0.00001"),
                    },
                    SymbolFilter::Notional {
                        min_notional: amount("5"),
                        apply_min_to_market: true,
                        max_notional: amount("9000000"),
                        apply_max_to_market: false,
                        avg_price_mins: 5,
                    },
                    SymbolFilter::MaxNumOrders { max_num_orders: 200 },
                ],
                permissions: Vec::new(),
                permission_sets: vec![vec!["SPOT".to_owned()]],
                default_self_trade_prevention_mode: StpMode::ExpireMaker,
                allowed_self_trade_prevention_modes: vec![
                    StpMode::None,
                    StpMode::ExpireTaker,
                    StpMode::ExpireMaker,
                    StpMode::ExpireBoth,
                ],
            }],
        };
        round_trip(
            &info,
            r#"{"timezone":"UTC","serverTime":1767225600000,"rateLimits":[{"rateLimitType":"REQUEST_WEIGHT","interval":"MINUTE","intervalNum":1,"limit":6000}],"rateLimitsScope":"NODE","exchangeFilters":[],"symbols":[{"symbol":"BTCUSDT","status":"TRADING","baseAsset":"BTC","baseAssetPrecision":8,"quoteAsset":"USDT","quotePrecision":8,"quoteAssetPrecision":8,"baseCommissionPrecision":8,"quoteCommissionPrecision":8,"orderTypes":["LIMIT","LIMIT_MAKER","MARKET"],"icebergAllowed":false,"ocoAllowed":false,"otoAllowed":false,"quoteOrderQtyMarketAllowed":true,"allowTrailingStop":false,"cancelReplaceAllowed":false,"isSpotTradingAllowed":true,"isMarginTradingAllowed":false,"filters":[{"filterType":"PRICE_FILTER","minPrice":"0.01000000","maxPrice":"1000000.00000000","tickSize":"0.01000000"},{"filterType":"LOT_SIZE","minQty":"0.00001000","maxQty":"9000.00000000","stepSize":"0.00001000"},{"filterType":"MARKET_LOT_SIZE","minQty":"0.00000000","maxQty":"100.00000000","stepSize":"0.00001000"},{"filterType":"NOTIONAL","minNotional":"5.00000000","applyMinToMarket":true,"maxNotional":"9000000.00000000","applyMaxToMarket":false,"avgPriceMins":5},{"filterType":"MAX_NUM_ORDERS","maxNumOrders":200}],"permissions":[],"permissionSets":[["SPOT"]],"defaultSelfTradePreventionMode":"EXPIRE_MAKER","allowedSelfTradePreventionModes":["NONE","EXPIRE_TAKER","EXPIRE_MAKER","EXPIRE_BOTH"]}]}"#,
        );
        let empty = ExchangeInfo {
            timezone: "UTC".to_owned(),
            server_time: UnixMillis(1),
            rate_limits: Vec::new(),
            rate_limits_scope: None,
            exchange_filters: Vec::new(),
            symbols: Vec::new(),
        };
        round_trip(&empty, r#"{"timezone":"UTC","serverTime":1,"rateLimits":[],"exchangeFilters":[],"symbols":[]}"#);
    }

    #[test]
    fn book_and_trades_have_binances_shape() {
        let depth = Depth {
            last_update_id: 9,
            bids: vec![(amount("49000"), amount("0.1"))],
            asks: vec![(amount("51000"), amount("0.2")), (amount("52000"), amount("1"))],
        };
        round_trip(
            &depth,
            r#"{"lastUpdateId":9,"bids":[["49000.00000000","0.10000000"]],"asks":[["51000.00000000","0.20000000"],["52000.00000000","1.00000000"]]}"#,
        );
        let trade = Trade {
            id: 1,
            price: amount("50000"),
            qty: amount("0.5"),
            quote_qty: amount("25000"),
            time: UnixMillis(1_767_225_601_500),
            is_buyer_maker: false,
            is_best_match: true,
        };
        round_trip(
            &trade,
            r#"{"id":1,"price":"50000.00000000","qty":"0.50000000","quoteQty":"25000.00000000","time":1767225601500,"isBuyerMaker":false,"isBestMatch":true}"#,
        );
        let agg = AggTrade {
            id: 1,
            price: amount("50000"),
            qty: amount("0.5"),
            first_trade_id: 1,
            last_trade_id: 1,
            time: UnixMillis(1_767_225_601_500),
            is_buyer_maker: false,
            is_best_match: true,
        };
        round_trip(
            &agg,
            r#"{"a":1,"p":"50000.00000000","q":"0.50000000","f":1,"l":1,"T":1767225601500,"m":false,"M":true}"#,
        );
    }

    #[test]
    fn klines_are_arrays_ending_in_an_unused_zero() {
        let k = Kline {
            open_time: UnixMillis(1_767_225_600_000),
            open: amount("50000"),
            high: amount("51000"),
            low: amount("49000"),
            close: amount("50500"),
            volume: amount("1.5"),
            close_time: UnixMillis(1_767_225_659_999),
            quote_volume: amount("75000"),
            trades: 3,
            taker_buy_base: amount("1"),
            taker_buy_quote: amount("50000"),
        };
        round_trip(
            &k,
            r#"[1767225600000,"50000.00000000","51000.00000000","49000.00000000","50500.00000000","1.50000000",1767225659999,"75000.00000000",3,"1.00000000","50000.00000000","0"]"#,
        );
    }

    #[test]
    fn tickers_have_binances_full_mini_book_price_and_average_shapes() {
        let full = Ticker24h::Full(Box::new(Ticker24hFull {
            symbol: btcusdt(),
            price_change: "-1.00000000".to_owned(),
            price_change_percent: "-0.002".to_owned(),
            weighted_avg_price: amount("50000"),
            prev_close_price: amount("50001"),
            last_price: amount("50000"),
            last_qty: amount("0.1"),
            bid_price: amount("49999"),
            bid_qty: amount("1"),
            ask_price: amount("50001"),
            ask_qty: amount("2"),
            open_price: amount("50001"),
            high_price: amount("50001"),
            low_price: amount("50000"),
            volume: amount("0.6"),
            quote_volume: amount("30000"),
            open_time: UnixMillis(1),
            close_time: UnixMillis(2),
            first_id: 1,
            last_id: 2,
            count: 2,
        }));
        round_trip(
            &full,
            r#"{"symbol":"BTCUSDT","priceChange":"-1.00000000","priceChangePercent":"-0.002","weightedAvgPrice":"50000.00000000","prevClosePrice":"50001.00000000","lastPrice":"50000.00000000","lastQty":"0.10000000","bidPrice":"49999.00000000","bidQty":"1.00000000","askPrice":"50001.00000000","askQty":"2.00000000","openPrice":"50001.00000000","highPrice":"50001.00000000","lowPrice":"50000.00000000","volume":"0.60000000","quoteVolume":"30000.00000000","openTime":1,"closeTime":2,"firstId":1,"lastId":2,"count":2}"#,
        );
        let mini = Ticker24h::Mini(Box::new(Ticker24hMini {
            symbol: btcusdt(),
            open_price: Amount::ZERO,
            high_price: Amount::ZERO,
            low_price: Amount::ZERO,
            last_price: Amount::ZERO,
            volume: Amount::ZERO,
            quote_volume: Amount::ZERO,
            open_time: UnixMillis(1),
            close_time: UnixMillis(2),
            first_id: -1,
            last_id: -1,
            count: 0,
        }));
        round_trip(
            &mini,
            r#"{"symbol":"BTCUSDT","openPrice":"0.00000000","highPrice":"0.00000000","lowPrice":"0.00000000","lastPrice":"0.00000000","volume":"0.00000000","quoteVolume":"0.00000000","openTime":1,"closeTime":2,"firstId":-1,"lastId":-1,"count":0}"#,
        );
        let book = BookTicker {
            symbol: btcusdt(),
            bid_price: amount("49999"),
            bid_qty: amount("1"),
            ask_price: Amount::ZERO,
            ask_qty: Amount::ZERO,
        };
        round_trip(
            &book,
            r#"{"symbol":"BTCUSDT","bidPrice":"49999.00000000","bidQty":"1.00000000","askPrice":"0.00000000","askQty":"0.00000000"}"#,
        );
        round_trip(
            &Price { symbol: btcusdt(), price: amount("50000") },
            r#"{"symbol":"BTCUSDT","price":"50000.00000000"}"#,
        );
        round_trip(
            &AvgPrice { mins: 5, price: amount("50000"), close_time: UnixMillis(3) },
            r#"{"mins":5,"price":"50000.00000000","closeTime":3}"#,
        );
    }
}
