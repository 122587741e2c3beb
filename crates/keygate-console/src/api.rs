//! The JSON management API, `/api/console/v1/...`: the same operations as the pages, over the
//! same cookie session. Every state-changing call needs the `X-CSRF-Token` header (from
//! `GET /session`, or from the answer of the call that last rotated the session).

use crate::forms;
use crate::pages::wallet;
use crate::pages::{maybe_step_up, recent_audit};
use crate::session::{Ctx, Viewer};
use crate::{Console, ConsoleError};
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post};
use axum::{Json, Router};
use keygate_auth::{ApiKeyId, KeyStatus, Permissions};
use keygate_service::{KeyEdit, NewKey, NewKeyMaterial, ServiceError, SessionInfo};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The API router and the `(METHOD, path)` of every operation it serves, so a test can hold the
/// OpenAPI document to exactly this list.
pub(crate) fn routes() -> (Router<Console>, Vec<(&'static str, &'static str)>) {
    let table: Vec<(&'static str, &'static str, MethodRouter<Console>)> = vec![
        ("GET", "/api/console/v1/openapi.json", get(openapi)),
        ("GET", "/api/console/v1/session", get(session)),
        ("POST", "/api/console/v1/signup", post(signup)),
        ("POST", "/api/console/v1/login", post(login)),
        ("POST", "/api/console/v1/login/totp", post(login_totp)),
        ("POST", "/api/console/v1/logout", post(logout)),
        ("POST", "/api/console/v1/password", post(password)),
        ("GET", "/api/console/v1/2fa", get(two_factor)),
        ("POST", "/api/console/v1/2fa/enroll", post(enroll)),
        ("POST", "/api/console/v1/2fa/confirm", post(confirm)),
        ("POST", "/api/console/v1/2fa/disable", post(disable)),
        ("POST", "/api/console/v1/2fa/recovery-codes", post(recovery_codes)),
        ("POST", "/api/console/v1/step-up", post(step_up)),
        ("GET", "/api/console/v1/keys", get(list_keys)),
        ("POST", "/api/console/v1/keys", post(create_key)),
        ("POST", "/api/console/v1/keys/revoke-all", post(revoke_all)),
        ("POST", "/api/console/v1/keys/reconfirm", post(reconfirm)),
        ("GET", "/api/console/v1/keys/{id}", get(get_key)),
        ("PATCH", "/api/console/v1/keys/{id}", patch(edit_key)),
        ("DELETE", "/api/console/v1/keys/{id}", delete(revoke_key)),
        ("GET", "/api/console/v1/audit", get(audit)),
        ("GET", "/api/console/v1/wallet", get(wallet_json)),
        ("POST", "/api/console/v1/wallet/faucet", post(faucet)),
        ("GET", "/api/console/v1/webhooks", get(list_webhooks)),
        ("POST", "/api/console/v1/webhooks", post(create_webhook)),
        ("DELETE", "/api/console/v1/webhooks/{id}", delete(delete_webhook)),
        ("GET", "/api/console/v1/webhooks/{id}/deliveries", get(webhook_deliveries)),
        ("GET", "/api/console/v1/notices", get(notices)),
    ];
    let mut router = Router::new();
    let mut ops = Vec::with_capacity(table.len());
    for (method, path, handler) in table {
        ops.push((method, path));
        router = router.route(path, handler);
    }
    (router, ops)
}

/// A JSON object body whose rejection is a [`ConsoleError`] (the API's error shape). Every body
/// of the API is an object: anything else is 400, even where serde would read a struct from an
/// array (`[]` is a valid struct with only optional fields to serde, not to the document).
pub(crate) struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Console> for Body<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &Console) -> Result<Self, ConsoleError> {
        let value = match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v @ serde_json::Value::Object(_))) => v,
            Ok(Json(_)) => return Err(ConsoleError::BadRequest("the body must be a JSON object".into())),
            Err(e) => return Err(ConsoleError::BadRequest(e.body_text())),
        };
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| ConsoleError::BadRequest(format!("the body does not have the documented shape: {e}")))
    }
}

type ApiResult = Result<Response, ConsoleError>;

fn json<T: Serialize>(status: StatusCode, v: &T, cookies: &[HeaderValue]) -> Response {
    let mut res = (status, Json(v)).into_response();
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    res
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::DOCUMENT).into_response()
}

/// The session as the API shows it.
#[derive(Debug, Serialize)]
struct SessionJson {
    authenticated: bool,
    account: Option<String>,
    two_factor_enabled: bool,
    two_factor_pending: bool,
    stepped_up_until: Option<u64>,
    withdrawals_locked_until: Option<u64>,
    idle_expires_at: Option<u64>,
    csrf_token: String,
}

impl SessionJson {
    fn of(i: &SessionInfo) -> Self {
        Self {
            authenticated: !i.two_factor_pending,
            account: Some(i.account.clone()),
            two_factor_enabled: i.two_factor_enabled,
            two_factor_pending: i.two_factor_pending,
            stepped_up_until: i.stepped_up_until.map(|t| t.0),
            withdrawals_locked_until: i.withdrawals_locked_until.map(|t| t.0),
            idle_expires_at: Some(i.idle_expires_at.0),
            csrf_token: i.csrf_token.clone(),
        }
    }
}

/// `GET /session`: the current session, or (anonymous) a pre-session CSRF token for sign-up
/// and login.
async fn session(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    if let Some(token) = &ctx.token
        && let Ok(info) = c.service().session(token, ctx.source.clone()).await
    {
        return Ok(json(StatusCode::OK, &SessionJson::of(&info), &[]));
    }
    let (csrf, cookie) = ctx.pre_token()?;
    let body = SessionJson {
        authenticated: false,
        account: None,
        two_factor_enabled: false,
        two_factor_pending: false,
        stepped_up_until: None,
        withdrawals_locked_until: None,
        idle_expires_at: None,
        csrf_token: csrf,
    };
    Ok(json(StatusCode::OK, &body, cookie.as_slice()))
}

#[derive(Debug, Deserialize)]
struct Credentials {
    name: String,
    password: Zeroizing<String>,
}

/// The sign-up body: credentials and, when the server takes sign-ups by invitation, the code.
#[derive(Debug, Deserialize)]
struct SignUp {
    name: String,
    password: Zeroizing<String>,
    #[serde(default)]
    invite: Option<String>,
}

async fn signup(State(c): State<Console>, ctx: Ctx, Body(b): Body<SignUp>) -> ApiResult {
    ctx.check_pre_csrf(None)?;
    let name = b.name.trim().to_ascii_lowercase();
    c.service().sign_up_with_invite(&name, b.password.clone(), b.invite.as_deref(), ctx.source.clone()).await?;
    let s = c.service().login(&name, b.password, ctx.source.clone()).await?;
    Ok(json(StatusCode::CREATED, &SessionJson::of(&s.info), &[ctx.session_cookie(&s.token)]))
}

async fn login(State(c): State<Console>, ctx: Ctx, Body(b): Body<Credentials>) -> ApiResult {
    ctx.check_pre_csrf(None)?;
    // Names are lower-case, as the form login and both sign-ups take them.
    let s = c.service().login(&b.name.trim().to_ascii_lowercase(), b.password, ctx.source.clone()).await?;
    Ok(json(StatusCode::OK, &SessionJson::of(&s.info), &[ctx.session_cookie(&s.token)]))
}

#[derive(Debug, Deserialize)]
struct CodeBody {
    #[serde(default)]
    code: String,
}

async fn login_totp(State(c): State<Console>, ctx: Ctx, Body(b): Body<CodeBody>) -> ApiResult {
    let (token, _) = ctx.pending(&c).await.ok_or(ConsoleError::NotLoggedIn)?;
    ctx.check_session_csrf(&token, None)?;
    let s = c.service().login_second_factor(&token, b.code.trim(), ctx.source.clone(), ctx.device.as_deref()).await?;
    Ok(json(StatusCode::OK, &SessionJson::of(&s.info), &ctx.login_cookies(&s)))
}

async fn logout(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let token = ctx.token.clone().ok_or(ConsoleError::NotLoggedIn)?;
    ctx.check_session_csrf(&token, None)?;
    c.service().logout(&token, ctx.source.clone()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "logged_out": true }), &[ctx.clear_session_cookie()]))
}

#[derive(Debug, Deserialize)]
struct PasswordBody {
    current: Zeroizing<String>,
    password: Zeroizing<String>,
    /// The 2FA code, needed with the change when the account has 2FA.
    #[serde(default)]
    code: Option<Zeroizing<String>>,
}

/// `POST /password`: ends every session of the account but this one (which gets a new id).
async fn password(State(c): State<Console>, ctx: Ctx, Body(b): Body<PasswordBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let s = c
        .service()
        .change_password(&v.token, b.current, b.password, b.code.as_deref().map(String::as_str), ctx.source.clone())
        .await?;
    Ok(json(StatusCode::OK, &SessionJson::of(&s.info), &ctx.login_cookies(&s)))
}

/// The logged-in viewer of a state-changing call, CSRF header checked.
async fn acting(c: &Console, ctx: &Ctx) -> Result<Viewer, ConsoleError> {
    let v = ctx.viewer(c).await?;
    ctx.check_session_csrf(&v.token, None)?;
    Ok(v)
}

async fn two_factor(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    let s = c.service().two_factor_status(&v.actor, &v.info.account).await?;
    Ok(json(StatusCode::OK, &s, &[]))
}

async fn enroll(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let e = c.service().totp_enroll(&v.actor).await?;
    let body = serde_json::json!({
        "otpauth_uri": e.otpauth_uri,
        "secret": e.secret_base32,
        "qr_svg": e.qr_svg,
    });
    Ok(json(StatusCode::OK, &body, &[]))
}

async fn confirm(State(c): State<Console>, ctx: Ctx, Body(b): Body<CodeBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let codes = c.service().totp_confirm(&v.actor, b.code.trim()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "recovery_codes": codes.codes }), &[]))
}

async fn disable(State(c): State<Console>, ctx: Ctx, Body(b): Body<CodeBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    c.service().totp_disable(&v.actor, b.code.trim()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "two_factor_enabled": false }), &[]))
}

async fn recovery_codes(State(c): State<Console>, ctx: Ctx, Body(b): Body<CodeBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let codes = c.service().regenerate_recovery_codes(&v.actor, b.code.trim()).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "recovery_codes": codes.codes }), &[]))
}

async fn step_up(State(c): State<Console>, ctx: Ctx, Body(b): Body<CodeBody>) -> ApiResult {
    let mut v = acting(&c, &ctx).await?;
    if b.code.trim().is_empty() {
        return Err(ConsoleError::BadRequest("give the 6-digit code from your authenticator app in \"code\"".into()));
    }
    let cookie = maybe_step_up(&c, &ctx, &mut v, Some(&b.code)).await?;
    Ok(json(StatusCode::OK, &SessionJson::of(&v.info), cookie.as_slice()))
}

async fn list_keys(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &c.service().list_keys(&v.actor, None).await?, &[]))
}

async fn get_key(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &c.service().key(&v.actor, key_id(&id)?).await?, &[]))
}

/// A JSON list of permission names, each exactly `read`, `trade` or `withdraw` (the document's
/// enum): unlike the form's comma-separated text, nothing is split, trimmed or case-folded.
fn parse_permissions(list: &[String]) -> Result<Permissions, ConsoleError> {
    let mut names = Vec::with_capacity(list.len());
    for p in list {
        if !matches!(p.as_str(), "read" | "trade" | "withdraw") {
            return Err(invalid(format!("unknown permission {p:?}; the permissions are read, trade and withdraw")));
        }
        names.push(p.as_str());
    }
    Permissions::parse_list(&names.join(",")).map_err(|e| invalid(e.to_string()))
}

/// A well-formed request whose value breaks a rule the document's schema cannot express: 422
/// `invalid`. 400 stays for bodies that are not JSON of the documented shape.
fn invalid(message: String) -> ConsoleError {
    ConsoleError::Service(ServiceError::Invalid(message))
}

/// The form helpers answer 400 for a bad value; in the JSON API that is a 422 (see [`invalid`]).
fn semantic(e: ConsoleError) -> ConsoleError {
    match e {
        ConsoleError::BadRequest(m) => invalid(m),
        other => other,
    }
}

/// The key id of a `/keys/{id}` path. Text that is no key id names no key of the account: 404,
/// as for a well-formed id the account does not own.
fn key_id(id: &str) -> Result<&str, ConsoleError> {
    match ApiKeyId::parse(id) {
        Ok(_) => Ok(id),
        Err(_) => Err(ConsoleError::Service(ServiceError::NotFound(format!("{id:?} is not a key id")))),
    }
}

/// `POST /keys`.
#[derive(Debug, Deserialize)]
struct NewKeyBody {
    #[serde(default)]
    label: String,
    /// `hmac` (default), `ed25519`, `rsa`.
    #[serde(default, rename = "type")]
    key_type: Option<String>,
    #[serde(default)]
    public_key: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    ip_allowlist: Vec<String>,
    #[serde(default)]
    symbols: Vec<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    withdraw_addresses: Vec<String>,
    #[serde(default)]
    withdraw_limit_24h: Option<String>,
    #[serde(default)]
    code: Option<String>,
    /// Confirms IP ranges wider than /16 (IPv4) or /48 (IPv6) on a trade or withdraw key.
    #[serde(default)]
    confirm_wide_ip: bool,
}

async fn create_key(State(c): State<Console>, ctx: Ctx, Body(b): Body<NewKeyBody>) -> ApiResult {
    let mut v = acting(&c, &ctx).await?;
    let pem = b.public_key.clone().unwrap_or_default();
    let material = match b.key_type.as_deref().unwrap_or("hmac") {
        "hmac" => NewKeyMaterial::Hmac,
        "ed25519" => NewKeyMaterial::Ed25519(pem),
        "rsa" => NewKeyMaterial::Rsa(pem),
        other => return Err(invalid(format!("unknown key type {other:?}: hmac, ed25519 or rsa"))),
    };
    let new = NewKey {
        account: v.info.account.clone(),
        label: b.label.trim().to_owned(),
        material,
        permissions: parse_permissions(&b.permissions)?,
        restrictions: keygate_auth::Restrictions {
            ip_allowlist: forms::ip_allowlist(&b.ip_allowlist).map_err(semantic)?,
            expires_at: b.expires_at.map(keygate_proto::UnixMillis),
            symbols: forms::symbols(&b.symbols).map_err(semantic)?,
            withdraw_addresses: forms::addresses(&b.withdraw_addresses),
            withdraw_limit_24h: forms::withdraw_limit(b.withdraw_limit_24h.as_deref().unwrap_or(""))
                .map_err(semantic)?,
        },
        confirm_wide_ip: b.confirm_wide_ip,
    };
    let cookie = maybe_step_up(&c, &ctx, &mut v, b.code.as_deref()).await?;
    match c.service().create_key(&v.actor, new).await {
        Ok(created) => Ok(json(StatusCode::CREATED, &created, cookie.as_slice())),
        Err(e) => {
            let mut r = ConsoleError::from(e).into_response();
            if let Some(c) = cookie {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(r)
        }
    }
}

/// `PATCH /keys/{id}`: absent fields stay as they are.
#[derive(Debug, Default, Deserialize)]
struct EditBody {
    label: Option<String>,
    permissions: Option<Vec<String>>,
    ip_allowlist: Option<Vec<String>>,
    /// `null` removes the expiry; absent leaves it.
    #[serde(default, with = "double_option")]
    expires_at: Option<Option<u64>>,
    symbols: Option<Vec<String>>,
    withdraw_addresses: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    withdraw_limit_24h: Option<Option<String>>,
    /// `active` or `disabled`.
    status: Option<String>,
    code: Option<String>,
    /// Confirms IP ranges wider than /16 (IPv4) or /48 (IPv6) that the edit brings to a trade or
    /// withdraw key.
    #[serde(default)]
    confirm_wide_ip: bool,
}

mod double_option {
    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn edit_key(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>, Body(b): Body<EditBody>) -> ApiResult {
    let mut v = acting(&c, &ctx).await?;
    let id = key_id(&id)?;
    let edit = KeyEdit {
        label: b.label.map(|l| l.trim().to_owned()),
        permissions: b.permissions.as_deref().map(parse_permissions).transpose()?,
        ip_allowlist: b.ip_allowlist.as_deref().map(forms::ip_allowlist).transpose().map_err(semantic)?,
        expires_at: b.expires_at.map(|e| e.map(keygate_proto::UnixMillis)),
        symbols: b.symbols.as_deref().map(forms::symbols).transpose().map_err(semantic)?,
        withdraw_addresses: b.withdraw_addresses.as_deref().map(forms::addresses),
        withdraw_limit_24h: match b.withdraw_limit_24h {
            None => None,
            Some(l) => Some(forms::withdraw_limit(l.as_deref().unwrap_or("")).map_err(semantic)?),
        },
        status: match b.status.as_deref() {
            None => None,
            Some("active") => Some(KeyStatus::Active),
            Some("disabled") => Some(KeyStatus::Disabled),
            Some(other) => {
                return Err(invalid(format!("status {other:?}: active or disabled (DELETE the key to revoke it)")));
            }
        },
        confirm_wide_ip: b.confirm_wide_ip,
    };
    let cookie = maybe_step_up(&c, &ctx, &mut v, b.code.as_deref()).await?;
    match c.service().edit_key(&v.actor, id, edit).await {
        Ok(k) => Ok(json(StatusCode::OK, &k, cookie.as_slice())),
        Err(e) => {
            let mut r = ConsoleError::from(e).into_response();
            if let Some(c) = cookie {
                r.headers_mut().append(header::SET_COOKIE, c);
            }
            Ok(r)
        }
    }
}

async fn revoke_key(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    Ok(json(StatusCode::OK, &c.service().revoke_key(&v.actor, key_id(&id)?).await?, &[]))
}

/// `POST /keys/revoke-all`: the code is optional (and may be `null`) while an elevated window
/// is open, as for the other key changes.
#[derive(Debug, Deserialize)]
struct OptionalCodeBody {
    #[serde(default)]
    code: Option<String>,
}

async fn revoke_all(State(c): State<Console>, ctx: Ctx, Body(b): Body<OptionalCodeBody>) -> ApiResult {
    let mut v = acting(&c, &ctx).await?;
    let cookie = maybe_step_up(&c, &ctx, &mut v, b.code.as_deref()).await?;
    let account = v.info.account.clone();
    let n = c.service().revoke_all_keys(&v.actor, &account).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "revoked": n }), cookie.as_slice()))
}

/// `POST /keys/reconfirm`: after a password change, keeps the trade and withdraw keys working
/// (issue #17); needs a step-up like the other key changes.
async fn reconfirm(State(c): State<Console>, ctx: Ctx, Body(b): Body<OptionalCodeBody>) -> ApiResult {
    let mut v = acting(&c, &ctx).await?;
    let cookie = maybe_step_up(&c, &ctx, &mut v, b.code.as_deref()).await?;
    let account = v.info.account.clone();
    let n = c.service().reconfirm_keys(&v.actor, &account).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "reconfirmed": n }), cookie.as_slice()))
}

async fn audit(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &recent_audit(&c, &v, 1000).await?, &[]))
}

async fn wallet_json(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &wallet::load(&c, v.info.account_id).await?, &[]))
}

#[derive(Debug, Deserialize)]
struct FaucetBody {
    asset: String,
}

async fn faucet(State(c): State<Console>, ctx: Ctx, Body(b): Body<FaucetBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    Ok(json(StatusCode::CREATED, &wallet::faucet(&c, &v, &b.asset).await.map_err(semantic)?, &[]))
}

async fn list_webhooks(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &c.service().list_webhooks(&v.actor, None).await?, &[]))
}

#[derive(Debug, Deserialize)]
struct NewWebhookBody {
    url: String,
    #[serde(default)]
    description: String,
}

/// `POST /webhooks`: the answer holds the endpoint's `secret`, shown this once.
async fn create_webhook(State(c): State<Console>, ctx: Ctx, Body(b): Body<NewWebhookBody>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let account = v.info.account.clone();
    let created = c.service().create_webhook(&v.actor, &account, &b.url, &b.description).await?;
    Ok(json(StatusCode::CREATED, &created, &[]))
}

fn endpoint_id(id: &str) -> Result<i64, ConsoleError> {
    id.parse().map_err(|_| ConsoleError::Service(ServiceError::NotFound(format!("webhook endpoint {id}"))))
}

/// `DELETE /webhooks/{id}`: needs an elevated window (a step-up), as it silences alerts.
async fn delete_webhook(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let v = acting(&c, &ctx).await?;
    let id = endpoint_id(&id)?;
    c.service().delete_webhook(&v.actor, id).await?;
    Ok(json(StatusCode::OK, &serde_json::json!({ "id": id, "deleted": true }), &[]))
}

async fn webhook_deliveries(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    Ok(json(StatusCode::OK, &c.service().webhook_deliveries(&v.actor, endpoint_id(&id)?, 100).await?, &[]))
}

async fn notices(State(c): State<Console>, ctx: Ctx) -> ApiResult {
    let v = ctx.viewer(&c).await?;
    let account = v.info.account.clone();
    Ok(json(StatusCode::OK, &c.service().notices(&v.actor, &account, 100).await?, &[]))
}
