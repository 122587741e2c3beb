//! Validated asset codes and market symbols.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a symbol or asset code was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} must be 1 to 20 characters of A-Z and 0-9, got {got:?}")]
pub struct NameError {
    what: &'static str,
    got: String,
}

fn validate(what: &'static str, s: &str) -> Result<(), NameError> {
    let ok = !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if ok { Ok(()) } else { Err(NameError { what, got: s.chars().take(40).collect() }) }
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates; see the type's documentation for the accepted form.
            ///
            /// # Errors
            /// [`NameError`] when the text is empty, longer than 20 bytes or not `[A-Z0-9]`.
            pub fn parse(s: &str) -> Result<Self, NameError> {
                validate($what, s)?;
                Ok(Self(s.to_owned()))
            }

            /// The validated text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                validate($what, &s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// A market symbol such as `BTCUSDT`: upper-case ASCII letters and digits, as Binance uses.
    Symbol,
    "a symbol"
);
name_type!(
    /// An asset (coin) code such as `USDT`: upper-case ASCII letters and digits.
    AssetCode,
    "an asset code"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_binance_symbols_and_refuses_lower_case_or_punctuation() {
        assert!(Symbol::parse("BTCUSDT").is_ok());
        assert!(Symbol::parse("1INCHUSDT").is_ok());
        assert!(Symbol::parse("btcusdt").is_err());
        assert!(Symbol::parse("BTC-USDT").is_err());
        assert!(Symbol::parse("").is_err());
        assert!(AssetCode::parse("ABCDEFGHIJKLMNOPQRSTU").is_err());
    }
}
