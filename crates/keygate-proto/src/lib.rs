//! Binance Spot wire types and error codes.
//!
//! Everything a client sees on the wire is defined here, once, with serde only: error codes and
//! their canonical messages, decimal amounts in Binance's string format, timestamps, and the JSON
//! shapes of the endpoints ([`binance`]). No I/O happens in this crate, so every layer may depend
//! on it: the server writes these types and the client crate reads them.

pub mod account;
pub mod binance;
pub mod decimal;
pub mod error;
pub mod names;
pub mod time;

pub use account::AccountId;
pub use decimal::{Amount, DecimalError};
pub use error::{ErrorBody, ErrorCode};
pub use names::{AssetCode, NameError, Symbol};
pub use time::{UnixMicros, UnixMillis};
