//! Endpoints that exist only so that ccxt's default `load_markets()` succeeds (reference G1): it
//! always asks for the futures markets and, with a key, for the margin pairs. The sandbox has
//! neither product, so the answers are empty, in Binance's shapes.

use super::BinanceJson;
use super::market::public_params;
use crate::extract::Signed;
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use serde::Serialize;

/// An `exchangeInfo` without markets.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EmptyExchangeInfo {
    timezone: &'static str,
    server_time: u64,
    rate_limits: [(); 0],
    exchange_filters: [(); 0],
    symbols: [(); 0],
}

/// `GET /fapi/v1/exchangeInfo` and `GET /dapi/v1/exchangeInfo` (public): no futures markets.
pub(crate) async fn futures_exchange_info(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<EmptyExchangeInfo>, ApiError> {
    public_params(q.as_deref(), &[])?;
    Ok(BinanceJson(EmptyExchangeInfo {
        timezone: "UTC",
        server_time: state.service.clock().now().as_millis().0,
        rate_limits: [],
        exchange_filters: [],
        symbols: [],
    }))
}

/// `GET /sapi/v1/margin/allPairs` and `GET /sapi/v1/margin/isolated/allPairs` (USER_DATA): no
/// margin pairs.
pub(crate) async fn margin_pairs(_: State<AppState>, signed: Signed) -> Result<BinanceJson<[(); 0]>, ApiError> {
    signed.request.params().ensure_only(&[])?;
    Ok(BinanceJson([]))
}
