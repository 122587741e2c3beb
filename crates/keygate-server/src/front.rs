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

use crate::weight::Weighed;
use crate::{ApiError, AppState};
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse as _, Response};
use pin_project_lite::pin_project;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Service;

/// The answer of a handler: what axum's async fn handlers return, boxed once.
pub(crate) type AnswerFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// One row's handler, called with the request and the state.
pub(crate) type Endpoint = Box<dyn Fn(Request, AppState) -> AnswerFuture + Send + Sync>;

/// The service in front of everything: see the module documentation. Cheap to clone (hyper
/// clones it for every request): three reference counts.
#[derive(Clone)]
pub struct Front {
    /// Sorted by path.
    paths: Arc<[(&'static str, PathEntry)]>,
    router: Router,
    state: AppState,
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
        Self { paths: paths.into(), router, state }
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

    fn call(&mut self, req: Request) -> FrontFuture {
        let path = req.uri().path();
        match self.paths.binary_search_by(|(p, _)| (*p).cmp(path)) {
            Ok(i) => {
                let (template, entry) = &self.paths[i];
                let mut entry = entry.clone();
                FrontFuture::Table {
                    fut: crate::access_log::logged(&self.state, req, Some(template), |req| entry.call(req)),
                }
            }
            // The router logs its own answers (its access-log layer sees its `MatchedPath`).
            Err(_) => FrontFuture::Routed { fut: self.router.call(req) },
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
/// when rate limits are on, without when they are off (there is nothing to count).
#[derive(Clone)]
pub(crate) enum PathEntry {
    /// Rate limits off.
    Plain(PathService),
    /// Rate limits on.
    Charged(Weighed<PathService>),
}

impl Service<Request> for PathEntry {
    type Response = Response;
    type Error = Infallible;
    type Future = EntryFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> EntryFuture {
        match self {
            Self::Plain(s) => EntryFuture::Plain { fut: s.call(req) },
            Self::Charged(s) => EntryFuture::Charged { fut: s.call(req) },
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

/// The rows of one path: their handlers by method.
#[derive(Clone)]
pub(crate) struct PathService {
    methods: Arc<Methods>,
    state: AppState,
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
        Self { methods: Arc::new(Methods { by_method, allow }), state }
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
        // HEAD is answered by the GET handler; hyper sends its head (with the body's length) and
        // not the body (RFC 9110, section 9.3.2).
        let wanted = if req.method() == Method::HEAD { &Method::GET } else { req.method() };
        match self.methods.by_method.iter().find(|(m, _)| m == wanted) {
            Some((_, endpoint)) => PathFuture { fut: endpoint(req, self.state.clone()) },
            None => {
                let mut res = ApiError::MethodNotAllowed.into_response();
                res.headers_mut().insert(header::ALLOW, self.methods.allow.clone());
                PathFuture { fut: Box::pin(std::future::ready(res)) }
            }
        }
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
