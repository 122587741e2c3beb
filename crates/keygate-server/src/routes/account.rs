//! Key introspection.

use super::BinanceJson;
use crate::extract::Signed;
use crate::{ApiError, AppState};
use axum::extract::State;
use keygate_auth::Permission;
use keygate_proto::binance::account::ApiRestrictions;

/// `GET /sapi/v1/account/apiRestrictions` (USER_DATA): what the calling key may do, in Binance's
/// shape.
pub(crate) async fn api_restrictions(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<ApiRestrictions>, ApiError> {
    signed.request.params().ensure_only(&[])?;
    let key = signed.request.key();
    let last_used_time =
        state.service.key_last_used(&key.id).await.map_err(|e| ApiError::Unavailable(format!("key usage: {e}")))?;
    Ok(BinanceJson(ApiRestrictions {
        ip_restrict: !key.restrictions.ip_allowlist.is_empty(),
        create_time: key.created_at,
        enable_reading: true,
        enable_withdrawals: key.permissions.contains(Permission::Withdraw),
        enable_internal_transfer: false,
        enable_margin: false,
        enable_futures: false,
        permits_universal_transfer: false,
        enable_vanilla_options: false,
        enable_fix_api_trade: false,
        enable_fix_read_only: false,
        enable_spot_and_margin_trading: key.permissions.contains(Permission::Trade),
        enable_portfolio_margin_trading: false,
        trading_authority_expiration_time: key.restrictions.expires_at,
        connected_app: key.app_id.clone(),
        last_used_time,
    }))
}
