//! `X-Request-Id` on every response: a random 128-bit id, or the caller's own if well-formed.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The header name.
pub const HEADER: &str = "x-request-id";

fn fresh() -> String {
    let mut b = [0u8; 16];
    // Without randomness, an all-zero id still identifies nothing secret; never fail a request.
    let _ = getrandom::getrandom(&mut b);
    hex::encode(b)
}

/// Middleware: assigns the id, exposes it to handlers as an extension, and sets it on the response.
pub async fn layer(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|s| (8..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map_or_else(fresh, str::to_owned);
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HEADER, v);
    }
    res
}

/// The request's id, for log lines.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);
