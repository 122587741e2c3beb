//! The access log: one `tracing` event per answered request, target [`TARGET`].
//!
//! Fields: `request_id`, `method`, `path` (the route's template; never the query string, which
//! carries signatures and signed payloads, and of an unknown path only what cannot hold them, see
//! `LoggedPath`), `status`, `latency_us`, and when present `key` (the `X-MBX-APIKEY` header,
//! only if it is a well-formed key id: a secret pasted into the header by mistake does not pass
//! the checksum and is never written), `code` (the Binance error code) and `reason` (a stable
//! word such as `KEY_REVOKED`). Reasons are fixed strings chosen by whoever refused, never a
//! message built from request data, so nothing a client sent reaches the line except its path.
//! The specific reason is logged even when the client was not told it (before the signature
//! verified): the log is the operator's, and DESIGN.md keeps the reason from the caller only.
//!
//! It is the router's outermost layer, and also gives every answer its `X-Request-Id` (see
//! [`crate::request_id`]) and applies `X-MBX-TIME-UNIT` (see `routes::time_unit`), so it sees every answer, refusals by the rate limiter included, and
//! costs one event and no allocation.
//! Filter it like any target: `RUST_LOG=info,keygate::access=off` silences it.

use crate::AppState;
use crate::error::InternalCause;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::middleware::Next;
use axum::response::Response;
use keygate_auth::keyfmt::KEY_LEN;
use keygate_service::Stopwatch;

/// The `tracing` target of access lines.
pub const TARGET: &str = "keygate::access";

/// Why a request was refused, in words that are safe for a log line: put in the response's
/// extensions by whoever refuses, read by the access log.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// The Binance error code answered.
    pub code: i32,
    /// A fixed, machine-readable word (`SIGNATURE_INVALID`, `RATE_LIMITED`, ...).
    pub reason: &'static str,
}

const X_MBX_APIKEY: HeaderName = HeaderName::from_static("x-mbx-apikey");

/// The request's key id, copied (no allocation) when the header holds a well-formed one.
fn key_id(req: &Request) -> Option<[u8; KEY_LEN]> {
    let v = req.headers().get(X_MBX_APIKEY)?.as_bytes();
    keygate_auth::ApiKeyId::check(v).ok()?;
    v.try_into().ok()
}

/// The `path` of an access line: a known route's template (`/api/console/v1/keys/{id}`), else what
/// can be shown of an unknown path without risk. A path is whatever the client put before the
/// first `?`, so an unknown one may hold a whole signed query (`/api/v3/order%3Fsymbol=...&signature=...`,
/// or after a `;`) or a secret (`/kgs_...`). Only its leading `[A-Za-z0-9/_.-]` characters are
/// written, every segment longer than [`UNKNOWN_SEGMENT_MAX`] (as every key id, secret and
/// signature is) as `*`, at most [`UNKNOWN_PATH_MAX`] bytes, and `...` where it was cut.
struct LoggedPath<'a>(Option<&'a str>, &'a str);

/// Most bytes of an unknown path an access line shows.
const UNKNOWN_PATH_MAX: usize = 64;

/// Longest segment of an unknown path shown as it is.
const UNKNOWN_SEGMENT_MAX: usize = 24;

impl std::fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(template) = self.0 {
            return f.write_str(template);
        }
        let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-');
        let raw = self.1;
        let end = raw.bytes().position(|b| !safe(b)).unwrap_or(raw.len());
        // Only ASCII before `end`, so the slice is on a character boundary.
        let mut written = 0;
        for (i, segment) in raw.get(..end).unwrap_or("").split('/').enumerate() {
            let shown = if segment.len() > UNKNOWN_SEGMENT_MAX { "*" } else { segment };
            written += usize::from(i > 0) + shown.len();
            if written > UNKNOWN_PATH_MAX {
                return f.write_str("...");
            }
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(shown)?;
        }
        if end < raw.len() {
            f.write_str("...")?;
        }
        Ok(())
    }
}

/// Middleware: answers the request, then logs it once and counts it in the metrics.
pub async fn layer(axum::extract::State(state): axum::extract::State<AppState>, req: Request, next: Next) -> Response {
    let watch = Stopwatch::start();
    let method = req.method().clone();
    // A clone of the URI shares its bytes; the path is read from it after the answer.
    let uri = req.uri().clone();
    let endpoint = req.extensions().get::<MatchedPath>().cloned();
    let key = key_id(&req);
    let id = state.request_ids.for_request(req.headers());
    // X-MBX-TIME-UNIT is handled here too: one layer fewer on every request's path.
    let mut res = match crate::routes::time_unit::requested(&req) {
        Ok(None) => next.run(req).await,
        Ok(Some(klines)) => crate::routes::time_unit::in_micros(next.run(req).await, klines).await,
        Err(refused) => axum::response::IntoResponse::into_response(refused),
    };
    res.headers_mut().insert(crate::request_id::HEADER, id.clone());
    let took = watch.elapsed();
    let status = res.status().as_u16();
    if let Some(m) = &state.metrics {
        m.record_request(
            endpoint.as_ref().map_or(crate::metrics::UNMATCHED, MatchedPath::as_str),
            &method,
            status,
            took,
        );
    }
    let request_id = id.to_str().unwrap_or("");
    let (code, reason) = match (res.extensions().get::<Refused>(), res.extensions().get::<keygate_console::Refused>()) {
        (Some(r), _) => (Some(r.code), Some(r.reason)),
        (None, Some(r)) => (None, Some(r.0)),
        (None, None) => (None, None),
    };
    let key = key.as_ref().and_then(|k| std::str::from_utf8(k).ok());
    let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    // Display, not Debug: the text format then shows `path=/api/v3/ping`, unquoted (a path,
    // request id, method, key id or reason holds no space or control character to escape).
    let shown = tracing::field::display;
    tracing::info!(
        target: TARGET,
        request_id = %request_id,
        method = %method.as_str(),
        path = %LoggedPath(endpoint.as_ref().map(MatchedPath::as_str), uri.path()),
        status,
        latency_us,
        key = key.map(shown),
        code,
        reason = reason.map(shown),
        "answered"
    );
    if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
        // The cause of a 500 is logged once, here, and never sent to the client.
        tracing::error!(request_id, status, %cause, "request failed");
    }
    res
}
