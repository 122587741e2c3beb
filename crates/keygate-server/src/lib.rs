//! The HTTP layer: Binance-shaped routes, the signed-request extractor, health checks, and the
//! console's routes (the admin channel is the service's, `keygate_service::admin`). Thin by design: every decision about keys lives in `keygate-service`, every
//! rule about requests in `keygate-auth`; this crate moves bytes between them and the wire.

pub mod access_line;
pub mod access_log;
mod answer;
pub mod client_ip;
pub mod cluster;
pub mod ed25519_batches;
pub mod endpoints;
mod error;
pub mod extract;
pub mod front;
pub mod metrics;
pub mod ratelimit;
pub mod request_id;
mod routes;
pub mod serve;
pub mod slow_clients;
pub mod tls;
pub mod webhook_transport;
pub mod weight;

pub use error::ApiError;
pub use serve::{ServerConfig, ServerHandle};

use keygate_auth::Verifier;
use keygate_service::Service;
use keygate_service::engine::Engine;
use std::sync::Arc;

/// Shared state of every request handler, behind one `Arc`: middleware and handlers clone it on
/// every request, and one reference count costs a fraction of one per field (each of them touched
/// from every core). Fields are reached through `Deref`.
#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

impl AppState {
    /// The state shared by every request.
    #[must_use]
    pub fn new(inner: AppStateInner) -> Self {
        Self(Arc::new(inner))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct AppStateInner {
    /// The key owner's web console and its JSON API.
    pub console: keygate_console::Console,
    /// Keys, accounts, audit.
    pub service: Service,
    /// The sandbox exchange's engine thread.
    pub engine: Engine,
    /// The request verifier (limits and replay guard).
    pub verifier: Arc<Verifier>,
    /// Ed25519 signatures of concurrent requests, checked together.
    pub ed25519_batches: ed25519_batches::Ed25519Batches,
    /// Networks whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Rate limits and their counters (weight per address, orders per account, bans).
    pub limiter: Arc<ratelimit::RateLimiter>,
    /// This server's Prometheus metrics, when `--metrics-listen` serves them; `None` costs
    /// nothing per request.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// Makes the `X-Request-Id` of requests that bring none.
    pub request_ids: request_id::RequestIds,
    /// Where access lines are written directly; `None` writes them as `tracing` events.
    pub access_log: Option<access_line::DirectLog>,
}

/// Every route and layer: the endpoint table served by [`front::Front`], the rest by the
/// router. Separate from binding a socket so tests can drive it with `oneshot`.
pub fn app(state: AppState) -> front::Front {
    front::Front::new(routes::table(&state), routes::router(state.clone()), state)
}
