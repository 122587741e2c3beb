//! Binance Spot wire types and error codes.
//!
//! Everything a client sees on the wire is defined here, once, with serde only: error codes and
//! their canonical messages, decimal amounts in Binance's string format, timestamps, and the JSON
//! shapes of the endpoints. No I/O happens in this crate, so every layer may depend on it.

pub mod account;
pub mod decimal;
pub mod error;
pub mod names;
pub mod responses;
pub mod time;

pub use account::AccountId;
pub use decimal::{Amount, DecimalError};
pub use error::{ErrorBody, ErrorCode};
pub use names::{AssetCode, NameError, Symbol};
pub use time::{UnixMicros, UnixMillis};
