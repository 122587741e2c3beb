//! Target `amount`: Binance decimals (`keygate_proto::Amount`), plus symbol and asset names.
//!
//! Properties: never panics; text is accepted exactly when an independent reference (digits,
//! optional dot and digits, each side 1 to 20 digits, no non-zero digit past the eighth decimal,
//! value within `u64` units, computed in `u128`) accepts it, with the same value and the same
//! error class; every accepted or constructed amount prints as `digits.8digits`, and that text,
//! its JSON form and `FromStr` parse back to the same amount; the order of amounts is the order
//! of their units. Names: accepted text is 1 to 20 of `[A-Z0-9]` and reads back unchanged.

use crate::Input;
use keygate_proto::{Amount, AssetCode, DecimalError, Symbol};

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let units = input.u64();
    check_units(Amount::from_units(units));
    let text = String::from_utf8_lossy(input.rest()).into_owned();
    let parsed = Amount::parse(&text);
    assert_eq!(parsed, reference(&text), "{text:?}");
    if let Ok(a) = parsed {
        check_units(a);
        assert_eq!(a.cmp(&Amount::from_units(units)), a.units().cmp(&units));
    }
    let names = [Symbol::parse(&text).map(|s| s.to_string()), AssetCode::parse(&text).map(|a| a.to_string())];
    for n in names.into_iter().flatten() {
        assert_eq!(n, text);
        assert!(!n.is_empty() && n.len() <= 20);
        assert!(n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    }
}

fn check_units(a: Amount) {
    let text = a.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()), "{text}");
    assert!(frac.len() == 8 && frac.bytes().all(|b| b.is_ascii_digit()), "{text}");
    assert_eq!(Amount::parse(&text), Ok(a), "{text} does not parse back");
    assert_eq!(text.parse::<Amount>(), Ok(a));
    let json = serde_json::to_string(&a).unwrap_or_default();
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(serde_json::from_str::<Amount>(&json).ok(), Some(a));
}

/// The rules of `Amount::parse`, written independently with `u128` arithmetic.
fn reference(s: &str) -> Result<Amount, DecimalError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| (1..=20).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return Err(DecimalError::Malformed);
    }
    let int_units = int.parse::<u128>().map_err(|_| DecimalError::Malformed)? * 100_000_000;
    if int_units > u128::from(u64::MAX) {
        return Err(DecimalError::TooLarge);
    }
    let frac = frac.unwrap_or("");
    if frac.bytes().skip(8).any(|b| b != b'0') {
        return Err(DecimalError::TooPrecise);
    }
    let kept: String = frac.chars().take(8).collect();
    let frac_units = format!("{kept:0<8}").parse::<u128>().map_err(|_| DecimalError::Malformed)?;
    u64::try_from(int_units + frac_units).map(Amount::from_units).map_err(|_| DecimalError::TooLarge)
}
