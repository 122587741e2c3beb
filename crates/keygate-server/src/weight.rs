//! Request weights, as Binance declares them per endpoint, and the per-IP weight counter behind
//! `X-MBX-USED-WEIGHT-1M`.
//!
//! The table is the single place an endpoint's weight is declared; the middleware here charges
//! it to the client address through [`crate::ratelimit::RateLimiter`], which decides 429/418.
//!
//! Weights that depend on parameters are read from the parameters as the handlers see them:
//! decoded by `keygate_auth`'s strict parser, from the query and, for signed requests, the body
//! too. The middleware runs before the body is read (a refused request does no work), so it
//! charges a provisional weight from the query; the signed-request extractor charges the
//! difference once query and body are parsed and verified ([`charge_rest`]). A query the parser
//! refuses is charged the endpoint's maximum weight.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use keygate_auth::Params;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// How an endpoint's weight is found: fixed, or from one of its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Always this weight.
    Fixed(u32),
    /// `depth`: by `limit`.
    Depth,
    /// The first weight with `symbol`, the second without (`ticker/price`, `openOrders`, ...).
    WithSymbol(u32, u32),
    /// `ticker/24hr`: by `symbol`, or how many `symbols`.
    Ticker24hr,
    /// `order/test`: 20 with `computeCommissionRates=true`, else 1.
    OrderTest,
}

/// The rule for `method path` (reference section 11); 1 for anything not listed.
fn rule(method: &Method, path: &str) -> Rule {
    match (method.as_str(), path) {
        ("GET", "/api/v3/exchangeInfo") => Rule::Fixed(20),
        ("GET", "/api/v3/depth") => Rule::Depth,
        ("GET", "/api/v3/trades") => Rule::Fixed(25),
        ("GET", "/api/v3/klines") => Rule::Fixed(2),
        ("GET", "/api/v3/ticker/price") | ("GET", "/api/v3/ticker/bookTicker") => Rule::WithSymbol(2, 4),
        ("GET", "/api/v3/ticker/24hr") => Rule::Ticker24hr,
        ("GET", "/api/v3/avgPrice") => Rule::Fixed(2),
        ("GET", "/api/v3/aggTrades") => Rule::Fixed(4),
        ("GET", "/api/v3/historicalTrades") => Rule::Fixed(25),
        ("GET", "/api/v3/uiKlines") => Rule::Fixed(2),
        ("GET", "/api/v3/account/commission") => Rule::Fixed(20),
        ("GET", "/api/v3/account") => Rule::Fixed(20),
        ("GET", "/api/v3/order") => Rule::Fixed(4),
        ("GET", "/api/v3/openOrders") => Rule::WithSymbol(6, 80),
        ("GET", "/api/v3/allOrders") | ("GET", "/api/v3/myTrades") => Rule::Fixed(20),
        ("POST", "/api/v3/order/test") => Rule::OrderTest,
        ("GET", "/sapi/v1/capital/config/getall") => Rule::Fixed(10),
        _ => Rule::Fixed(1),
    }
}

impl Rule {
    /// The most this endpoint can weigh, charged when its parameters cannot be parsed.
    const fn max(self) -> u32 {
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
            Self::OrderTest => 20,
        }
    }

    /// The weight with these (decoded) parameters.
    fn of(self, p: &Params) -> u32 {
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
            Self::OrderTest => {
                if p.get("computeCommissionRates").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                    20
                } else {
                    1
                }
            }
        }
    }

    /// Whether the weight depends on parameters at all (only then is the query parsed).
    const fn fixed(self) -> Option<u32> {
        match self {
            Self::Fixed(w) => Some(w),
            _ => None,
        }
    }
}

/// Binance's request weight of `method path` with the given (raw) query, per the endpoint table
/// (reference section 11); 1 for anything not listed. The query is decoded as the handlers decode
/// it; one the strict parser refuses is charged the endpoint's maximum.
#[must_use]
pub fn weight(method: &Method, path: &str, query: &str) -> u32 {
    let rule = rule(method, path);
    if let Some(w) = rule.fixed() {
        return w;
    }
    match Params::parse(query.as_bytes(), b"") {
        Ok(p) => rule.of(&p),
        Err(_) => rule.max(),
    }
}

/// The weight of `method path` with all its parameters (query and body) already parsed.
#[must_use]
pub fn weight_of_params(method: &Method, path: &str, params: &Params) -> u32 {
    rule(method, path).of(params)
}

/// What the middleware charged a request, left in its extensions for [`charge_rest`]: the client
/// address, the weight and when, and the usage reported back in the headers (updated when more
/// is charged).
#[derive(Debug, Clone)]
pub struct Charged(Arc<Mutex<ChargedInner>>);

#[derive(Debug)]
struct ChargedInner {
    ip: IpAddr,
    weight: u32,
    usage: crate::ratelimit::Usage,
}

/// Charges what a verified request weighs beyond what the middleware charged from its query
/// alone (a body parameter such as `order/test`'s `computeCommissionRates=true`). Nothing to do
/// when limits are off or the middleware did not charge the request.
///
/// # Errors
/// The refusal (429/418) when the extra weight takes the address over a limit.
pub fn charge_rest(
    state: &crate::AppState,
    charged: Option<&Charged>,
    method: &Method,
    path: &str,
    params: &Params,
    now_ms: u64,
) -> Result<(), crate::ratelimit::Refusal> {
    let Some(charged) = charged else { return Ok(()) };
    let full = weight_of_params(method, path, params);
    let mut c = charged.0.lock().unwrap_or_else(PoisonError::into_inner);
    let extra = full.saturating_sub(c.weight);
    if extra == 0 {
        return Ok(());
    }
    let (usage, verdict) = state.limiter.charge_more(c.ip, extra, now_ms);
    c.weight = full;
    if !usage.is_empty() {
        c.usage = usage;
    }
    verdict
}

/// The key weight is counted under: the address, or its /64 for IPv6 (one host usually owns a
/// whole /64, so counting single IPv6 addresses would let it multiply its limit).
#[must_use]
pub fn counting_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

/// Middleware: charges the request's weight to its client address before anything else is done
/// with it, refuses it (429, or 418 when banned) when the address is over a limit, and reports the
/// weight used in `X-MBX-USED-WEIGHT-1M` (and the legacy `X-MBX-USED-WEIGHT`) on every response,
/// with `X-MBX-ORDER-COUNT-*` on order responses. With rate limits off it does nothing.
pub async fn layer(State(state): State<crate::AppState>, mut req: Request, next: Next) -> Response {
    let limiter = &state.limiter;
    if !limiter.config().enabled || crate::ratelimit::exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let w = weight(req.method(), req.uri().path(), req.uri().query().unwrap_or(""));
    let now = state.service.clock().now().as_millis().0;
    // A request whose client address cannot be read is refused later (-1002) by whatever needs
    // the address; it is not counted under a made-up one.
    let (charged, verdict) = match crate::extract::request_client_ip(&req, &state) {
        Some(ip) => {
            let (usage, verdict) = limiter.admit(ip, w, now);
            (Some(Charged(Arc::new(Mutex::new(ChargedInner { ip, weight: w, usage })))), verdict)
        }
        None => (None, Ok(())),
    };
    if let Some(c) = &charged {
        req.extensions_mut().insert(c.clone());
    }
    let orders = crate::ratelimit::OrderCountSlot::default();
    req.extensions_mut().insert(orders.clone());
    let mut res = match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => crate::ApiError::RateLimited(refusal).into_response(),
    };
    let failed = !res.status().is_success();
    let usage = charged.map(|c| std::mem::take(&mut c.0.lock().unwrap_or_else(PoisonError::into_inner).usage));
    let h = res.headers_mut();
    for (i, (suffix, used)) in usage.iter().flatten().enumerate() {
        let name = format!("x-mbx-used-weight-{}", suffix.to_ascii_lowercase());
        if let (Ok(name), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(used.to_string())) {
            if i == 0 {
                h.insert("x-mbx-used-weight", v.clone());
            }
            h.insert(name, v);
        }
    }
    match orders.get() {
        // Refused after it was counted: not placed, so not counted (and no count headers, which
        // Binance does not promise on rejected orders either).
        Some(o) if o.counted && failed => limiter.refund_order(o.account, o.at_ms),
        Some(o) => {
            for (suffix, count) in &o.usage {
                let name = format!("x-mbx-order-count-{}", suffix.to_ascii_lowercase());
                if let (Ok(name), Ok(v)) = (HeaderName::try_from(name), HeaderValue::try_from(count.to_string())) {
                    h.insert(name, v);
                }
            }
        }
        None => {}
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(weight_of_params(&Method::POST, "/api/v3/order/test", &p), 20);
    }

    #[test]
    fn ipv6_addresses_count_per_64() {
        let a = counting_key("2001:db8::1".parse().unwrap());
        assert_eq!(a, counting_key("2001:db8::ffff:1".parse().unwrap()));
        assert_ne!(a, counting_key("2001:db8:0:1::1".parse().unwrap()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(counting_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }
}
