//! Time, read in exactly one place.

use keygate_proto::UnixMicros;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of the current time, passed in so that tests control it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in microseconds since the Unix epoch.
    fn now(&self) -> UnixMicros;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one permitted read of the wall clock.
    fn now(&self) -> UnixMicros {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        UnixMicros(u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock showing `now`.
    #[must_use]
    pub fn new(now: UnixMicros) -> Self {
        Self(AtomicU64::new(now.0))
    }

    /// Sets the time.
    pub fn set(&self, now: UnixMicros) {
        self.0.store(now.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMicros {
        UnixMicros(self.0.load(Ordering::SeqCst))
    }
}

/// Measures how long something took, on the monotonic clock: for log lines and metrics only.
///
/// Durations reported to operators (request latency, journal commit time) must not jump when the
/// wall clock is set, and nothing may decide anything from them, so they are not read from a
/// [`Clock`] (a test's [`ManualClock`] would report every request as instantaneous, or as taking
/// however long the test moved time). This is the one permitted read of [`std::time::Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(std::time::Instant);

impl Stopwatch {
    /// A stopwatch running from now.
    #[must_use]
    #[allow(clippy::disallowed_methods)] // The one permitted read of the monotonic clock (see above).
    pub fn start() -> Self {
        Self(std::time::Instant::now())
    }

    /// Time since [`Stopwatch::start`].
    #[must_use]
    pub fn elapsed(&self) -> std::time::Duration {
        self.0.elapsed()
    }
}
