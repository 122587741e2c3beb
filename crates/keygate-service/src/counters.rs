//! Counters shared by every node: the rate limits' windows (request weight per address, orders
//! per account) and the login and 2FA failure throttles, kept where all nodes see them.
//!
//! Decision (issue #13, item 6): a node counts in memory by itself unless it is given a
//! [`CounterStore`] (`serve --redis-url`: Redis, implemented in the `keygate-redis` crate). With
//! one, every count goes through it, so several nodes enforce one limit together; the node still
//! counts its own share in memory beside it, so that it can fall back to its own limits at once.
//!
//! When the counter store does not answer (an error, or no answer within [`CALL_TIMEOUT`]):
//! - the request is decided by this node's own counts (its limits hold, per node), never refused
//!   for the outage itself: a counter outage must not take the API down;
//! - one warning is logged per outage, and one line when the store answers again;
//! - for [`RETRY_AFTER_MS`] of the service clock no further call is tried (requests pay nothing
//!   for an outage), then one request tries again (the others meanwhile decide alone), and so on
//!   every [`RETRY_AFTER_MS`] until one succeeds; `/readyz` always tries;
//! - [`SharedCounters::status`] says so, for `/readyz` details and the metrics (the node stays
//!   ready: it still serves, with per-node limits).
//!
//! This layer knows no Redis type: the store is a trait object handed over at construction.

use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How long one counter call may take before the node decides by its own counts.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// After a failed call, how long (service clock, ms) calls are not tried at all.
pub const RETRY_AFTER_MS: u64 = 1_000;

/// Why a counter store call failed. The message names no secret (no password from a URL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CounterError(pub String);

/// One counter of a fixed window to add to: the caller names the window in the key (a new window
/// is a new key), so the store needs no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowAdd {
    /// The counter's name, unique per window.
    pub key: String,
    /// How much to add (0 reads it).
    pub by: u32,
    /// The most the window allows (only read by a capped add).
    pub limit: u32,
    /// How long the counter must be kept, ms of real time (the window's span, and a margin).
    pub ttl_ms: u64,
}

/// What a batch of window additions found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCounts {
    /// False when a capped add found a counter at its limit and added nothing.
    pub added: bool,
    /// Every counter's value afterwards, in the order given.
    pub values: Vec<u32>,
}

/// What reserving one attempt in a failure window found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// Counted, in the window that started at `window_start` (ms).
    Reserved {
        /// Start of the window the attempt was counted in.
        window_start: u64,
    },
    /// The window already holds `limit` attempts: nothing counted.
    Refused {
        /// Start of the full window.
        window_start: u64,
        /// Whether this is the window's first refusal (the one to audit), across every node.
        first: bool,
    },
}

/// A store of counters every node shares. Implementations must make each call atomic (several
/// nodes call at once) and must keep no clock of their own: times come from the caller.
#[async_trait]
pub trait CounterStore: Send + Sync + std::fmt::Debug {
    /// Adds each counter's `by` to it, all at once. When `capped`, adds nothing at all unless
    /// every counter is below its `limit`. New counters expire after their `ttl_ms`.
    async fn add(&self, counters: &[WindowAdd], capped: bool) -> Result<WindowCounts, CounterError>;

    /// Subtracts `by` from each of `keys` that still exists (never below zero): gives back what
    /// was counted in windows that may have ended since.
    async fn subtract(&self, keys: &[String], by: u32) -> Result<(), CounterError>;

    /// Reserves one attempt of `key` at `now_ms` in a failure window of `window_ms` that starts
    /// at the first attempt: refused, counting nothing, when the live window holds `limit`.
    async fn reserve(&self, key: &str, now_ms: u64, window_ms: u64, limit: u32) -> Result<Reservation, CounterError>;

    /// Gives back one attempt reserved in the window that started at `window_start`, if that
    /// window is still the key's.
    async fn release(&self, key: &str, window_start: u64) -> Result<(), CounterError>;

    /// Attempts of `key` in the window live at `now_ms`.
    async fn failures(&self, key: &str, now_ms: u64, window_ms: u64) -> Result<u32, CounterError>;

    /// Forgets `key`.
    async fn forget(&self, key: &str) -> Result<(), CounterError>;

    /// Whether the store answers.
    async fn ping(&self) -> Result<(), CounterError>;

    /// Where the counters are, for logs and `/readyz` (never a password).
    fn describe(&self) -> String;
}

/// Whether shared counting works right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterStatus {
    /// Where the counters are ([`CounterStore::describe`]).
    pub backend: String,
    /// False from a failed call until one succeeds: limits are this node's own meanwhile.
    pub reachable: bool,
    /// The last failure's message, while unreachable.
    pub error: Option<String>,
    /// Calls that failed or were skipped during an outage (each decided by this node's counts).
    pub fallbacks: u64,
}

/// A [`CounterStore`] with the outage policy of this module: every call bounded in time, a
/// failure answered with `None` (the caller decides by its own counts), logged once per outage.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedCounters(Arc<SharedInner>);

#[derive(Debug)]
struct SharedInner {
    store: Arc<dyn CounterStore>,
    clock: Arc<dyn crate::Clock>,
    /// Down since a failure (until a call succeeds).
    down: AtomicBool,
    /// Service-clock ms before which no call is tried while down.
    retry_at: AtomicU64,
    fallbacks: AtomicU64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl SharedCounters {
    /// Shared counting through `store`, the outage pauses measured on `clock`.
    #[must_use]
    pub fn new(store: Arc<dyn CounterStore>, clock: Arc<dyn crate::Clock>) -> Self {
        Self(Arc::new(SharedInner {
            store,
            clock,
            down: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            last_error: std::sync::Mutex::new(None),
        }))
    }

    /// Where the counters are and whether they answer.
    #[must_use]
    pub fn status(&self) -> CounterStatus {
        let i = &self.0;
        let reachable = !i.down.load(Ordering::Acquire);
        CounterStatus {
            backend: i.store.describe(),
            reachable,
            error: if reachable {
                None
            } else {
                i.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
            },
            fallbacks: i.fallbacks.load(Ordering::Relaxed),
        }
    }

    fn now_ms(&self) -> u64 {
        self.0.clock.now().as_millis().0
    }

    /// Runs `call` unless an outage pause is on; `None` when skipped or failed.
    async fn run<T>(
        &self,
        call: impl Future<Output = Result<T, CounterError>>,
        force: bool,
    ) -> Option<Result<T, CounterError>> {
        let i = &self.0;
        if !force && i.down.load(Ordering::Acquire) {
            // During an outage one call at a time tries again, once the pause is over: whoever
            // moves the next try's time on is it; everyone else decides alone meanwhile.
            let now = self.now_ms();
            let retry_at = i.retry_at.load(Ordering::Acquire);
            let mine = now >= retry_at
                && i.retry_at
                    .compare_exchange(retry_at, now.saturating_add(RETRY_AFTER_MS), Ordering::AcqRel, Ordering::Acquire)
                    .is_ok();
            if !mine {
                i.fallbacks.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(r) => r,
            Err(_) => Err(CounterError(format!("no answer within {} ms", CALL_TIMEOUT.as_millis()))),
        };
        match &result {
            Ok(_) => {
                if i.down.swap(false, Ordering::AcqRel) {
                    tracing::info!(backend = %i.store.describe(), "shared counters answer again: limits are shared across nodes again");
                }
            }
            Err(e) => {
                if !force {
                    i.fallbacks.fetch_add(1, Ordering::Relaxed);
                }
                i.retry_at.store(self.now_ms().saturating_add(RETRY_AFTER_MS), Ordering::Release);
                *i.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.0.clone());
                if !i.down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        backend = %i.store.describe(),
                        error = %e,
                        "shared counters do not answer: this node enforces rate limits and login throttles by its own counts until they do"
                    );
                }
            }
        }
        Some(result)
    }

    /// [`CounterStore::add`], or `None` when the store does not answer.
    pub async fn add(&self, counters: &[WindowAdd], capped: bool) -> Option<WindowCounts> {
        self.run(self.0.store.add(counters, capped), false).await?.ok()
    }

    /// [`CounterStore::subtract`]; a failure is only counted (the count expires with its window).
    pub async fn subtract(&self, keys: &[String], by: u32) {
        let _ = self.run(self.0.store.subtract(keys, by), false).await;
    }

    /// [`CounterStore::reserve`], or `None` when the store does not answer.
    pub async fn reserve(&self, key: &str, now_ms: u64, window_ms: u64, limit: u32) -> Option<Reservation> {
        self.run(self.0.store.reserve(key, now_ms, window_ms, limit), false).await?.ok()
    }

    /// [`CounterStore::release`]; a failure is only counted.
    pub async fn release(&self, key: &str, window_start: u64) {
        let _ = self.run(self.0.store.release(key, window_start), false).await;
    }

    /// [`CounterStore::failures`], or `None` when the store does not answer.
    pub async fn failures(&self, key: &str, now_ms: u64, window_ms: u64) -> Option<u32> {
        self.run(self.0.store.failures(key, now_ms, window_ms), false).await?.ok()
    }

    /// [`CounterStore::forget`]; a failure is only counted.
    pub async fn forget(&self, key: &str) {
        let _ = self.run(self.0.store.forget(key), false).await;
    }

    /// Asks the store whether it answers, outage pause or not (`/readyz`), and returns the
    /// status after.
    pub async fn probe(&self) -> CounterStatus {
        let _ = self.run(self.0.store.ping(), true).await;
        self.status()
    }
}
