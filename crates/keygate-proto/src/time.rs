//! Time as Binance puts it on the wire: integer milliseconds since the Unix epoch.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, the unit of every Binance timestamp.
///
/// A newtype so that a millisecond count is never confused with microseconds or seconds; the
/// verifier works in microseconds internally and converts explicitly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct UnixMillis(pub u64);

impl UnixMillis {
    /// The same instant in microseconds (saturating, so far-future values never wrap).
    #[must_use]
    pub fn as_micros(self) -> u64 {
        self.0.saturating_mul(1000)
    }

    /// This instant plus `ms` milliseconds, saturating.
    #[must_use]
    pub fn plus_millis(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// The minute this instant falls in, as the millisecond timestamp of its start.
    #[must_use]
    pub fn minute_start(self) -> Self {
        Self(self.0 - self.0 % 60_000)
    }
}

/// Microseconds since the Unix epoch: the verifier's working unit, since Binance accepts
/// `timestamp` in microseconds and `recvWindow` with three decimals of milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct UnixMicros(pub u64);

impl UnixMicros {
    /// Truncated to milliseconds.
    #[must_use]
    pub fn as_millis(self) -> UnixMillis {
        UnixMillis(self.0 / 1000)
    }
}
