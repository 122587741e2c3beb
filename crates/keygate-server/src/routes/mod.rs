//! Route table: every endpoint with its security type.

mod account;
mod health;
mod public;

use crate::error::{InternalCause, JSON};
use crate::{ApiError, AppState, request_id};
use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::time::Duration;
use tower_http::trace::TraceLayer;

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

pub(crate) fn router(state: AppState) -> Router {
    // Trace only method, path and request id: the query string carries signatures and signed
    // payloads, which must never reach a log line.
    let trace = TraceLayer::new_for_http()
        .make_span_with(|req: &axum::extract::Request| {
            let id = req.extensions().get::<request_id::RequestId>().map_or("", |r| r.0.as_str()).to_owned();
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        })
        .on_request(())
        .on_response(|res: &Response, latency: Duration, _span: &tracing::Span| {
            if let Some(InternalCause(cause)) = res.extensions().get::<InternalCause>() {
                tracing::error!(status = res.status().as_u16(), ?latency, %cause, "request failed");
            } else {
                tracing::debug!(status = res.status().as_u16(), ?latency, "answered");
            }
        });
    Router::new()
        .route("/api/v3/ping", get(public::ping))
        .route("/api/v3/time", get(public::time))
        .route("/sapi/v1/account/apiRestrictions", get(account::api_restrictions))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(trace)
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(state)
}
