//! `X-MBX-TIME-UNIT`: Binance Spot's REST API lets a request choose microseconds for the times in
//! its JSON answer (`MICROSECOND`/`microsecond`; `MILLISECOND`/`millisecond` is the default), and
//! python-binance (`time_unit=`) and the official SDK (`ConfigurationRestAPI(time_unit=...)`) send
//! it when asked. It applies to `/api/*` only; the wallet (`/sapi/*`) keeps milliseconds.
//!
//! The handlers answer in milliseconds; for a microsecond request this layer rewrites the time
//! fields of the JSON answer (keygate keeps millisecond precision, so the values are exact
//! multiples of 1000). Time parameters in microseconds (`startTime`, `endTime`; `timestamp` is
//! accepted in either unit anyway) are read by magnitude in [`super::wire::opt_time`], since the
//! signed bytes cannot be rewritten before verification.

use crate::ApiError;
use crate::error::JSON;
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keygate_proto::ErrorCode;
use serde_json::Value;

/// Object fields that hold a time in Binance's `/api/v3` answers (`T`: `aggTrades`).
const TIME_FIELDS: &[&str] =
    &["serverTime", "transactTime", "time", "updateTime", "workingTime", "openTime", "closeTime", "T"];

/// The largest answer converted; a larger one is refused as an internal error (its body is
/// partly read by then). None comes near it: the largest, 5,000 depth levels a side or 1,000
/// orders, are well under a megabyte.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The header, as a `HeaderName` so that looking it up on every request parses nothing.
const X_MBX_TIME_UNIT: HeaderName = HeaderName::from_static("x-mbx-time-unit");

/// Left in a request whose `X-MBX-TIME-UNIT` names no unit, for the path to refuse once the
/// request is charged (see `access_log::logged`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BadUnit;

/// The refusal of a header that names no unit.
pub(crate) fn refusal() -> ApiError {
    ApiError::binance(ErrorCode::IllegalChars, "Invalid X-MBX-TIME-UNIT header; use MILLISECOND or MICROSECOND.")
}

/// What a request asks of its answer's times: `Ok(None)` for milliseconds (the default, and
/// every `/sapi` answer), `Ok(Some(klines))` for microseconds (`klines`: the answer is kline
/// rows), or the refusal of a header that names no unit. Only Binance's paths read the header:
/// the console, its JSON API (`/api/console/...`) and health checks ignore it. Read before the
/// request is answered; the access log layer calls it, so a request that sends no header costs
/// one header lookup.
pub(crate) fn requested(req: &Request) -> Result<Option<bool>, ApiError> {
    let path = req.uri().path();
    let api = path.starts_with("/api/v3/");
    if !api && !path.starts_with("/sapi/") {
        return Ok(None);
    }
    let Some(unit) = req.headers().get(&X_MBX_TIME_UNIT) else {
        return Ok(None);
    };
    match unit.as_bytes() {
        b"MILLISECOND" | b"millisecond" => return Ok(None),
        b"MICROSECOND" | b"microsecond" => {}
        _ => return Err(refusal()),
    }
    if !api {
        return Ok(None);
    }
    Ok(Some(path == "/api/v3/klines" || path == "/api/v3/uiKlines"))
}

/// The answer with its times in microseconds, for a request [`requested`] them.
pub(crate) async fn in_micros(res: Response, klines: bool) -> Response {
    let is_json =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY).await else {
        return ApiError::Internal("reading an answer to convert its times".into()).into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    to_micros(&mut value, klines);
    match serde_json::to_vec(&value) {
        Ok(out) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
            Response::from_parts(parts, Body::from(out))
        }
        Err(e) => ApiError::Internal(format!("serialising an answer in microseconds: {e}")).into_response(),
    }
}

/// Multiplies every time in `v` by 1000: the [`TIME_FIELDS`] of objects at any depth, and the open
/// and close times (elements 0 and 6) of kline rows.
fn to_micros(v: &mut Value, klines: bool) {
    match v {
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                if TIME_FIELDS.contains(&k.as_str()) {
                    scale(field);
                } else {
                    to_micros(field, false);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if klines && let Value::Array(row) = item {
                    for i in [0, 6] {
                        if let Some(t) = row.get_mut(i) {
                            scale(t);
                        }
                    }
                } else {
                    to_micros(item, false);
                }
            }
        }
        _ => {}
    }
}

/// A positive integer time in milliseconds becomes microseconds; anything else (e.g. `-1` for
/// "none") is left alone.
fn scale(t: &mut Value) {
    if let Some(ms) = t.as_u64().filter(|ms| *ms > 0)
        && let Some(us) = ms.checked_mul(1000)
    {
        *t = Value::from(us);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scales_time_fields_at_any_depth_and_kline_rows_only_on_klines() {
        let mut v = json!({"serverTime": 5, "orders": [{"time": 1, "price": "2.0", "orderId": 7, "workingTime": -1}]});
        to_micros(&mut v, false);
        assert_eq!(
            v,
            json!({"serverTime": 5000, "orders": [{"time": 1000, "price": "2.0", "orderId": 7, "workingTime": -1}]})
        );
        let mut k = json!([[1, "1.0", "1.0", "1.0", "1.0", "0", 2, "0", 0, "0", "0", "0"]]);
        to_micros(&mut k, true);
        assert_eq!(k[0][0], 1000);
        assert_eq!(k[0][6], 2000);
        assert_eq!(k[0][8], 0);
        let mut depth = json!({"lastUpdateId": 3, "bids": [["1.0", "2.0"]]});
        to_micros(&mut depth, false);
        assert_eq!(depth, json!({"lastUpdateId": 3, "bids": [["1.0", "2.0"]]}));
    }
}
