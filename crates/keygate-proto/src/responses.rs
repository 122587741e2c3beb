//! JSON shapes of the endpoints, field for field as Binance sends them.

use serde::{Deserialize, Serialize};

/// `GET /api/v3/time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    /// Server time in milliseconds.
    pub server_time: u64,
}

/// `GET /sapi/v1/account/apiRestrictions`: what the calling key may do, in Binance's shape.
///
/// Products the sandbox does not have (margin, futures, options, FIX) are always `false`, so
/// clients that inspect these flags see an honest answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // Binance's shape: one boolean per permission.
pub struct ApiRestrictions {
    /// True when the key has an IP allowlist.
    pub ip_restrict: bool,
    /// Creation time of the key, ms.
    pub create_time: u64,
    /// Always true: every key can read.
    pub enable_reading: bool,
    /// The key holds the `withdraw` permission.
    pub enable_withdrawals: bool,
    /// Not offered by the sandbox.
    pub enable_internal_transfer: bool,
    /// Not offered by the sandbox.
    pub enable_margin: bool,
    /// Not offered by the sandbox.
    pub enable_futures: bool,
    /// Not offered by the sandbox.
    pub permits_universal_transfer: bool,
    /// Not offered by the sandbox.
    pub enable_vanilla_options: bool,
    /// Not offered by the sandbox.
    pub enable_fix_api_trade: bool,
    /// Not offered by the sandbox.
    pub enable_fix_read_only: bool,
    /// The key holds the `trade` permission.
    pub enable_spot_and_margin_trading: bool,
    /// Not offered by the sandbox.
    pub enable_portfolio_margin_trading: bool,
    /// Expiry of the key in ms when it has one (keygate expires the whole key, not one permission).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trading_authority_expiration_time: Option<u64>,
}
