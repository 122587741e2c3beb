//! Request weights, as Binance declares them per endpoint, and the per-IP weight counter behind
//! `X-MBX-USED-WEIGHT-1M`.
//!
//! The table is the single place an endpoint's weight is declared; the rate limiter (429/418)
//! builds on the same counter.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

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

/// Most addresses tracked at once; older minutes are dropped first when it is reached.
const MAX_TRACKED: usize = 100_000;

/// Weight used per address in the current minute.
#[derive(Debug, Default)]
pub struct WeightCounter {
    used: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl WeightCounter {
    /// Adds `weight` for `ip` in the minute of `now_ms` and returns the minute's total.
    pub fn add(&self, ip: IpAddr, weight: u32, now_ms: u64) -> u32 {
        let minute = now_ms / 60_000;
        let mut used = self.used.lock().unwrap_or_else(PoisonError::into_inner);
        if used.len() >= MAX_TRACKED {
            used.retain(|_, (m, _)| *m == minute);
        }
        let entry = used.entry(counting_key(ip)).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        entry.1 = entry.1.saturating_add(weight);
        entry.1
    }
}

/// Middleware: counts the request's weight for its client address and reports the minute's total
/// in `X-MBX-USED-WEIGHT-1M` (and the legacy `X-MBX-USED-WEIGHT`) on every response.
pub async fn layer(State(state): State<crate::AppState>, req: Request, next: Next) -> Response {
    let w = weight(req.method(), req.uri().path(), req.uri().query().unwrap_or(""));
    let ip = crate::extract::request_client_ip(&req, &state);
    let now = state.service.clock().now().as_millis().0;
    let total = ip.map(|ip| state.weights.add(ip, w, now));
    let mut res = next.run(req).await;
    if let Some(total) = total
        && let Ok(v) = HeaderValue::from_str(&total.to_string())
    {
        res.headers_mut().insert("x-mbx-used-weight-1m", v.clone());
        res.headers_mut().insert("x-mbx-used-weight", v);
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
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_minutes_reset() {
        let c = WeightCounter::default();
        assert_eq!(c.add("2001:db8::1".parse().unwrap(), 5, 0), 5);
        assert_eq!(c.add("2001:db8::ffff".parse().unwrap(), 5, 1_000), 10);
        assert_eq!(c.add("2001:db8:0:1::1".parse().unwrap(), 5, 1_000), 5);
        assert_eq!(c.add("2001:db8::1".parse().unwrap(), 1, 60_000), 1);
    }
}
