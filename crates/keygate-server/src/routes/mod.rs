//! Route table: every endpoint with its security type.

mod account;
mod compat;
mod health;
mod market;
mod public;
pub(crate) mod time_unit;
mod trading;
mod wallet;
mod wire;

use crate::error::JSON;
use crate::{ApiError, AppState};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

/// A JSON answer with Binance's content type.
pub(crate) struct BinanceJson<T>(pub T);

impl<T: Serialize> IntoResponse for BinanceJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], body).into_response(),
            Err(e) => ApiError::Internal(format!("serialising a response: {e}")).into_response(),
        }
    }
}

/// The console's pages and JSON API, told the client address the same way the exchange routes
/// resolve it (trusted proxies included).
fn console_routes(state: &AppState) -> Router<AppState> {
    keygate_console::router(state.console.clone())
        .layer(axum::middleware::from_fn_with_state(state.clone(), console_client_addr))
}

async fn console_client_addr(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(ip) = crate::extract::request_client_ip(&req, &state) {
        req.extensions_mut().insert(keygate_console::ClientAddr(ip));
    }
    next.run(req).await
}

pub(crate) fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/api/v3/ping", get(public::ping))
        .route("/api/v3/time", get(public::time))
        .route("/sapi/v1/system/status", get(public::system_status))
        .route("/sapi/v1/account/apiRestrictions", get(account::api_restrictions))
        // Market data (NONE).
        .route("/api/v3/exchangeInfo", get(market::exchange_info))
        .route("/api/v3/depth", get(market::depth))
        .route("/api/v3/trades", get(market::trades))
        .route("/api/v3/aggTrades", get(market::agg_trades))
        .route("/api/v3/historicalTrades", get(market::historical_trades))
        .route("/api/v3/klines", get(market::klines))
        .route("/api/v3/uiKlines", get(market::klines))
        .route("/api/v3/ticker/price", get(market::ticker_price))
        .route("/api/v3/ticker/24hr", get(market::ticker_24hr))
        .route("/api/v3/ticker/bookTicker", get(market::book_ticker))
        .route("/api/v3/avgPrice", get(market::avg_price))
        // Spot account and orders (USER_DATA reads, TRADE writes).
        .route("/api/v3/account", get(trading::account))
        .route("/api/v3/account/commission", get(trading::account_commission))
        .route("/api/v3/order", get(trading::query_order).post(trading::new_order).delete(trading::cancel_order))
        .route("/api/v3/order/test", post(trading::test_order))
        .route("/api/v3/openOrders", get(trading::open_orders).delete(trading::cancel_open_orders))
        .route("/api/v3/allOrders", get(trading::all_orders))
        .route("/api/v3/myTrades", get(trading::my_trades))
        // Wallet (USER_DATA reads; withdrawals need the withdraw permission).
        .route("/sapi/v1/capital/config/getall", get(wallet::all_coins))
        .route("/sapi/v1/capital/deposit/hisrec", get(wallet::deposit_history))
        .route("/sapi/v1/capital/deposit/address", get(wallet::deposit_address))
        .route("/sapi/v1/capital/withdraw/history", get(wallet::withdraw_history))
        .route("/sapi/v1/capital/withdraw/apply", post(wallet::withdraw))
        .route("/sapi/v1/asset/tradeFee", get(wallet::trade_fee))
        // ccxt's default load_markets() (reference G1).
        .route("/fapi/v1/exchangeInfo", get(compat::futures_exchange_info))
        .route("/dapi/v1/exchangeInfo", get(compat::futures_exchange_info))
        .route("/sapi/v1/margin/allPairs", get(compat::margin_pairs))
        .route("/sapi/v1/margin/isolated/allPairs", get(compat::margin_pairs))
        .merge(console_routes(&state))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    // With rate limits off (`serve --rate-limits off`) there is nothing to count or to answer in
    // `X-MBX-USED-WEIGHT-*`, so the layer is left out rather than passed through on every request.
    let routes = if state.limiter.config().enabled {
        routes.layer(axum::middleware::from_fn_with_state(state.clone(), crate::weight::layer))
    } else {
        routes
    };
    // Outermost: one access line per answer, whoever answered (see access_log).
    routes.layer(axum::middleware::from_fn_with_state(state.clone(), crate::access_log::layer)).with_state(state)
}
