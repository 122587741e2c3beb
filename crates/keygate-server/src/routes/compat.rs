//! Endpoints that exist only so that ccxt's default `load_markets()` succeeds (reference G1): it
//! always asks for the futures markets and, with a key, for the margin pairs. The sandbox has
//! neither product, so the answers are empty, in Binance's shapes.

use super::BinanceJson;
use super::market::public_params;
use crate::extract::Signed;
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use keygate_proto::binance::market::ExchangeInfo;

/// `GET /fapi/v1/exchangeInfo` and `GET /dapi/v1/exchangeInfo` (public): no futures markets.
pub(crate) async fn futures_exchange_info(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<ExchangeInfo>, ApiError> {
    public_params(q.as_deref(), &[])?;
    Ok(BinanceJson(ExchangeInfo {
        timezone: "UTC".to_owned(),
        server_time: state.service.clock().now().as_millis(),
        rate_limits: Vec::new(),
        rate_limits_scope: None,
        exchange_filters: Vec::new(),
        symbols: Vec::new(),
    }))
}

/// `GET /sapi/v1/margin/allPairs` and `GET /sapi/v1/margin/isolated/allPairs` (USER_DATA): no
/// margin pairs.
pub(crate) async fn margin_pairs(_: State<AppState>, signed: Signed) -> Result<BinanceJson<[(); 0]>, ApiError> {
    signed.request.params().ensure_only(&[])?;
    Ok(BinanceJson([]))
}
