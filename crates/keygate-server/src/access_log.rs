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
//! It stands outermost in front of every answer: the front ([`crate::front`]) logs the endpoint
//! table's paths with [`logged`], and the router's outermost layer ([`AccessLogLayer`]) logs the
//! rest. It also gives every answer its `X-Request-Id` (see [`crate::request_id`]) and applies
//! `X-MBX-TIME-UNIT` (see `routes::time_unit`), so it sees every answer, refusals by the rate
//! limiter included, and costs one event and no allocation.
//! Filter it like any target: `RUST_LOG=info,keygate::access=off` silences it.

use crate::AppState;
use crate::access_line::StackLine;
use crate::answer::Answer;
use crate::error::InternalCause;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::response::Response;
use keygate_auth::keyfmt::KEY_LEN;
use keygate_service::Stopwatch;
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

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

/// The `path` of an access line for an unknown path (a known route's is its template,
/// `/api/console/v1/keys/{id}`): what can be shown of it without risk. A path is whatever the client put before the
/// first `?`, so an unknown one may hold a whole signed query (`/api/v3/order%3Fsymbol=...&signature=...`,
/// or after a `;`) or a secret (`/kgs_...`). Only its leading `[A-Za-z0-9/_.-]` characters are
/// written, every segment longer than [`UNKNOWN_SEGMENT_MAX`] (as every key id, secret and
/// signature is) as `*`, at most [`UNKNOWN_PATH_MAX`] bytes, and `...` where it was cut.
struct LoggedPath<'a>(&'a str);

/// Most bytes of an unknown path an access line shows.
const UNKNOWN_PATH_MAX: usize = 64;

/// Longest request method shown whole.
const METHOD_MAX: usize = 16;

/// Longest segment of an unknown path shown as it is.
const UNKNOWN_SEGMENT_MAX: usize = 24;

impl std::fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let safe = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-');
        let raw = self.0;
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

/// The layer that writes the access log, applied to every route and fallback of the router by
/// `routes::router` (so each request has its route's [`MatchedPath`] here); the endpoint table's
/// paths are logged by the front.
///
/// Written out as a tower layer rather than `axum::middleware::from_fn`: that one clones the
/// state and the inner service and boxes a future on every request, on every endpoint's path;
/// this one forwards to the inner service and wraps its future in place.
#[derive(Debug, Clone)]
pub struct AccessLogLayer {
    state: AppState,
}

impl AccessLogLayer {
    /// Logs with `state`'s request ids and metrics.
    #[must_use]
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        AccessLog { inner, state: self.state.clone() }
    }
}

/// The service of [`AccessLogLayer`].
#[derive(Debug, Clone)]
pub struct AccessLog<S> {
    inner: S,
    state: AppState,
}

/// What an access line shows as the request's `path`.
enum Shown {
    /// A path of the endpoint table, as the front found it.
    Template(&'static str),
    /// The template of the route the router matched.
    Matched(MatchedPath),
    /// The URI (a reference count, not a copy) of a request no route matched: its path is
    /// shown sanitized.
    Unmatched(Uri),
}

impl Shown {
    /// The route's template, if a route matched.
    fn template(&self) -> Option<&str> {
        match self {
            Self::Template(t) => Some(t),
            Self::Matched(m) => Some(m.as_str()),
            Self::Unmatched(_) => None,
        }
    }
}

/// What the access line needs of the request, taken before the request is handed on.
struct Pending {
    watch: Stopwatch,
    method: Method,
    shown: Shown,
    key: Option<[u8; KEY_LEN]>,
    id: HeaderValue,
    state: AppState,
}

impl<S> Service<Request> for AccessLog<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = AccessLogFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let inner = &mut self.inner;
        logged(&self.state, req, None, |req| inner.call(req))
    }
}

/// Answers `req` by `call` and logs it: the core of [`AccessLog`], also used by
/// [`crate::front::Front`], which answers the endpoint table's paths without the router and
/// knows their `template` (else the router's [`MatchedPath`] is shown, or the sanitized path).
pub(crate) fn logged<F>(
    state: &AppState,
    req: Request,
    template: Option<&'static str>,
    call: impl FnOnce(Request) -> F,
) -> AccessLogFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    let watch = Stopwatch::start();
    let shown = match template {
        Some(t) => Shown::Template(t),
        None => match req.extensions().get::<MatchedPath>() {
            Some(m) => Shown::Matched(m.clone()),
            None => Shown::Unmatched(req.uri().clone()),
        },
    };
    let pending = Pending {
        watch,
        method: req.method().clone(),
        shown,
        key: key_id(&req),
        id: state.request_ids.for_request(req.headers()),
        state: state.clone(),
    };
    // X-MBX-TIME-UNIT is handled here too: one layer fewer on every request's path.
    let answer = match crate::routes::time_unit::requested(&req) {
        Ok(None) => Answer::Inner { fut: call(req) },
        Ok(Some(klines)) => {
            let fut = call(req);
            Answer::Boxed {
                fut: Box::pin(async move {
                    let Ok(res) = fut.await;
                    crate::routes::time_unit::in_micros(res, klines).await
                }),
            }
        }
        // On the endpoint table's paths the refusal comes after the weight is charged, like any
        // other refusal of a Binance request (the path answers it, see `front::PathService`): a
        // client cannot send requests past its limits by sending a bad unit with them.
        Err(_) if template.is_some() => {
            let mut req = req;
            req.extensions_mut().insert(crate::routes::time_unit::BadUnit);
            Answer::Inner { fut: call(req) }
        }
        Err(refused) => Answer::Ready { res: Some(axum::response::IntoResponse::into_response(refused)) },
    };
    AccessLogFuture { answer, pending: Some(pending) }
}

pin_project! {
    /// The answer of [`AccessLog`]: the inner answer, logged when it is ready.
    pub struct AccessLogFuture<F> {
        #[pin]
        answer: Answer<F>,
        pending: Option<Pending>,
    }
}

impl<F> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.answer.poll(cx));
        Poll::Ready(Ok(match this.pending.take() {
            Some(pending) => pending.log(res),
            None => res,
        }))
    }
}

impl Pending {
    /// Gives `res` its request id, counts it in the metrics and writes its access line.
    fn log(self, mut res: Response) -> Response {
        let Self { watch, method, shown, key, id, state } = self;
        let took = watch.elapsed();
        let status = res.status().as_u16();
        if let Some(m) = &state.metrics {
            m.record_request(shown.template().unwrap_or(crate::metrics::UNMATCHED), &method, status, took);
        }
        let (code, reason) =
            match (res.extensions().get::<Refused>(), res.extensions().get::<keygate_console::Refused>()) {
                (Some(r), _) => (Some(r.code), Some(r.reason)),
                (None, Some(r)) => (None, Some(r.0)),
                (None, None) => (None, None),
            };
        let request_id = id.to_str().unwrap_or("");
        let key = key.as_ref().and_then(|k| std::str::from_utf8(k).ok());
        let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut shown_path = ShownPath::default();
        let mut shown_method = ShownPath::default();
        let method = shown_method.method(method.as_str());
        let path = match &shown {
            Shown::Unmatched(uri) => shown_path.of(uri.path()),
            matched => matched.template().unwrap_or(""),
        };
        let line = crate::access_line::AccessLine { request_id, method, path, status, latency_us, key, code, reason };
        // Written directly when the process gave a writer (and the filter lets the line through),
        // else as a `tracing` event, as in tests and when keygate is embedded.
        let direct = state.access_log.as_ref().filter(|_| tracing::enabled!(target: TARGET, tracing::Level::INFO));
        if direct.is_none_or(|d| !d.write(&line, TARGET)) {
            tracing::info!(target: TARGET, request_id, method, path, status, latency_us, key, code, reason, "answered");
        }
        if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
            // The cause of a 500 is logged once, here, and never sent to the client.
            tracing::error!(request_id, status, %cause, "request failed");
        }
        // Moved, not cloned: the first clone of a fresh id's bytes would allocate their shared
        // reference count.
        res.headers_mut().insert(crate::request_id::HEADER, id);
        res
    }
}

/// An unknown path as [`LoggedPath`] shows it, or a long method cut, in a buffer on the stack.
#[derive(Default)]
struct ShownPath(StackLine<{ UNKNOWN_PATH_MAX + 8 }>);

impl ShownPath {
    /// A request method as the line shows it: whole up to [`METHOD_MAX`] bytes (every standard
    /// method), else its first [`METHOD_MAX`] and `...`. hyper accepts any token as a method, of
    /// hundreds of kilobytes; written whole, one request would write that much log.
    fn method<'a>(&'a mut self, method: &'a str) -> &'a str {
        use std::fmt::Write as _;
        self.0.clear();
        match method.get(..METHOD_MAX) {
            // A method is ASCII (a token), so the cut is on a character boundary.
            Some(head) if method.len() > METHOD_MAX => {
                let _ = self.0.write_str(head);
                let _ = self.0.write_str("...");
                self.0.as_str()
            }
            _ if method.len() > METHOD_MAX => "...",
            _ => method,
        }
    }

    fn of(&mut self, raw: &str) -> &str {
        use std::fmt::Write as _;
        self.0.clear();
        // Cannot fail: the shown path is at most UNKNOWN_PATH_MAX + 3 bytes.
        let _ = write!(self.0, "{}", LoggedPath(raw));
        self.0.as_str()
    }
}
