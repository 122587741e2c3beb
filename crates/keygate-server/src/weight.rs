//! The weight middleware: charges every exchange API request the weight its row of the endpoint
//! table gives it, to its client address, before anything else is done with it; refuses it (429,
//! or 418 when banned) when the address is over a limit; and reports the address's usage in
//! `X-MBX-USED-WEIGHT-1M` (and the legacy `X-MBX-USED-WEIGHT`) on every answer. The limiter in
//! [`crate::AppState`] decides.
//!
//! The router puts one instance around each path's methods, knowing that path's rows
//! ([`Charging::path`]), and one around the fallback ([`Charging::unrouted`]): the middleware
//! finds its row by method, never by matching the path. Health checks and the console get none.
//!
//! Weights that depend on parameters are read from the parameters as the handlers decode them.
//! The body is not read here (a refused request does no work), so the weight is charged from the
//! query; for a signed route whose weight depends on parameters, what was charged is left in the
//! request ([`Provisional`]), and the signed-request runner charges the difference once query and
//! body are verified and hands the new usage back in the answer ([`UsedWeight`]). A query the
//! parser refuses is charged the endpoint's maximum.

use crate::client_ip::request_client_ip;
use crate::endpoints::{Route, Weight};
use crate::ratelimit::{Usage, write_weight_headers};
use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

/// What one instance of the middleware knows: the state, and the rows of the path it stands in
/// front of.
#[derive(Debug, Clone)]
pub struct Charging {
    state: AppState,
    /// Empty in front of the fallback: no route matched.
    rows: &'static [Route],
}

impl Charging {
    /// In front of one path's methods: `rows` are its rows of the endpoint table. A method none of
    /// them serves (405, or `HEAD`) weighs [`Weight::UNLISTED`].
    #[must_use]
    pub fn path(state: AppState, rows: &'static [Route]) -> Self {
        Self { state, rows }
    }

    /// In front of the fallback: a request no route matched weighs [`Weight::UNLISTED`], unless
    /// its path is outside the exchange API ([`exempt`]).
    #[must_use]
    pub fn unrouted(state: AppState) -> Self {
        Self { state, rows: &[] }
    }
}

/// The weight the middleware charged a signed request from its query alone. Left in the
/// request's extensions only when its body may add to it (a signed route whose weight depends on
/// parameters), for the signed-request runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provisional(pub u32);

/// The address's usage after the signed-request runner charged what the body added, carried back
/// in the answer's extensions; the middleware reports it instead of the usage it saw itself.
#[derive(Debug, Clone)]
pub struct UsedWeight(pub Usage);

/// Whether an unrouted `path` is outside Binance's API and its limits: health checks (a load
/// balancer polling them must never be banned) and the web console, its pages and its JSON API
/// (its own login and TOTP throttling applies, and its answers are in its own format, not
/// Binance's). Their routes have no weight middleware; this covers their misspelt paths.
fn exempt(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
        || path == "/console"
        || path.starts_with("/console/")
        || path.starts_with("/api/console/")
}

/// Middleware: charges the request's weight (see the module documentation).
pub async fn layer(State(charging): State<Charging>, mut req: Request, next: Next) -> Response {
    let Charging { state, rows } = charging;
    if rows.is_empty() && exempt(req.uri().path()) {
        return next.run(req).await;
    }
    let route = rows.iter().copied().find(|r| r.spec().method == *req.method());
    let weight = route.map_or(Weight::UNLISTED, |r| r.spec().weight);
    let w = weight.of_query(req.uri().query().unwrap_or(""));
    let now = state.service.clock().now().as_millis().0;
    // A request whose client address cannot be read is refused later (-1002) by whatever needs
    // the address; it is not counted under a made-up one.
    let (usage, verdict) = match request_client_ip(&req, &state.trusted_proxies) {
        Some(ip) => {
            let (usage, verdict) = state.limiter.admit(ip, w, now).await;
            (Some(usage), verdict)
        }
        None => (None, Ok(())),
    };
    let signed = route.is_some_and(|r| r.spec().security.access().is_some());
    if usage.is_some() && signed && weight.fixed().is_none() {
        req.extensions_mut().insert(Provisional(w));
    }
    let mut res = match verdict {
        Ok(()) => next.run(req).await,
        Err(refusal) => ApiError::RateLimited(refusal).into_response(),
    };
    let usage = res.extensions_mut().remove::<UsedWeight>().map(|u| u.0).or(usage);
    if let Some(usage) = &usage {
        write_weight_headers(res.headers_mut(), usage);
    }
    res
}
