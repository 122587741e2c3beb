//! The endpoint table: every Binance route keygate serves, with its method, path, security type
//! and request weight, in one place (reference section 11).
//!
//! Everything else reads it: the front serves its rows (`routes::table` pairs each
//! [`Route`] with its handler in one exhaustive `match`), the weight middleware charges the row's
//! [`Weight`], and the signed-request runner verifies with the row's [`Security`] and counts the
//! order when the row says so. A path and its weight sit in the same row, so a typo in one cannot
//! leave the other behind: a misspelt path is a route at the misspelt path, not an endpoint
//! silently weighing 1.
//!
//! This module depends on no other module of the server: it is data and pure functions.

use axum::http::Method;
use keygate_auth::{Access, Params};

/// Binance's security types (reference section 1.4), as keygate enforces them. Binance's
/// `USER_STREAM` (listen keys) and `MARKET_DATA` (no longer used by Spot) have no variant: keygate
/// serves no route of either type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// `NONE`: public; `X-MBX-APIKEY` is ignored, an empty one included.
    Public,
    /// `USER_DATA`: signed; any key (every key can read).
    UserData,
    /// `TRADE`: signed; the trade permission, and each signature used once.
    Trade,
    /// Withdrawals, which Binance lists as `USER_DATA` but serves only to keys with withdrawals
    /// enabled and an IP restriction: the withdraw permission, and each signature used once.
    Withdraw,
}

impl Security {
    /// What a signed route demands of a key; `None` for a public route.
    #[must_use]
    pub const fn access(self) -> Option<Access> {
        match self {
            Self::Public => None,
            Self::UserData => Some(Access::USER_DATA),
            Self::Trade => Some(Access::TRADE),
            Self::Withdraw => Some(Access::WITHDRAW),
        }
    }

    /// The name Binance's documentation gives it.
    #[must_use]
    pub const fn binance_name(self) -> &'static str {
        match self {
            Self::Public => "NONE",
            Self::UserData | Self::Withdraw => "USER_DATA",
            Self::Trade => "TRADE",
        }
    }
}

/// How an endpoint's request weight is found: fixed, or from one of its parameters as the handler
/// decodes it (reference section 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Always this weight.
    Fixed(u32),
    /// `depth`: by `limit` (5, 25, 50, 250).
    Depth,
    /// The first weight with `symbol`, the second without (`ticker/price`, `openOrders`, ...).
    WithSymbol(u32, u32),
    /// `ticker/24hr`: by `symbol`, or how many `symbols`.
    Ticker24hr,
    /// `ticker` (rolling window): 4 a symbol, at most 200.
    TickerWindow,
    /// `order/test`: 20 with `computeCommissionRates=true`, else 1.
    OrderTest,
}

impl Weight {
    /// What a request no row describes weighs: an unknown path, or a method its path does not
    /// serve (both answered with an error, and counted like any request).
    pub const UNLISTED: Self = Self::Fixed(1);

    /// The weight when it does not depend on parameters (then the query is never parsed for it).
    #[must_use]
    pub const fn fixed(self) -> Option<u32> {
        match self {
            Self::Fixed(w) => Some(w),
            _ => None,
        }
    }

    /// The most this endpoint can weigh, charged when its parameters cannot be parsed.
    #[must_use]
    pub const fn max(self) -> u32 {
        match self {
            Self::Fixed(w) => w,
            Self::Depth => 250,
            Self::WithSymbol(with, without) => {
                if with > without {
                    with
                } else {
                    without
                }
            }
            Self::Ticker24hr => 80,
            Self::TickerWindow => 200,
            Self::OrderTest => 20,
        }
    }

    /// The weight with these (decoded) parameters.
    #[must_use]
    pub fn of(self, p: &Params) -> u32 {
        let has = |name: &str| p.get(name).is_some();
        match self {
            Self::Fixed(w) => w,
            // The handler refuses a limit that is not a u32 (-1100/-1108): charged as the most.
            Self::Depth => match p.get("limit").map(str::parse::<u32>) {
                None => 5,
                Some(Ok(0..=100)) => 5,
                Some(Ok(101..=500)) => 25,
                Some(Ok(501..=1000)) => 50,
                Some(_) => 250,
            },
            Self::WithSymbol(with, without) => {
                if has("symbol") {
                    with
                } else {
                    without
                }
            }
            Self::Ticker24hr => {
                if has("symbol") {
                    2
                } else if let Some(list) = p.get("symbols") {
                    // A JSON list of strings: every element has two unescaped quotes, so half
                    // the quotes is at least the number of symbols.
                    match list.matches('"').count() / 2 {
                        0..=20 => 2,
                        21..=100 => 40,
                        _ => 80,
                    }
                } else {
                    80
                }
            }
            Self::TickerWindow => match p.get("symbols") {
                // As for ticker/24hr: half the quotes is at least the number of symbols.
                Some(list) if p.get("symbol").is_none() => {
                    u32::try_from(list.matches('"').count() / 2).unwrap_or(u32::MAX).clamp(1, 50) * 4
                }
                _ => 4,
            },
            Self::OrderTest => {
                if p.get("computeCommissionRates").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                    20
                } else {
                    1
                }
            }
        }
    }

    /// The weight with the given raw query alone, decoded as the handlers decode it; a query the
    /// strict parser refuses is charged the most.
    #[must_use]
    pub fn of_query(self, query: &str) -> u32 {
        if let Some(w) = self.fixed() {
            return w;
        }
        match Params::parse(query.as_bytes(), b"") {
            Ok(p) => self.of(&p),
            Err(_) => self.max(),
        }
    }
}

/// One row of the table.
#[derive(Debug)]
pub struct Endpoint {
    /// The HTTP method.
    pub method: Method,
    /// The path, exactly as routed.
    pub path: &'static str,
    /// Who may call it.
    pub security: Security,
    /// What one request weighs.
    pub weight: Weight,
    /// Whether a verified request counts against its account's `ORDERS` limits (a new order;
    /// `order/test` never reaches the matching engine and does not).
    pub counts_as_order: bool,
}

/// Declares [`Route`] and its rows from one list, so a route cannot exist without its row.
macro_rules! endpoint_table {
    ($(
        $(#[doc = $doc:literal])*
        $route:ident => $method:ident $path:literal, $security:ident, $weight:expr $(, $orders:ident)?;
    )*) => {
        /// A Binance route keygate serves: one row of the endpoint table ([`Route::spec`]).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Route {
            $($(#[doc = $doc])* $route,)*
        }

        impl Route {
            /// Every route, in table order: the rows of one path are adjacent, so the router
            /// builds each path once, with all its methods.
            pub const ALL: &'static [Self] = &[$(Self::$route),*];
        }

        /// The rows, in the order of [`Route`]'s variants (a variant's discriminant is its index).
        static TABLE: &[Endpoint] = &[$(
            Endpoint {
                method: Method::$method,
                path: $path,
                security: Security::$security,
                weight: $weight,
                counts_as_order: endpoint_table!(@orders $($orders)?),
            },
        )*];
    };
    (@orders) => { false };
    (@orders counts_as_order) => { true };
}

endpoint_table! {
    // General (NONE; the key's own restrictions are USER_DATA).
    /// `GET /api/v3/ping`.
    Ping => GET "/api/v3/ping", Public, Weight::Fixed(1);
    /// `GET /api/v3/time`.
    Time => GET "/api/v3/time", Public, Weight::Fixed(1);
    /// `GET /sapi/v1/system/status`.
    SystemStatus => GET "/sapi/v1/system/status", Public, Weight::Fixed(1);
    /// `GET /sapi/v1/account/apiRestrictions`.
    ApiRestrictions => GET "/sapi/v1/account/apiRestrictions", UserData, Weight::Fixed(1);
    // Market data (NONE).
    /// `GET /api/v3/exchangeInfo`.
    ExchangeInfo => GET "/api/v3/exchangeInfo", Public, Weight::Fixed(20);
    /// `GET /api/v3/depth`.
    Depth => GET "/api/v3/depth", Public, Weight::Depth;
    /// `GET /api/v3/trades`.
    Trades => GET "/api/v3/trades", Public, Weight::Fixed(25);
    /// `GET /api/v3/aggTrades`.
    AggTrades => GET "/api/v3/aggTrades", Public, Weight::Fixed(4);
    /// `GET /api/v3/historicalTrades` (once `MARKET_DATA`; public since 2023).
    HistoricalTrades => GET "/api/v3/historicalTrades", Public, Weight::Fixed(25);
    /// `GET /api/v3/klines`.
    Klines => GET "/api/v3/klines", Public, Weight::Fixed(2);
    /// `GET /api/v3/uiKlines`.
    UiKlines => GET "/api/v3/uiKlines", Public, Weight::Fixed(2);
    /// `GET /api/v3/ticker/price`.
    TickerPrice => GET "/api/v3/ticker/price", Public, Weight::WithSymbol(2, 4);
    /// `GET /api/v3/ticker/24hr`.
    Ticker24hr => GET "/api/v3/ticker/24hr", Public, Weight::Ticker24hr;
    /// `GET /api/v3/ticker/bookTicker`.
    BookTicker => GET "/api/v3/ticker/bookTicker", Public, Weight::WithSymbol(2, 4);
    /// `GET /api/v3/ticker` (rolling window price change statistics).
    TickerWindow => GET "/api/v3/ticker", Public, Weight::TickerWindow;
    /// `GET /api/v3/avgPrice`.
    AvgPrice => GET "/api/v3/avgPrice", Public, Weight::Fixed(2);
    // Spot account and orders (USER_DATA reads, TRADE writes).
    /// `GET /api/v3/account`.
    Account => GET "/api/v3/account", UserData, Weight::Fixed(20);
    /// `GET /api/v3/account/commission`.
    AccountCommission => GET "/api/v3/account/commission", UserData, Weight::Fixed(20);
    /// `GET /api/v3/order`.
    QueryOrder => GET "/api/v3/order", UserData, Weight::Fixed(4);
    /// `POST /api/v3/order`: the one route that counts against `ORDERS`.
    NewOrder => POST "/api/v3/order", Trade, Weight::Fixed(1), counts_as_order;
    /// `DELETE /api/v3/order`.
    CancelOrder => DELETE "/api/v3/order", Trade, Weight::Fixed(1);
    /// `POST /api/v3/order/test`.
    TestOrder => POST "/api/v3/order/test", Trade, Weight::OrderTest;
    /// `GET /api/v3/openOrders`.
    OpenOrders => GET "/api/v3/openOrders", UserData, Weight::WithSymbol(6, 80);
    /// `DELETE /api/v3/openOrders`.
    CancelOpenOrders => DELETE "/api/v3/openOrders", Trade, Weight::Fixed(1);
    /// `GET /api/v3/allOrders`.
    AllOrders => GET "/api/v3/allOrders", UserData, Weight::Fixed(20);
    /// `GET /api/v3/myTrades`.
    MyTrades => GET "/api/v3/myTrades", UserData, Weight::Fixed(20);
    // Wallet (USER_DATA reads; withdrawals need the withdraw permission).
    /// `GET /sapi/v1/capital/config/getall`.
    AllCoins => GET "/sapi/v1/capital/config/getall", UserData, Weight::Fixed(10);
    /// `GET /sapi/v1/capital/deposit/hisrec`.
    DepositHistory => GET "/sapi/v1/capital/deposit/hisrec", UserData, Weight::Fixed(1);
    /// `GET /sapi/v1/capital/deposit/address`.
    DepositAddress => GET "/sapi/v1/capital/deposit/address", UserData, Weight::Fixed(1);
    /// `GET /sapi/v1/capital/withdraw/history`.
    WithdrawHistory => GET "/sapi/v1/capital/withdraw/history", UserData, Weight::Fixed(1);
    /// `POST /sapi/v1/capital/withdraw/apply`.
    Withdraw => POST "/sapi/v1/capital/withdraw/apply", Withdraw, Weight::Fixed(1);
    /// `GET /sapi/v1/asset/tradeFee`.
    TradeFee => GET "/sapi/v1/asset/tradeFee", UserData, Weight::Fixed(1);
    // What ccxt's default `load_markets()` asks for (reference G1): empty answers.
    /// `GET /fapi/v1/exchangeInfo`.
    FuturesExchangeInfo => GET "/fapi/v1/exchangeInfo", Public, Weight::Fixed(1);
    /// `GET /dapi/v1/exchangeInfo`.
    DeliveryExchangeInfo => GET "/dapi/v1/exchangeInfo", Public, Weight::Fixed(1);
    /// `GET /sapi/v1/margin/allPairs`.
    MarginPairs => GET "/sapi/v1/margin/allPairs", UserData, Weight::Fixed(1);
    /// `GET /sapi/v1/margin/isolated/allPairs`.
    IsolatedMarginPairs => GET "/sapi/v1/margin/isolated/allPairs", UserData, Weight::Fixed(1);
}

impl Route {
    /// The route's row.
    #[must_use]
    pub fn spec(self) -> &'static Endpoint {
        &TABLE[self as usize]
    }

    /// The routes of one path, in table order (a path's rows are adjacent).
    pub fn by_path() -> impl Iterator<Item = &'static [Self]> {
        Self::ALL.chunk_by(|a, b| a.spec().path == b.spec().path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route serving `method path`, as a client names it.
    fn find(method: &Method, path: &str) -> Option<Route> {
        Route::ALL.iter().copied().find(|r| r.spec().method == method && r.spec().path == path)
    }

    fn weight(method: &Method, path: &str, query: &str) -> u32 {
        find(method, path).map_or(Weight::UNLISTED, |r| r.spec().weight).of_query(query)
    }

    #[test]
    fn every_variant_is_its_own_row() {
        assert_eq!(Route::ALL.len(), TABLE.len());
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
            assert_eq!(find(&r.spec().method, r.spec().path), Some(*r), "{r:?} is listed twice");
        }
    }

    #[test]
    fn a_paths_rows_are_adjacent_so_it_is_routed_once() {
        let paths: Vec<&str> = Route::by_path().map(|rows| rows[0].spec().path).collect();
        let mut unique = paths.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(paths.len(), unique.len(), "a path's rows are split: {paths:?}");
    }

    #[test]
    fn only_new_orders_count_as_orders_and_only_signed_routes_verify() {
        let orders: Vec<Route> = Route::ALL.iter().copied().filter(|r| r.spec().counts_as_order).collect();
        assert_eq!(orders, vec![Route::NewOrder]);
        assert_eq!(Route::Depth.spec().security.access(), None);
        assert_eq!(Route::NewOrder.spec().security.access(), Some(Access::TRADE));
        assert_eq!(Route::Withdraw.spec().security.binance_name(), "USER_DATA");
    }

    #[test]
    fn weights_follow_binance_table_including_parameter_dependent_ones() {
        assert_eq!(weight(&Method::GET, "/api/v3/ping", ""), 1);
        assert_eq!(weight(&Method::GET, "/api/v3/depth", "symbol=BTCUSDT"), 5);
        assert_eq!(weight(&Method::GET, "/api/v3/depth", "symbol=BTCUSDT&limit=1000"), 50);
        assert_eq!(weight(&Method::GET, "/api/v3/openOrders", "timestamp=1"), 80);
        assert_eq!(weight(&Method::GET, "/api/v3/openOrders", "symbol=X&timestamp=1"), 6);
        assert_eq!(weight(&Method::GET, "/api/v3/ticker/24hr", ""), 80);
        assert_eq!(weight(&Method::GET, "/api/v3/ticker/24hr", "symbols=%5B%22A%22,%22B%22%5D"), 2);
        assert_eq!(weight(&Method::POST, "/api/v3/order", ""), 1);
        assert_eq!(weight(&Method::GET, "/api/v3/account", ""), 20);
        assert_eq!(weight(&Method::GET, "/api/v3/aggTrades", "symbol=BTCUSDT"), 4);
        assert_eq!(weight(&Method::GET, "/api/v3/historicalTrades", "symbol=BTCUSDT"), 25);
        assert_eq!(weight(&Method::GET, "/api/v3/uiKlines", "symbol=BTCUSDT&interval=1m"), 2);
        assert_eq!(weight(&Method::GET, "/api/v3/account/commission", "symbol=BTCUSDT"), 20);
    }

    #[test]
    fn weights_read_decoded_parameters_as_the_handlers_do() {
        let depth = |q: &str| weight(&Method::GET, "/api/v3/depth", q);
        assert_eq!(depth("symbol=BTCUSDT&limit=5000"), 250);
        // The reviewer's cases: an encoded name or value is what the handler reads.
        assert_eq!(depth("symbol=BTCUSDT&lim%69t=5000"), 250);
        assert_eq!(depth("symbol=BTCUSDT&limit=%35000"), 250);
        assert_eq!(depth("symbol=BTCUSDT&limit=%35%30%30"), 25);
        // Refused by the handler, charged as the most: unparseable queries and limits.
        assert_eq!(depth("symbol=BTCUSDT&limit=5&limit=6"), 250);
        assert_eq!(depth("symbol=BTCUSDT&limit=%zz"), 250);
        assert_eq!(depth("symbol=BTCUSDT&limit=99999999999"), 250);
        assert_eq!(depth("symbol=BTCUSDT&&limit=5"), 250);
        // Raw and encoded quotes mixed still count every symbol (30 of them: 40).
        let list: Vec<String> =
            (0..30).map(|i| if i % 2 == 0 { format!("\"S{i}\"") } else { format!("%22S{i}%22") }).collect();
        let q = format!("symbols=%5B{}%5D", list.join(","));
        assert_eq!(weight(&Method::GET, "/api/v3/ticker/24hr", &q), 40);
        assert_eq!(weight(&Method::GET, "/api/v3/ticker/24hr", "symbols=%5B%22A%22%5D&symbols=x"), 80);
        // An encoded name in the query, and the values the handler takes as true.
        let test = |q: &str| weight(&Method::POST, "/api/v3/order/test", q);
        assert_eq!(test("compute%43ommissionRates=true&timestamp=1"), 20);
        assert_eq!(test("computeCommissionRates=TRUE"), 20);
        assert_eq!(test("computeCommissionRates=false"), 1);
        assert_eq!(test("timestamp=1&signature=x"), 1);
        assert_eq!(weight(&Method::GET, "/api/v3/openOrders", "sym%62ol=X&timestamp=1"), 6);
        // Body parameters count once the whole request is parsed.
        let p = Params::parse(b"timestamp=1", b"computeCommissionRates=true&signature=x").unwrap();
        assert_eq!(Route::TestOrder.spec().weight.of(&p), 20);
    }
}
