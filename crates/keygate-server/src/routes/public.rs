//! Public endpoints (security type NONE): they ignore `X-MBX-APIKEY`, an empty one included.

use super::BinanceJson;
use crate::AppState;
use axum::extract::State;
use keygate_proto::binance::general::{ServerTime, SystemStatus};

/// `GET /api/v3/ping`: `{}`, as fixed bytes (the cheapest request is what load balancers and
/// clients' connectivity checks send most often).
pub(crate) async fn ping() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, axum::http::HeaderValue::from_static(crate::error::JSON))], "{}")
}

/// `GET /api/v3/time`: the server clock, for client clock-offset sync.
pub(crate) async fn time(State(state): State<AppState>) -> BinanceJson<ServerTime> {
    BinanceJson(ServerTime { server_time: state.service.clock().now().as_millis() })
}

/// `GET /sapi/v1/system/status` (NONE): `{"status": 0, "msg": "normal"}` while serving; the
/// clients' health checks (ccxt `fetch_status`, python-binance `get_system_status`, the
/// connector's and the wallet SDK's `system_status`) call it.
pub(crate) async fn system_status() -> BinanceJson<SystemStatus> {
    BinanceJson(SystemStatus { msg: "normal".to_owned(), status: 0 })
}
