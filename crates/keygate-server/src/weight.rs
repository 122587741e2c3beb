//! The weight middleware: charges every exchange API request the weight its row of the endpoint
//! table gives it, to its client address, before anything else is done with it; refuses it (429,
//! or 418 when banned) when the address is over a limit; and reports the address's usage in
//! `X-MBX-USED-WEIGHT-1M` (and the legacy `X-MBX-USED-WEIGHT`) on every answer. The limiter in
//! [`crate::AppState`] decides.
//!
//! The front ([`crate::front`]) puts one instance around each path of the endpoint table, knowing
//! that path's rows ([`Charging::path`]), and the router one around its fallback
//! ([`Charging::unrouted`]): the middleware finds its row by method, never by matching the path.
//! Health checks and the console get none.
//!
//! Weights that depend on parameters are read from the parameters as the handlers decode them.
//! The body is not read here (a refused request does no work), so the weight is charged from the
//! query; for a signed route whose weight depends on parameters, what was charged is left in the
//! request ([`Provisional`]), and the signed-request runner charges the difference once query and
//! body are verified and hands the new usage back in the answer ([`UsedWeight`]). A query the
//! parser refuses is charged the endpoint's maximum.

use crate::answer::Answer;
use crate::client_ip::request_client_ip;
use crate::endpoints::{Route, Weight};
use crate::ratelimit::{Usage, write_weight_headers};
use crate::{ApiError, AppState};
use axum::extract::Request;
use axum::response::{IntoResponse as _, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

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

/// The layer that charges weight (see the module documentation), one instance per path of the
/// table (`routes::table`) and one in front of the router's fallback (`routes::router`).
///
/// Written out as a tower layer rather than `axum::middleware::from_fn`, which clones the state
/// and the inner service and boxes a future on every request: when this node decides its limits
/// alone (no shared counters), the request is charged and answered without either. With shared
/// counters the decision waits for Redis, and that path boxes as before.
#[derive(Debug, Clone)]
pub struct WeightLayer {
    charging: Charging,
}

impl WeightLayer {
    /// Charges as `charging` says.
    #[must_use]
    pub fn new(charging: Charging) -> Self {
        Self { charging }
    }
}

impl<S> Layer<S> for WeightLayer {
    type Service = Weighed<S>;

    fn layer(&self, inner: S) -> Weighed<S> {
        Weighed { inner, charging: self.charging.clone() }
    }
}

/// The service of [`WeightLayer`].
#[derive(Debug, Clone)]
pub struct Weighed<S> {
    inner: S,
    charging: Charging,
}

impl<S> Service<Request> for Weighed<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = WeighedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let ip = request_client_ip(&req, &self.charging.state.trusted_proxies);
        weigh(&self.charging, &mut self.inner, req, ip)
    }
}

/// Charges `req`, from client address `ip`, and answers it by `inner` unless it is refused: the
/// core of [`Weighed`], also used by the front ([`crate::front`]), which knows the connection's
/// peer without a `ConnectInfo` extension.
pub(crate) fn weigh<S>(
    charging: &Charging,
    inner: &mut S,
    mut req: Request,
    ip: Option<IpAddr>,
) -> WeighedFuture<S::Future>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    {
        let Charging { state, rows } = charging;
        if rows.is_empty() && exempt(req.uri().path()) {
            return WeighedFuture { answer: Answer::Inner { fut: inner.call(req) }, usage: None, report: false };
        }
        let route = rows.iter().copied().find(|r| r.spec().method == *req.method());
        let weight = route.map_or(Weight::UNLISTED, |r| r.spec().weight);
        let w = weight.of_query(req.uri().query().unwrap_or(""));
        let now = state.service.clock().now().as_millis().0;
        let provisional = route.is_some_and(|r| r.spec().security.access().is_some()) && weight.fixed().is_none();
        // A request whose client address cannot be read is refused later (-1002) by whatever needs
        // the address; it is not counted under a made-up one.
        let Some(ip) = ip else {
            return WeighedFuture { answer: Answer::Inner { fut: inner.call(req) }, usage: None, report: true };
        };
        let Some((usage, verdict)) = state.limiter.admit_here(ip, w, now) else {
            // Shared counters: the decision waits for them. The inner service was made ready by
            // `poll_ready`; that one goes into the future, a clone stays here.
            let clone = inner.clone();
            let inner = std::mem::replace(inner, clone);
            let state = state.clone();
            let fut = async move {
                let (usage, verdict) = state.limiter.admit(ip, w, now).await;
                let res = match verdict {
                    Ok(()) => {
                        if provisional {
                            req.extensions_mut().insert(Provisional(w));
                        }
                        let mut inner = inner;
                        let Ok(res) = inner.call(req).await;
                        res
                    }
                    Err(refusal) => ApiError::RateLimited(refusal).into_response(),
                };
                report_usage(res, Some(usage))
            };
            return WeighedFuture { answer: Answer::Boxed { fut: Box::pin(fut) }, usage: None, report: false };
        };
        let answer = match verdict {
            Ok(()) => {
                if provisional {
                    req.extensions_mut().insert(Provisional(w));
                }
                Answer::Inner { fut: inner.call(req) }
            }
            Err(refusal) => Answer::Ready { res: Some(ApiError::RateLimited(refusal).into_response()) },
        };
        WeighedFuture { answer, usage: Some(usage), report: true }
    }
}

/// Reports the usage in the answer's headers: the signed-request runner's, when it charged what
/// the body added ([`UsedWeight`]), else `usage`.
fn report_usage(mut res: Response, usage: Option<Usage>) -> Response {
    let usage = res.extensions_mut().remove::<UsedWeight>().map(|u| u.0).or(usage);
    if let Some(usage) = &usage {
        write_weight_headers(res.headers_mut(), usage);
    }
    res
}

pin_project! {
    /// The answer of [`Weighed`], with the usage headers added when it is ready.
    pub struct WeighedFuture<F> {
        #[pin]
        answer: Answer<F>,
        usage: Option<Usage>,
        // Whether to report usage (off in front of exempt paths and where the boxed path does).
        report: bool,
    }
}

impl<F> Future for WeighedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.answer.poll(cx));
        Poll::Ready(Ok(if *this.report { report_usage(res, this.usage.take()) } else { res }))
    }
}
