//! Turning what a person typed (form fields, or the JSON API's fields) into key restrictions,
//! with messages that say exactly which entry is wrong and how to fix it.

use crate::ConsoleError;
use keygate_auth::{IpAllowlist, Permission, Permissions, WithdrawLimit};
use keygate_proto::{Amount, AssetCode, Symbol, UnixMillis};
use serde::Deserialize;

fn bad(msg: String) -> ConsoleError {
    ConsoleError::BadRequest(msg)
}

/// Splits a list typed one per line, or separated by commas or spaces.
pub(crate) fn split_list(text: &str) -> Vec<&str> {
    text.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).collect()
}

/// Parses an IP allowlist; a bad entry is named with an example of what is expected.
pub(crate) fn ip_allowlist<S: AsRef<str>>(entries: &[S]) -> Result<IpAllowlist, ConsoleError> {
    IpAllowlist::parse(entries).map_err(|e| bad(format!("IP allowlist: {e}")))
}

/// Parses a symbol allowlist (`BTCUSDT ETHUSDT`).
pub(crate) fn symbols<S: AsRef<str>>(entries: &[S]) -> Result<Vec<Symbol>, ConsoleError> {
    entries
        .iter()
        .map(|s| {
            let s = s.as_ref().trim().to_ascii_uppercase();
            Symbol::parse(&s).map_err(|e| bad(format!("symbol allowlist: {s:?}: {e}")))
        })
        .collect()
}

/// Withdrawal addresses, trimmed; their format is checked by the service's rules.
pub(crate) fn addresses<S: AsRef<str>>(entries: &[S]) -> Vec<String> {
    entries.iter().map(|s| s.as_ref().trim().to_owned()).filter(|s| !s.is_empty()).collect()
}

/// `1.5 BTC` (or empty for none).
pub(crate) fn withdraw_limit(text: &str) -> Result<Option<WithdrawLimit>, ConsoleError> {
    let parts = split_list(text);
    match parts.as_slice() {
        [] => Ok(None),
        [amount, asset] => {
            let amount = Amount::parse(amount).map_err(|e| bad(format!("withdrawal limit amount {amount:?}: {e}")))?;
            let asset = AssetCode::parse(&asset.to_ascii_uppercase())
                .map_err(|e| bad(format!("withdrawal limit asset {asset:?}: {e}")))?;
            Ok(Some(WithdrawLimit { asset, amount }))
        }
        _ => Err(bad(format!("withdrawal limit {text:?}: write an amount and an asset, e.g. \"0.5 BTC\""))),
    }
}

/// An expiry typed as `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` (UTC; what `<input type=datetime-local>`
/// sends), or empty for none.
pub(crate) fn expiry(text: &str) -> Result<Option<UnixMillis>, ConsoleError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let with_time = if t.len() == 10 { format!("{t}T23:59") } else { t.chars().take(16).collect() };
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let dt = time::PrimitiveDateTime::parse(&with_time, &format)
        .map_err(|_| bad(format!("expiry {t:?}: write a date as YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)")))?;
    let ms = dt.assume_utc().unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map(|ms| Some(UnixMillis(ms))).map_err(|_| bad(format!("expiry {t:?} is before 1970")))
}

/// Formats an expiry back into the form's text.
pub(crate) fn expiry_text(at: Option<UnixMillis>) -> String {
    at.and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms.0) * 1_000_000).ok())
        .and_then(|t| t.format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]")).ok())
        .unwrap_or_default()
}

/// Permissions from the two checkboxes (`read` is always granted).
pub(crate) fn permissions(trade: bool, withdraw: bool) -> Permissions {
    let mut extra = Vec::new();
    if trade {
        extra.push(Permission::Trade);
    }
    if withdraw {
        extra.push(Permission::Withdraw);
    }
    Permissions::with(&extra)
}

/// The create/edit key form as the browser posts it. Checkboxes are present (`on`) or absent.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct KeyForm {
    /// CSRF token.
    #[serde(default)]
    pub csrf: Option<String>,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// `hmac`, `ed25519` or `rsa` (create only).
    #[serde(default)]
    pub kind: Option<String>,
    /// Public key PEM (Ed25519/RSA).
    #[serde(default)]
    pub public_key: String,
    /// `trade` checkbox.
    #[serde(default)]
    pub perm_trade: Option<String>,
    /// `withdraw` checkbox.
    #[serde(default)]
    pub perm_withdraw: Option<String>,
    /// IP allowlist, one per line.
    #[serde(default)]
    pub ip_allowlist: String,
    /// Symbols.
    #[serde(default)]
    pub symbols: String,
    /// Expiry.
    #[serde(default)]
    pub expires: String,
    /// Withdrawal addresses, one per line.
    #[serde(default)]
    pub withdraw_addresses: String,
    /// `0.5 BTC`.
    #[serde(default)]
    pub withdraw_limit: String,
    /// `active` or `disabled` (edit only).
    #[serde(default)]
    pub status: Option<String>,
    /// A 2FA code for the step-up the change may need.
    #[serde(default)]
    pub code: Option<String>,
    /// The confirmation checkbox for IP ranges wider than /16 or /48 on a trade or withdraw key.
    #[serde(default)]
    pub confirm_wide_ip: Option<String>,
    /// The create form's one-time token (a refresh of the answer must not make a second key).
    #[serde(default)]
    pub form_token: Option<String>,
}

impl KeyForm {
    /// `trade` ticked.
    pub fn trade(&self) -> bool {
        self.perm_trade.is_some()
    }

    /// `withdraw` ticked.
    pub fn withdraw(&self) -> bool {
        self.perm_withdraw.is_some()
    }

    /// The wide-IP-range confirmation ticked.
    pub fn confirm_wide_ip(&self) -> bool {
        self.confirm_wide_ip.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_cidr_names_the_entry() {
        let err = ip_allowlist(&split_list("203.0.113.0/24\n10.0.0.300/8")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("10.0.0.300/8"), "{msg}");
        assert!(msg.starts_with("IP allowlist:"), "{msg}");
    }

    #[test]
    fn expiry_accepts_dates_and_datetimes() {
        assert_eq!(expiry("2026-01-01T00:00").unwrap(), Some(UnixMillis(1_767_225_600_000)));
        assert_eq!(expiry("").unwrap(), None);
        assert!(expiry("tomorrow").is_err());
        assert_eq!(expiry_text(Some(UnixMillis(1_767_225_600_000))), "2026-01-01T00:00");
    }

    #[test]
    fn withdraw_limit_needs_amount_and_asset() {
        assert!(withdraw_limit("0.5 btc").unwrap().is_some());
        assert!(withdraw_limit("0.5").is_err());
        assert!(withdraw_limit("").unwrap().is_none());
    }
}
