//! The front service: the endpoint table's paths found by one lookup of the exact path and
//! answered without the router; everything else (the console, health checks, unknown paths)
//! handed to axum's router.
//!
//! Every Binance path is a fixed string (none has a parameter), so a binary search over the
//! table's paths finds its rows. Going through the router cost each exchange request what a
//! ping measured at about 3,000 instructions: the route tree's match, the `MatchedPath` and
//! URL-parameter extensions, and a boxed service clone and boxed future for each `Route` level
//! that `Router::layer` wraps around every route (docs/benchmarks.md). Here a request costs one
//! boxed future, its handler's.
//!
//! The front does for table paths what the router did: `HEAD` is answered by the `GET` handler
//! (hyper leaves the body out), a method no row serves is answered 405 with `Allow`, the weight middleware
//! stands in front of each path when rate limits are on, and the access log writes every answer,
//! with the path's template.

use crate::weight::Charging;
use crate::{ApiError, AppState};
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse as _, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The answer of a handler: what axum's async fn handlers return, boxed once.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// One row's handler, called with the request, the state and the connection's peer.
pub(crate) type Endpoint = Box<dyn Fn(Request, AppState, Option<SocketAddr>) -> AnswerFuture + Send + Sync>;

/// The service in front of everything: see the module documentation. Cheap to clone (hyper
/// clones it for every request): three reference counts.
///
/// One is made per connection ([`Front::for_peer`]), knowing the connection's peer: the table's
/// paths are handed the peer directly, and only requests for the router get it as a
/// `ConnectInfo` extension (the console reads it there). An extension costs the request a map
/// allocated and freed.
#[derive(Clone)]
pub struct Front {
    /// Sorted by path.
    paths: Arc<[(&'static str, PathEntry)]>,
    router: Router,
    state: AppState,
    peer: Option<SocketAddr>,
}

impl std::fmt::Debug for Front {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Front").field("paths", &self.paths.len()).finish_non_exhaustive()
    }
}

impl Front {
    /// Serves `paths` (sorted by path, as `routes::table` gives them) itself and the rest by
    /// `router`.
    pub(crate) fn new(paths: Vec<(&'static str, PathEntry)>, router: Router, state: AppState) -> Self {
        debug_assert!(paths.windows(2).all(|w| w[0].0 < w[1].0), "paths sorted and distinct");
        Self { paths: paths.into(), router, state, peer: None }
    }

    /// The front of one connection, from `peer`.
    #[must_use]
    pub fn for_peer(&self, peer: SocketAddr) -> Self {
        Self { peer: Some(peer), ..self.clone() }
    }
}

impl Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Neither the table's paths nor the router ever wait to be ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> FrontFuture {
        let path = req.uri().path();
        match self.paths.binary_search_by(|(p, _)| (*p).cmp(path)) {
            Ok(i) => {
                let (template, entry) = &self.paths[i];
                let peer = self.peer;
                FrontFuture::Table {
                    fut: crate::access_log::logged(&self.state, req, Some(template), |req| entry.answer(req, peer)),
                }
            }
            // The router logs its own answers (its access-log layer sees its `MatchedPath`).
            Err(_) => {
                if let Some(peer) = self.peer {
                    req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                }
                FrontFuture::Routed { fut: self.router.call(req) }
            }
        }
    }
}

pin_project! {
    /// The answer of [`Front`].
    #[project = FrontProj]
    #[allow(missing_docs, reason = "each variant's one field is its answer")]
    pub enum FrontFuture {
        /// A path of the endpoint table.
        Table {
            #[pin] fut: crate::access_log::AccessLogFuture<EntryFuture>,
        },
        /// Anything else, answered by the router.
        Routed {
            #[pin] fut: axum::routing::future::RouteFuture<Infallible>,
        },
    }
}

impl Future for FrontFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontProj::Table { fut } => fut.poll(cx),
            FrontProj::Routed { fut } => fut.poll(cx),
        }
    }
}

/// One path of the table as the front serves it: with the weight middleware in front of it
/// when rate limits are on (`charging`), without when they are off (there is nothing to count).
#[derive(Clone)]
pub(crate) struct PathEntry {
    service: PathService,
    charging: Option<Charging>,
}

impl PathEntry {
    /// `service`, charged as `charging` says when rate limits are on.
    pub(crate) fn new(service: PathService, charging: Option<Charging>) -> Self {
        Self { service, charging }
    }

    /// Answers `req`, from `peer`.
    fn answer(&self, req: Request, peer: Option<SocketAddr>) -> EntryFuture {
        match &self.charging {
            None => EntryFuture::Plain { fut: self.service.answer(req, peer) },
            Some(charging) => {
                let ip = crate::client_ip::peer_client_ip(peer, req.headers(), &self.service.state.trusted_proxies);
                // The weight middleware takes a service it can keep (shared counters answer later).
                let mut service = PathService { peer, ..self.service.clone() };
                EntryFuture::Charged { fut: crate::weight::weigh(charging, &mut service, req, ip) }
            }
        }
    }
}

pin_project! {
    /// The answer of [`PathEntry`].
    #[project = EntryProj]
    #[allow(missing_docs, reason = "each variant's one field is its answer")]
    pub enum EntryFuture {
        /// Rate limits off.
        Plain {
            #[pin] fut: PathFuture,
        },
        /// Rate limits on.
        Charged {
            #[pin] fut: crate::weight::WeighedFuture<PathFuture>,
        },
    }
}

impl Future for EntryFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            EntryProj::Plain { fut } => fut.poll(cx),
            EntryProj::Charged { fut } => fut.poll(cx),
        }
    }
}

/// The rows of one path: their handlers by method, for one request from `peer`.
#[derive(Clone)]
pub(crate) struct PathService {
    methods: Arc<Methods>,
    state: AppState,
    peer: Option<SocketAddr>,
}

struct Methods {
    by_method: Vec<(Method, Endpoint)>,
    /// What a 405 answers in `Allow`: the rows' methods, and `HEAD` where `GET` is one.
    allow: HeaderValue,
}

impl PathService {
    /// The path whose rows' methods and handlers are `by_method`.
    pub(crate) fn new(state: AppState, by_method: Vec<(Method, Endpoint)>) -> Self {
        let mut allow: Vec<&str> = Vec::new();
        for (m, _) in &by_method {
            allow.push(m.as_str());
            if *m == Method::GET {
                allow.push(Method::HEAD.as_str());
            }
        }
        let allow = HeaderValue::from_str(&allow.join(",")).unwrap_or(HeaderValue::from_static(""));
        Self { methods: Arc::new(Methods { by_method, allow }), state, peer: None }
    }

    /// Answers `req`, from `peer`, by the handler of its method.
    fn answer(&self, req: Request, peer: Option<SocketAddr>) -> PathFuture {
        // HEAD is answered by the GET handler; hyper sends its head (with the body's length) and
        // not the body (RFC 9110, section 9.3.2).
        let wanted = if req.method() == Method::HEAD { &Method::GET } else { req.method() };
        if req.extensions().get::<crate::routes::time_unit::BadUnit>().is_some() {
            return PathFuture {
                fut: Box::pin(std::future::ready(crate::routes::time_unit::refusal().into_response())),
            };
        }
        match self.methods.by_method.iter().find(|(m, _)| m == wanted) {
            Some((_, endpoint)) => PathFuture { fut: endpoint(req, self.state.clone(), peer) },
            None => {
                let mut res = ApiError::MethodNotAllowed.into_response();
                res.headers_mut().insert(header::ALLOW, self.methods.allow.clone());
                PathFuture { fut: Box::pin(std::future::ready(res)) }
            }
        }
    }
}

impl Service<Request> for PathService {
    type Response = Response;
    type Error = Infallible;
    type Future = PathFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> PathFuture {
        self.answer(req, self.peer)
    }
}

/// The answer of [`PathService`]: the handler's.
pub struct PathFuture {
    fut: AnswerFuture,
}

impl Future for PathFuture {
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.fut.as_mut().poll(cx).map(Ok)
    }
}
