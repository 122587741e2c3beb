//! The machine side of connected apps (issue #15): `POST /oauth/token`, which answers with an
//! API key bound to the app, and the RFC 8414 metadata at
//! `/.well-known/oauth-authorization-server`, from which OAuth client libraries configure
//! themselves. The consent page is in `pages::apps`.
//!
//! Token answers carry `Cache-Control: no-store` (the console's headers, on every answer) and
//! RFC 6749 section 5.2 errors as JSON; an app that authenticated with `Authorization: Basic`
//! and failed gets 401 with `WWW-Authenticate`.

use crate::session::source_of;
use crate::{Console, ConsoleError};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keygate_auth::oauth::{self, ErrorCode, OAuthError};
use keygate_service::apps::TokenParams;
use zeroize::Zeroizing;

/// Largest token request body read.
const MAX_TOKEN_BODY: usize = 16 * 1024;

/// The routes of this module.
pub(crate) fn routes() -> Router<Console> {
    Router::new().route("/oauth/token", post(token)).route("/.well-known/oauth-authorization-server", get(metadata))
}

fn error_response(e: &OAuthError, basic: bool) -> Response {
    let status = match e.code {
        ErrorCode::InvalidClient if basic => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let body = serde_json::json!({ "error": e.code.as_str(), "error_description": e.description });
    let mut res = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"keygate\""));
    }
    res
}

/// `POST /oauth/token` (`application/x-www-form-urlencoded`).
async fn token(State(c): State<Console>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let source = source_of(&parts);
    let basic_header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bytes: Bytes = match axum::body::to_bytes(body, MAX_TOKEN_BODY).await {
        Ok(b) => b,
        Err(_) => return error_response(&OAuthError::new(ErrorCode::InvalidRequest, "request body too large"), false),
    };
    let mut p = TokenParams::default();
    let mut seen = std::collections::HashSet::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        if !seen.insert(k.clone().into_owned()) {
            let e = OAuthError::new(ErrorCode::InvalidRequest, format!("parameter {k} is repeated"));
            return error_response(&e, false);
        }
        let v = v.into_owned();
        match k.as_ref() {
            "grant_type" => p.grant_type = Some(v),
            "code" => p.code = Some(v),
            "redirect_uri" => p.redirect_uri = Some(v),
            "client_id" => p.client_id = Some(v),
            "client_secret" => p.client_secret = Some(Zeroizing::new(v)),
            "code_verifier" => p.code_verifier = Some(v),
            "public_key" => p.public_key = Some(v),
            _ => {}
        }
    }
    let basic = basic_header.is_some();
    if let Some(h) = basic_header {
        match oauth::parse_basic(&h) {
            Ok(creds) => p.basic = Some(creds),
            Err(e) => return error_response(&e, true),
        }
    }
    match c.service().token(p, source).await {
        Ok(answer) => (StatusCode::OK, axum::Json(answer)).into_response(),
        Err(e) => error_response(&e, basic),
    }
}

/// The issuer: this server as the client reached it (its `Host`, which the console's allowlist
/// already checked), `https` when served over TLS.
fn issuer(c: &Console, headers: &axum::http::HeaderMap) -> Result<String, ConsoleError> {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| ConsoleError::BadRequest("no Host header".into()))?;
    let scheme = if c.config().secure_cookies { "https" } else { "http" };
    Ok(format!("{scheme}://{host}"))
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414 section 3).
async fn metadata(State(c): State<Console>, headers: axum::http::HeaderMap) -> Response {
    let issuer = match issuer(&c, &headers) {
        Ok(i) => i,
        Err(e) => return (e.status(), e.message()).into_response(),
    };
    let body = serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "scopes_supported": ["read", "trade"],
        "authorization_details_types_supported": [oauth::DETAILS_TYPE],
        "service_documentation": format!("{issuer}/console/"),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
