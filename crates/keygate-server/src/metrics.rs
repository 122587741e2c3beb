//! Prometheus metrics, served at `/metrics` on their own listen address (`serve --metrics-listen`).
//!
//! Built on the `metrics` crate's Prometheus exporter, with one recorder per server rather than
//! the process-wide one its macros use: nothing here is global, so several servers in one test
//! process each count their own requests, and a server without `--metrics-listen` has no
//! recorder and pays nothing per request. Handles are registered once per series and kept, so a
//! request costs a hash lookup under a read lock and two atomic updates, no allocation.
//!
//! Series (all names start with `keygate_`; docs/operations.md lists them):
//! - `http_requests_total{endpoint,method,status}`: requests answered, by route template (never
//!   the raw path: `unmatched` for a path no route matches, so a scanner cannot grow the series);
//! - `http_request_duration_seconds{endpoint,method}`: the time to produce each answer;
//! - `engine_queue_depth`: commands and queries waiting for the exchange engine thread;
//! - `journal_commit_duration_seconds`: one store transaction per batch of engine commands;
//! - `key_cache_keys`: keys in the in-memory cache;
//! - `replay_guard_signatures` and `replay_guard_capacity`: the replay guard's fill;
//! - `ed25519_batches_total` and `ed25519_signatures_total`: Ed25519 signatures checked, and the
//!   batches they were checked in (the second over the first is the mean batch size);
//! - `exchange_writer_term`: the term under which this node writes the exchange, 0 while it
//!   follows the writer (on several nodes, exactly one node shows a non-zero term);
//! - `exchange_journal_applied`: the last journal entry this node's exchange includes (a read
//!   copy's lag is the writer's value minus its own);
//! - with shared counters only (`--redis-url`): `shared_counters_reachable` (1 or 0) and
//!   `shared_counters_fallbacks_total` (counter calls decided by this node's own counts because
//!   the shared counters failed or an outage pause was on).
//!
//! Gauges are read from the engine, the key cache and the replay guard when `/metrics` is
//! scraped, through their own small accessors; those crates know nothing of metrics.

use crate::AppState;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use metrics::{Counter, Gauge, Histogram, Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

/// Bucket bounds of both latency histograms, in seconds: from 50 µs (a ping) to 10 s (a request
/// that waited out a slow store).
const BUCKETS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The `endpoint` label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

const REQUESTS: &str = "keygate_http_requests_total";
const LATENCY: &str = "keygate_http_request_duration_seconds";
const QUEUE: &str = "keygate_engine_queue_depth";
const COMMIT: &str = "keygate_journal_commit_duration_seconds";
const CACHE: &str = "keygate_key_cache_keys";
const REPLAY: &str = "keygate_replay_guard_signatures";
const REPLAY_CAPACITY: &str = "keygate_replay_guard_capacity";
const ED25519_BATCHES: &str = "keygate_ed25519_batches_total";
const ED25519_SIGNATURES: &str = "keygate_ed25519_signatures_total";
const WRITER_TERM: &str = "keygate_exchange_writer_term";
const APPLIED: &str = "keygate_exchange_journal_applied";
const SHARED_UP: &str = "keygate_shared_counters_reachable";
const SHARED_FALLBACKS: &str = "keygate_shared_counters_fallbacks_total";

/// The handles of one (method, status) of one endpoint.
#[derive(Debug)]
struct Series {
    method: &'static str,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

/// One server's metrics: its recorder and the handles requests update.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Per route template, the series seen so far (a handful of methods and statuses each).
    routes: RwLock<HashMap<Box<str>, Vec<Series>>>,
    queue: Gauge,
    cache: Gauge,
    replay: Gauge,
    replay_capacity: Gauge,
    ed25519_batches: Counter,
    ed25519_signatures: Counter,
    writer_term: Gauge,
    applied: Gauge,
    /// Registered at the first scrape of a node with shared counters, so a node without them
    /// shows no such series.
    shared: std::sync::OnceLock<(Gauge, Counter)>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn metadata() -> Metadata<'static> {
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()))
}

impl Metrics {
    /// A fresh recorder with the series described and the gauges registered.
    #[must_use]
    pub fn new() -> Self {
        // `set_buckets` fails only for an empty list; BUCKETS is not empty. Without buckets the
        // exporter would render summaries instead of histograms, so fall back to its default
        // rather than fail.
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets(BUCKETS) {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, unit: Option<Unit>, text: &'static str| {
            recorder.describe_gauge(name.into(), unit, SharedString::const_str(text));
        };
        recorder.describe_counter(
            REQUESTS.into(),
            None,
            SharedString::const_str("Requests answered, by route template, method and HTTP status."),
        );
        recorder.describe_histogram(
            LATENCY.into(),
            Some(Unit::Seconds),
            SharedString::const_str("Time to produce each answer, by route template and method."),
        );
        recorder.describe_histogram(
            COMMIT.into(),
            Some(Unit::Seconds),
            SharedString::const_str(
                "Time of each journal commit (one store transaction per batch of engine commands).",
            ),
        );
        describe(QUEUE, None, "Commands and queries waiting for the exchange engine thread (429 beyond 8192).");
        describe(CACHE, None, "API keys in the in-memory key cache.");
        describe(REPLAY, None, "Signatures held by the replay guard (until their recvWindow ends).");
        describe(SHARED_UP, None, "1 while the shared counters (--redis-url) answer; 0 while limits are per node.");
        recorder.describe_counter(
            SHARED_FALLBACKS.into(),
            None,
            SharedString::const_str(
                "Counter calls decided by this node's own counts because the shared counters did not answer.",
            ),
        );
        describe(
            REPLAY_CAPACITY,
            None,
            "Most signatures the replay guard holds; beyond it signed TRADE requests get -1003.",
        );
        describe(
            WRITER_TERM,
            None,
            "The term under which this node writes the exchange; 0 while it follows the writer.",
        );
        describe(APPLIED, None, "The last exchange journal entry this node's state includes.");
        recorder.describe_counter(
            ED25519_BATCHES.into(),
            None,
            SharedString::const_str(
                "Batches of Ed25519 signatures checked together (a lone signature is a batch of one).",
            ),
        );
        recorder.describe_counter(
            ED25519_SIGNATURES.into(),
            None,
            SharedString::const_str("Ed25519 signatures checked, in all batches."),
        );
        let gauge = |name: &'static str| recorder.register_gauge(&Key::from_static_name(name), &metadata());
        let counter = |name: &'static str| recorder.register_counter(&Key::from_static_name(name), &metadata());
        Self {
            queue: gauge(QUEUE),
            cache: gauge(CACHE),
            replay: gauge(REPLAY),
            replay_capacity: gauge(REPLAY_CAPACITY),
            ed25519_batches: counter(ED25519_BATCHES),
            ed25519_signatures: counter(ED25519_SIGNATURES),
            writer_term: gauge(WRITER_TERM),
            applied: gauge(APPLIED),
            shared: std::sync::OnceLock::new(),
            routes: RwLock::new(HashMap::new()),
            handle,
            recorder,
        }
    }

    /// Counts one answer of `endpoint` (a route template, or [`UNMATCHED`]) and records how long
    /// it took.
    pub fn record_request(&self, endpoint: &str, method: &Method, status: u16, took: Duration) {
        let method = method_label(method);
        let seconds = took.as_secs_f64();
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(s) =
                routes.get(endpoint).and_then(|all| all.iter().find(|s| s.method == method && s.status == status))
            {
                s.requests.increment(1);
                s.latency.record(seconds);
                return;
            }
        }
        // First answer of this kind: register its handles (the only allocation, once per series).
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let all = routes.entry(endpoint.into()).or_default();
        let series = match all.iter().position(|s| s.method == method && s.status == status) {
            Some(at) => &all[at],
            None => {
                let endpoint_label = Label::new("endpoint", endpoint.to_owned());
                let method_label = Label::from_static_parts("method", method);
                let requests = self.recorder.register_counter(
                    &Key::from_parts(
                        REQUESTS,
                        vec![endpoint_label.clone(), method_label.clone(), Label::new("status", status.to_string())],
                    ),
                    &metadata(),
                );
                let latency = self
                    .recorder
                    .register_histogram(&Key::from_parts(LATENCY, vec![endpoint_label, method_label]), &metadata());
                all.push(Series { method, status, requests, latency });
                &all[all.len() - 1]
            }
        };
        series.requests.increment(1);
        series.latency.record(seconds);
    }

    /// A histogram handle for journal commit times, for the engine's commit observer.
    pub fn journal_commits(&self) -> Histogram {
        self.recorder.register_histogram(&Key::from_static_name(COMMIT), &metadata())
    }

    /// Samples the gauges from `state` and renders every series in Prometheus' text format.
    #[must_use]
    pub fn render(&self, state: &AppState) -> String {
        #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
        let f = |n: usize| n as f64;
        self.queue.set(f(state.engine.queue_depth()));
        self.cache.set(f(state.service.cache().len()));
        let guard = state.verifier.replay_guard();
        self.replay.set(f(guard.len()));
        self.replay_capacity.set(f(guard.capacity()));
        let (batches, signatures) = state.ed25519_batches.counts();
        self.ed25519_batches.absolute(batches);
        self.ed25519_signatures.absolute(signatures);
        #[allow(clippy::cast_precision_loss)] // Terms and journal positions far below 2^52.
        let g = |n: i64| n as f64;
        self.writer_term.set(g(state.engine.term()));
        self.applied.set(g(state.engine.applied()));
        if let Some(shared) = state.service.shared_counters() {
            let (up, fallbacks) = self.shared.get_or_init(|| {
                let key = |name: &'static str| Key::from_static_name(name);
                (
                    self.recorder.register_gauge(&key(SHARED_UP), &metadata()),
                    self.recorder.register_counter(&key(SHARED_FALLBACKS), &metadata()),
                )
            });
            let status = shared.status();
            up.set(if status.reachable { 1.0 } else { 0.0 });
            fallbacks.absolute(status.fallbacks);
        }
        self.handle.render()
    }

    /// Moves recorded latencies into their histograms: run every few seconds, so that a server
    /// nobody scrapes does not hold every observation in memory.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The `method` label: one of the methods HTTP defines, or `OTHER`, so that made-up methods
/// cannot grow the series either.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// Serves `GET /metrics` (and nothing else) on `listener` until the task is aborted.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: AppState) {
    let router = axum::Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state);
    if let Err(e) = axum::serve(listener, router).await {
        tracing::warn!(error = %e, "the metrics listener stopped");
    }
}

/// Runs [`Metrics::upkeep`] every five seconds until the task is aborted.
pub(crate) async fn upkeep(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(m) = &state.metrics {
            m.upkeep();
        }
    }
}

/// `GET /metrics`.
async fn scrape(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let Some(metrics) = &state.metrics else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let text = metrics.render(&state);
    ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"))], text)
        .into_response()
}

/// Binds the metrics address, if one is configured.
///
/// # Errors
/// When the address cannot be bound.
pub(crate) async fn bind(addr: Option<SocketAddr>) -> std::io::Result<Option<tokio::net::TcpListener>> {
    match addr {
        Some(a) => Ok(Some(tokio::net::TcpListener::bind(a).await?)),
        None => Ok(None),
    }
}
