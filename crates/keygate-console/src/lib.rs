//! The key owner's side of keygate: server-rendered console pages under `/console/` and the JSON
//! management API under `/api/console/v1/`, both over the same cookie session.
//!
//! Everything about who may do what lives in `keygate-service`; this crate turns forms and JSON
//! into service calls and answers into pages. What it adds is the browser's security perimeter:
//!
//! * a `Host` allowlist, so a DNS name rebound to 127.0.0.1 cannot reach a local console;
//! * session cookies that are `HttpOnly`, `SameSite=Strict`, and `Secure` (with the `__Host-`
//!   prefix) whenever the console is served over TLS or behind a trusted TLS proxy;
//! * a synchronizer CSRF token tied to the session (or, before login, to a pre-session cookie) on
//!   every state-changing form and JSON call, plus an `Origin` check;
//! * `Cache-Control: no-store` on every answer (pages showing secrets included), never a secret in
//!   a URL, and nothing secret in a log line.

mod api;
mod error;
mod forms;
mod host;
mod oauth;
pub mod openapi;
mod pages;
mod session;
mod view;

pub use error::{ConsoleError, Refused};
pub use host::HostAllowlist;

use axum::Router;
use axum::http::{HeaderValue, header};
use keygate_service::Service;
use keygate_service::engine::Engine;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The client address as the server resolved it (the socket peer, or the first untrusted
/// `X-Forwarded-For` hop behind a trusted proxy). The HTTP server inserts it into each request's
/// extensions; the console uses it for audit records and login throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// How the console behaves; built by the server once it knows its bound address.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// `Host` header values the console answers to (`host:port`, lower case).
    pub allowed_hosts: HostAllowlist,
    /// Set `Secure` cookies (served over TLS, or behind a TLS-terminating trusted proxy).
    pub secure_cookies: bool,
    /// The sandbox faucet: deposits an owner may give themselves from the wallet page.
    pub faucet: FaucetConfig,
}

impl ConsoleConfig {
    /// The defaults for a server bound to `addr`: the listen address, `localhost`, `127.0.0.1`
    /// and `[::1]` with its port, plus `extra_hosts`.
    #[must_use]
    pub fn for_listen_addr(addr: SocketAddr, extra_hosts: &[String], secure_cookies: bool) -> Self {
        Self {
            allowed_hosts: HostAllowlist::for_listen_addr(addr, extra_hosts),
            secure_cookies,
            faucet: FaucetConfig::default(),
        }
    }
}

/// Limits of the sandbox faucet (DESIGN.md section 5: deposits are operator actions, except this
/// faucet). The limits are counted from the audit log, so they hold across restarts.
#[derive(Debug, Clone)]
pub struct FaucetConfig {
    /// Whether the wallet page offers the faucet at all.
    pub enabled: bool,
    /// Most faucet deposits per account in any 24 hours.
    pub per_day: usize,
}

impl Default for FaucetConfig {
    fn default() -> Self {
        Self { enabled: true, per_day: 5 }
    }
}

/// Everything a console handler needs.
#[derive(Debug, Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    service: Service,
    engine: Engine,
    config: ConsoleConfig,
}

impl Console {
    /// A console over `service` and `engine`.
    #[must_use]
    pub fn new(service: Service, engine: Engine, config: ConsoleConfig) -> Self {
        Self { inner: Arc::new(Inner { service, engine, config }) }
    }

    pub(crate) fn service(&self) -> &Service {
        &self.inner.service
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn config(&self) -> &ConsoleConfig {
        &self.inner.config
    }

    pub(crate) fn now_ms(&self) -> keygate_proto::UnixMillis {
        self.inner.service.clock().now().as_millis()
    }
}

/// Every console answer is private to its session: never cached, never framed, never sniffed.
async fn security_headers(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    // A page may set a policy of its own (the consent page admits the app's redirect URI as a
    // form target); every other answer gets the console's.
    if h.contains_key(header::CONTENT_SECURITY_POLICY) {
        return res;
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'",
        ),
    );
    res
}

/// The console's routes (pages, JSON API, OpenAPI document), with the `Host` allowlist and the
/// security headers applied. Merge it into the server's router; it has no fallback of its own.
pub fn router<S: Clone + Send + Sync + 'static>(console: Console) -> Router<S> {
    let allow = console.config().allowed_hosts.clone();
    Router::new()
        .merge(pages::routes())
        .merge(api::routes().0)
        .merge(oauth::routes())
        .layer(axum::middleware::from_fn(security_headers))
        .layer(axum::middleware::from_fn_with_state(allow, host::check))
        .with_state(console)
}
