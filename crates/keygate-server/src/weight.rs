//! Request weights, as Binance declares them per endpoint, and the per-IP weight counter behind
//! `X-MBX-USED-WEIGHT-1M`.
//!
//! The table is the single place an endpoint's weight is declared; the middleware here charges
//! it to the client address through [`crate::ratelimit::RateLimiter`], which decides 429/418.

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use std::net::IpAddr;

/// Binance's request weight of `method path` with the given query, per the endpoint table
/// (reference section 11); 1 for anything not listed.
#[must_use]
pub fn weight(method: &Method, path: &str, query: &str) -> u32 {
    let has = |name: &str| query.split('&').any(|p| p.split('=').next() == Some(name));
    let value = |name: &str| {
        query.split('&').find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('='))).unwrap_or("")
    };
    let symbols_count = || value("symbols").matches("%22").count().max(value("symbols").matches('"').count()) / 2;
    match (method.as_str(), path) {
        ("GET", "/api/v3/exchangeInfo") => 20,
        ("GET", "/api/v3/depth") => match value("limit").parse::<u32>().unwrap_or(100) {
            0..=100 => 5,
            101..=500 => 25,
            501..=1000 => 50,
            _ => 250,
        },
        ("GET", "/api/v3/trades") => 25,
        ("GET", "/api/v3/klines") => 2,
        ("GET", "/api/v3/ticker/price") | ("GET", "/api/v3/ticker/bookTicker") => {
            if has("symbol") {
                2
            } else {
                4
            }
        }
        ("GET", "/api/v3/ticker/24hr") => {
            if has("symbol") {
                2
            } else if has("symbols") {
                match symbols_count() {
                    0..=20 => 2,
                    21..=100 => 40,
                    _ => 80,
                }
            } else {
                80
            }
        }
        ("GET", "/api/v3/avgPrice") => 2,
        ("GET", "/api/v3/aggTrades") => 4,
        ("GET", "/api/v3/historicalTrades") => 25,
        ("GET", "/api/v3/uiKlines") => 2,
        ("GET", "/api/v3/account/commission") => 20,
        ("GET", "/api/v3/account") => 20,
        ("GET", "/api/v3/order") => 4,
        ("GET", "/api/v3/openOrders") => {
            if has("symbol") {
                6
            } else {
                80
            }
        }
        ("GET", "/api/v3/allOrders") | ("GET", "/api/v3/myTrades") => 20,
        ("POST", "/api/v3/order/test") if value("computeCommissionRates") == "true" => 20,
        ("GET", "/sapi/v1/capital/config/getall") => 10,
        _ => 1,
    }
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
    let (usage, verdict) = match crate::extract::request_client_ip(&req, &state) {
        Some(ip) => limiter.admit(ip, w, now),
        None => (Vec::new(), Ok(())),
    };
    let orders = crate::ratelimit::OrderCountSlot::default();
    req.extensions_mut().insert(orders.clone());
    let mut res = match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => crate::ApiError::RateLimited(refusal).into_response(),
    };
    let failed = !res.status().is_success();
    let h = res.headers_mut();
    for (i, (suffix, used)) in usage.iter().enumerate() {
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
    fn ipv6_addresses_count_per_64() {
        let a = counting_key("2001:db8::1".parse().unwrap());
        assert_eq!(a, counting_key("2001:db8::ffff:1".parse().unwrap()));
        assert_ne!(a, counting_key("2001:db8:0:1::1".parse().unwrap()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(counting_key("::ffff:192.0.2.7".parse().unwrap()), v4);
    }
}
