//! Amounts in Binance's decimal string format, held as integer fixed-point.
//!
//! Binance accepts `^([0-9]{1,20})(\.[0-9]{1,20})?$` and rejects exponents (`1e-05`) with -1100;
//! keygate does the same. Amounts carry eight decimal places, like every amount Binance prints.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Number of decimal places an [`Amount`] carries.
pub const DECIMALS: u32 = 8;
const SCALE: u64 = 10u64.pow(DECIMALS);

/// A non-negative amount with eight decimal places, stored as an integer count of 1e-8 units.
///
/// Integer arithmetic keeps ledger sums exact; the text form is always Binance's (`"0.00100000"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Amount(u64);

/// Why a decimal string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecimalError {
    /// Not of the form `digits[.digits]` (exponents, signs, spaces and empty text included).
    #[error("not a plain decimal number")]
    Malformed,
    /// More than eight significant decimal places.
    #[error("more than {DECIMALS} decimal places")]
    TooPrecise,
    /// Larger than the fixed-point range.
    #[error("too large")]
    TooLarge,
}

impl Amount {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// An amount from its count of 1e-8 units.
    #[must_use]
    pub const fn from_units(units: u64) -> Self {
        Self(units)
    }

    /// The count of 1e-8 units.
    #[must_use]
    pub const fn units(self) -> u64 {
        self.0
    }

    /// Parses Binance's decimal format.
    ///
    /// # Errors
    /// [`DecimalError`] for exponents, signs, empty parts, more than 20 digits on either side,
    /// non-zero digits beyond the eighth decimal place, or a value beyond the fixed-point range.
    ///
    /// ```
    /// use keygate_proto::Amount;
    /// assert_eq!(Amount::parse("0.001").unwrap().units(), 100_000);
    /// assert!(Amount::parse("1e-05").is_err());
    /// ```
    pub fn parse(s: &str) -> Result<Self, DecimalError> {
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(int) || frac.is_some_and(|f| !digits(f)) {
            return Err(DecimalError::Malformed);
        }
        let mut units: u64 = 0;
        for b in int.bytes() {
            units =
                units.checked_mul(10).and_then(|u| u.checked_add(u64::from(b - b'0'))).ok_or(DecimalError::TooLarge)?;
        }
        units = units.checked_mul(SCALE).ok_or(DecimalError::TooLarge)?;
        if let Some(f) = frac {
            let (kept, rest) = f.split_at(f.len().min(DECIMALS as usize));
            if rest.bytes().any(|b| b != b'0') {
                return Err(DecimalError::TooPrecise);
            }
            let mut frac_units: u64 = 0;
            for b in kept.bytes() {
                frac_units = frac_units * 10 + u64::from(b - b'0');
            }
            // `kept` has at most DECIMALS digits, so the exponent is in range.
            frac_units *= 10u64.pow(DECIMALS - kept.len() as u32);
            units = units.checked_add(frac_units).ok_or(DecimalError::TooLarge)?;
        }
        Ok(Self(units))
    }
}

impl FromStr for Amount {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, DecimalError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Amount {
    type Error = DecimalError;
    fn try_from(s: String) -> Result<Self, DecimalError> {
        Self::parse(&s)
    }
}

impl From<Amount> for String {
    fn from(a: Amount) -> String {
        a.to_string()
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:08}", self.0 / SCALE, self.0 % SCALE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_binance_decimals() {
        assert_eq!(Amount::parse("50000").unwrap().to_string(), "50000.00000000");
        assert_eq!(Amount::parse("0.00000001").unwrap().units(), 1);
        assert_eq!(Amount::parse("1.500000000000").unwrap().units(), 150_000_000);
    }

    #[test]
    fn rejects_exponents_signs_and_excess_precision() {
        for bad in ["1e-05", "-1", "+1", "", ".5", "5.", " 1", "1,5", "0x10", "1.2.3"] {
            assert_eq!(Amount::parse(bad), Err(DecimalError::Malformed), "{bad:?}");
        }
        assert_eq!(Amount::parse("0.000000001"), Err(DecimalError::TooPrecise));
        assert_eq!(Amount::parse("99999999999999999999"), Err(DecimalError::TooLarge));
    }
}
