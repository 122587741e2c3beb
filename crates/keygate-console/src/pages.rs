//! The server-rendered pages. Every form posts to a URL here and works without JavaScript; the
//! one script only adds a copy button next to a secret.

use crate::forms::{self, KeyForm};
use crate::session::{Ctx, Viewer};
use crate::view::{HoldRow, KeyRow, when};
use crate::{Console, ConsoleError, wallet};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use keygate_auth::KeyStatus;
use keygate_service::{KeyEdit, NewKey, NewKeyMaterial, ServiceError};
use serde::Deserialize;
use zeroize::Zeroizing;

pub(crate) fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/signup", get(signup_page).post(signup))
        .route("/console/login", get(login_page).post(login))
        .route("/console/login/totp", get(login_totp_page).post(login_totp))
        .route("/console/logout", post(logout))
        .route("/console/2fa", get(two_factor_page))
        .route("/console/2fa/enroll", post(two_factor_enroll))
        .route("/console/2fa/confirm", post(two_factor_confirm))
        .route("/console/2fa/disable", post(two_factor_disable))
        .route("/console/2fa/recovery-codes", post(regenerate_recovery_codes))
        .route("/console/step-up", get(step_up_page).post(step_up))
        .route("/console/password", get(password_page).post(change_password))
        .route("/console/keys", get(keys_page).post(create_key))
        .route("/console/keys/revoke-all", get(revoke_all_page).post(revoke_all))
        .route("/console/keys/{id}", get(edit_page).post(edit_key))
        .route("/console/keys/{id}/revoke", get(revoke_page).post(revoke_key))
        .route("/console/keys/{id}/remove-address", post(remove_address))
        .route("/console/audit", get(audit_page))
        .route("/console/wallet", get(wallet::page))
        .route("/console/wallet/faucet", post(wallet::faucet_form))
        .route("/console/wallet/{file}", get(wallet::csv))
        .route("/console/{*rest}", get(not_found))
}

// ---------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------

/// The navigation bar of a logged-in page.
#[derive(Debug, Clone)]
pub(crate) struct Nav {
    pub account: String,
    pub csrf: String,
    pub two_factor: bool,
    pub stepped_up: bool,
}

impl Nav {
    pub(crate) fn of(v: &Viewer, now: keygate_proto::UnixMillis) -> Self {
        Self {
            account: v.info.account.clone(),
            csrf: v.info.csrf_token.clone(),
            two_factor: v.info.two_factor_enabled,
            stepped_up: v.info.stepped_up_until.is_some_and(|u| u > now),
        }
    }
}

/// Renders a template with `status`, adding `cookies`.
pub(crate) fn render<T: Template>(status: StatusCode, t: &T, cookies: &[HeaderValue]) -> Response {
    let mut res = match t.render() {
        Ok(body) => (status, Html(body)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    };
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    res
}

/// Adds `Retry-After` to a throttled answer.
fn retry_after(mut res: Response, e: &ConsoleError) -> Response {
    if let Some(s) = e.retry_after()
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// 303 See Other to `to`, adding `cookies`.
pub(crate) fn see_other(to: &str, cookies: &[HeaderValue]) -> Response {
    let mut res = Redirect::to(to).into_response();
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    res
}

#[derive(Template)]
#[template(path = "message.html")]
pub(crate) struct MessagePage {
    pub nav: Option<Nav>,
    pub title: String,
    pub message: String,
    pub back: String,
}

/// A refusal as a page: not logged in goes to the login page; anything else says what happened.
pub(crate) fn error_page(e: &ConsoleError, nav: Option<Nav>) -> Response {
    if matches!(e, ConsoleError::NotLoggedIn | ConsoleError::Service(ServiceError::Unauthenticated(_))) {
        return see_other("/console/login", &[]);
    }
    let page = MessagePage { nav, title: "Refused".into(), message: e.message(), back: "/console/keys".into() };
    render(e.status(), &page, &[])
}

/// The withdrawal holds of the viewer's account (issue #19), for the pages that show them.
async fn hold_rows(c: &Console, v: &Viewer) -> Result<Vec<HoldRow>, ConsoleError> {
    Ok(c.service().withdrawal_holds(&v.actor, &v.info.account).await?.iter().map(HoldRow::new).collect())
}

/// The logged-in viewer, or the login page (the code prompt for a login waiting for its second
/// factor).
async fn viewer_or_login(ctx: &Ctx, c: &Console) -> Result<Viewer, Response> {
    match ctx.viewer(c).await {
        Ok(v) => Ok(v),
        Err(ConsoleError::NotLoggedIn) if ctx.pending(c).await.is_some() => Err(see_other("/console/login/totp", &[])),
        Err(e) => Err(error_page(&e, None)),
    }
}

/// Steps up with `code` when one was typed; afterwards `v` holds the rotated session, and the
/// returned cookie carries it.
pub(crate) async fn maybe_step_up(
    c: &Console,
    ctx: &Ctx,
    v: &mut Viewer,
    code: Option<&str>,
) -> Result<Option<HeaderValue>, ConsoleError> {
    let Some(code) = code.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let fresh = c.service().step_up(&v.token, code, ctx.source.clone()).await?;
    let cookie = ctx.session_cookie(&fresh.token);
    v.token = fresh.token;
    v.info = fresh.info;
    if let keygate_service::Actor::Owner { stepped_up_until, .. } = &mut v.actor {
        *stepped_up_until = v.info.stepped_up_until;
    }
    Ok(Some(cookie))
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../assets/console.css"))
}

async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../assets/console.js"))
}

async fn not_found(State(c): State<Console>, ctx: Ctx) -> Response {
    let nav = ctx.viewer(&c).await.ok().map(|v| Nav::of(&v, c.now_ms()));
    let page = MessagePage {
        nav,
        title: "Not found".into(),
        message: "There is no such page.".into(),
        back: "/console/".into(),
    };
    render(StatusCode::NOT_FOUND, &page, &[])
}

async fn home(State(c): State<Console>, ctx: Ctx) -> Response {
    if ctx.viewer(&c).await.is_ok() { see_other("/console/keys", &[]) } else { see_other("/console/login", &[]) }
}

// ---------------------------------------------------------------------------------------------
// Sign-up, login, logout.
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    nav: Option<Nav>,
    csrf: String,
    name: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SignupForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Zeroizing<String>,
    #[serde(default)]
    password2: Zeroizing<String>,
}

async fn signup_page(ctx: Ctx) -> Response {
    match ctx.pre_token() {
        Ok((csrf, cookie)) => {
            render(StatusCode::OK, &SignupPage { nav: None, csrf, name: String::new(), error: None }, cookie.as_slice())
        }
        Err(e) => error_page(&e, None),
    }
}

async fn signup(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<SignupForm>) -> Response {
    let fail = |e: ConsoleError, name: &str| {
        let csrf = ctx.pre.clone().unwrap_or_default();
        render(e.status(), &SignupPage { nav: None, csrf, name: name.to_owned(), error: Some(e.message()) }, &[])
    };
    if let Err(e) = ctx.check_pre_csrf(f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    if *f.password != *f.password2 {
        return fail(ConsoleError::BadRequest("the two passwords differ".into()), &f.name);
    }
    let name = f.name.trim().to_ascii_lowercase();
    if let Err(e) = c.service().sign_up(&name, f.password.clone(), ctx.source.clone()).await {
        return fail(e.into(), &name);
    }
    match c.service().login(&name, f.password, ctx.source.clone()).await {
        Ok(s) => see_other("/console/2fa", &[ctx.session_cookie(&s.token)]),
        Err(e) => fail(e.into(), &name),
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Option<Nav>,
    csrf: String,
    name: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Zeroizing<String>,
}

async fn login_page(ctx: Ctx) -> Response {
    match ctx.pre_token() {
        Ok((csrf, cookie)) => {
            render(StatusCode::OK, &LoginPage { nav: None, csrf, name: String::new(), error: None }, cookie.as_slice())
        }
        Err(e) => error_page(&e, None),
    }
}

async fn login(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<LoginForm>) -> Response {
    if let Err(e) = ctx.check_pre_csrf(f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    let name = f.name.trim().to_ascii_lowercase();
    match c.service().login(&name, f.password, ctx.source.clone()).await {
        Ok(s) => {
            let next = if s.info.two_factor_pending { "/console/login/totp" } else { "/console/keys" };
            see_other(next, &[ctx.session_cookie(&s.token)])
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            let csrf = ctx.pre.clone().unwrap_or_default();
            retry_after(render(e.status(), &LoginPage { nav: None, csrf, name, error: Some(e.message()) }, &[]), &e)
        }
    }
}

#[derive(Template)]
#[template(path = "login_totp.html")]
struct LoginTotpPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CodeForm {
    #[serde(default)]
    pub csrf: Option<String>,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub next: Option<String>,
    #[serde(default)]
    pub confirm: Option<String>,
}

async fn login_totp_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match ctx.pending(&c).await {
        Some((_, info)) => {
            render(StatusCode::OK, &LoginTotpPage { nav: None, csrf: info.csrf_token, error: None }, &[])
        }
        None => see_other("/console/login", &[]),
    }
}

async fn login_totp(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let Some((token, info)) = ctx.pending(&c).await else {
        return see_other("/console/login", &[]);
    };
    if let Err(e) = ctx.check_session_csrf(&token, f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    match c.service().login_second_factor(&token, f.code.trim(), ctx.source.clone()).await {
        Ok(s) => see_other("/console/keys", &[ctx.session_cookie(&s.token)]),
        Err(e) => {
            let e = ConsoleError::from(e);
            if matches!(e, ConsoleError::Service(ServiceError::Unauthenticated(_))) {
                return see_other("/console/login", &[]);
            }
            retry_after(
                render(e.status(), &LoginTotpPage { nav: None, csrf: info.csrf_token, error: Some(e.message()) }, &[]),
                &e,
            )
        }
    }
}

async fn logout(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let Some(token) = ctx.token.clone() else {
        return see_other("/console/login", &[]);
    };
    if let Err(e) = ctx.check_session_csrf(&token, f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    match c.service().logout(&token, ctx.source.clone()).await {
        Ok(()) => see_other("/console/login", &[ctx.clear_session_cookie()]),
        Err(e) => error_page(&e.into(), None),
    }
}

// ---------------------------------------------------------------------------------------------
// Two-factor authentication and step-up.
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "twofa.html")]
struct TwoFactorPage {
    nav: Option<Nav>,
    csrf: String,
    enabled: bool,
    recovery_codes_left: u32,
    /// The account-wide holds (2FA turned on, the lock after a password change or 2FA removal).
    holds: Vec<HoldRow>,
    error: Option<String>,
}

async fn two_factor_view(c: &Console, v: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    let holds = match hold_rows(c, v).await {
        Ok(h) => h.into_iter().filter(|h| h.account_wide).collect::<Vec<_>>(),
        Err(e) => return error_page(&e, Some(Nav::of(v, c.now_ms()))),
    };
    match c.service().two_factor_status(&v.actor, &v.info.account).await {
        Ok(s) => render(
            status,
            &TwoFactorPage {
                nav: Some(Nav::of(v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                enabled: s.enabled,
                recovery_codes_left: s.recovery_codes_left,
                holds,
                error,
            },
            &[],
        ),
        Err(e) => error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    }
}

async fn two_factor_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => two_factor_view(&c, &v, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

#[derive(Template)]
#[template(path = "twofa_enroll.html")]
struct EnrollPage {
    nav: Option<Nav>,
    csrf: String,
    qr_svg: String,
    secret: String,
}

async fn two_factor_enroll(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match c.service().totp_enroll(&v.actor).await {
        Ok(en) => render(
            StatusCode::OK,
            &EnrollPage {
                nav: Some(Nav::of(&v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                qr_svg: en.qr_svg.clone(),
                secret: en.secret_base32.clone(),
            },
            &[],
        ),
        Err(e) => {
            two_factor_view(&c, &v, ConsoleError::from(e).status(), Some("could not start enrollment".into())).await
        }
    }
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    nav: Option<Nav>,
    codes: Vec<String>,
}

async fn two_factor_confirm(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match c.service().totp_confirm(&v.actor, f.code.trim()).await {
        Ok(codes) => {
            // Reload the session so the navigation shows 2FA as on.
            let v = ctx.viewer(&c).await.unwrap_or(v);
            render(
                StatusCode::OK,
                &RecoveryPage { nav: Some(Nav::of(&v, c.now_ms())), codes: codes.codes.clone() },
                &[],
            )
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            let msg = format!("{} Start the setup again to get a new QR code.", e.message());
            two_factor_view(&c, &v, e.status(), Some(msg)).await
        }
    }
}

async fn regenerate_recovery_codes(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match c.service().regenerate_recovery_codes(&v.actor, f.code.trim()).await {
        Ok(codes) => render(
            StatusCode::OK,
            &RecoveryPage { nav: Some(Nav::of(&v, c.now_ms())), codes: codes.codes.clone() },
            &[],
        ),
        Err(e) => {
            let e = ConsoleError::from(e);
            two_factor_view(&c, &v, e.status(), Some(e.message())).await
        }
    }
}

async fn two_factor_disable(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match c.service().totp_disable(&v.actor, f.code.trim()).await {
        Ok(()) => see_other("/console/2fa", &[]),
        Err(e) => {
            let e = ConsoleError::from(e);
            two_factor_view(&c, &v, e.status(), Some(e.message())).await
        }
    }
}

#[derive(Template)]
#[template(path = "step_up.html")]
struct StepUpPage {
    nav: Option<Nav>,
    csrf: String,
    next: String,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// A console path to go back to after step-up; anything else (another site, a scheme-relative
/// URL, a path leaving the console, characters a `Location` header cannot carry) becomes the key
/// list. Checked before the code is used, so a bad `next` never turns a step-up into an error.
fn safe_next(next: Option<&str>) -> String {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-' | b'?' | b'=' | b'&');
    match next {
        Some(n)
            if n.len() <= 512
                && n.starts_with("/console/")
                && n.bytes().all(allowed)
                && !n.contains("//")
                && !n.contains("/..") =>
        {
            n.to_owned()
        }
        _ => "/console/keys".into(),
    }
}

async fn step_up_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NextQuery>) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => render(
            StatusCode::OK,
            &StepUpPage {
                nav: Some(Nav::of(&v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                next: safe_next(q.next.as_deref()),
                error: None,
            },
            &[],
        ),
        Err(r) => r,
    }
}

async fn step_up(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let mut v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    let next = safe_next(f.next.as_deref());
    let code = if f.code.trim().is_empty() { None } else { Some(f.code.as_str()) };
    match maybe_step_up(&c, &ctx, &mut v, code).await {
        Ok(Some(cookie)) => see_other(&next, &[cookie]),
        other => {
            let (status, msg) = match other {
                Err(e) => (e.status(), e.message()),
                _ => (StatusCode::BAD_REQUEST, "enter the 6-digit code from your authenticator app".to_owned()),
            };
            render(
                status,
                &StepUpPage {
                    nav: Some(Nav::of(&v, c.now_ms())),
                    csrf: v.info.csrf_token.clone(),
                    next,
                    error: Some(msg),
                },
                &[],
            )
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Password.
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
    done: bool,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PasswordForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    current: Zeroizing<String>,
    #[serde(default)]
    password: Zeroizing<String>,
    #[serde(default)]
    password2: Zeroizing<String>,
}

async fn password_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => render(
            StatusCode::OK,
            &PasswordPage {
                nav: Some(Nav::of(&v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                error: None,
                done: false,
            },
            &[],
        ),
        Err(r) => r,
    }
}

async fn change_password(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<PasswordForm>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    let refuse = |e: ConsoleError| {
        let page = PasswordPage {
            nav: Some(Nav::of(&v, c.now_ms())),
            csrf: v.info.csrf_token.clone(),
            error: Some(e.message()),
            done: false,
        };
        retry_after(render(e.status(), &page, &[]), &e)
    };
    if *f.password != *f.password2 {
        return refuse(ConsoleError::BadRequest("the two new passwords differ".into()));
    }
    match c.service().change_password(&v.token, f.current, f.password, ctx.source.clone()).await {
        Ok(fresh) => {
            let page = PasswordPage {
                nav: Some(Nav {
                    account: fresh.info.account.clone(),
                    csrf: fresh.info.csrf_token.clone(),
                    two_factor: fresh.info.two_factor_enabled,
                    stepped_up: false,
                }),
                csrf: fresh.info.csrf_token.clone(),
                error: None,
                done: true,
            };
            render(StatusCode::OK, &page, &[ctx.session_cookie(&fresh.token)])
        }
        Err(e) => refuse(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------------------

/// What the create form shows (kept on errors so nothing typed is lost).
#[derive(Debug, Clone, Default)]
pub(crate) struct FormValues {
    pub label: String,
    pub kind: String,
    pub public_key: String,
    pub trade: bool,
    pub withdraw: bool,
    pub ip_allowlist: String,
    pub symbols: String,
    pub expires: String,
    pub withdraw_addresses: String,
    pub withdraw_limit: String,
    pub active: bool,
}

impl From<&KeyForm> for FormValues {
    fn from(f: &KeyForm) -> Self {
        Self {
            label: f.label.clone(),
            kind: f.kind.clone().unwrap_or_else(|| "hmac".into()),
            public_key: f.public_key.clone(),
            trade: f.trade(),
            withdraw: f.withdraw(),
            ip_allowlist: f.ip_allowlist.clone(),
            symbols: f.symbols.clone(),
            expires: f.expires.clone(),
            withdraw_addresses: f.withdraw_addresses.clone(),
            withdraw_limit: f.withdraw_limit.clone(),
            active: f.status.as_deref() != Some("disabled"),
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Option<Nav>,
    csrf: String,
    keys: Vec<KeyRow>,
    /// Every running withdrawal hold of the account.
    holds: Vec<HoldRow>,
    form: FormValues,
    error: Option<String>,
    needs_code: bool,
}

async fn keys_view(
    c: &Console,
    v: &Viewer,
    status: StatusCode,
    form: FormValues,
    error: Option<&ConsoleError>,
    cookies: &[HeaderValue],
) -> Response {
    let keys = match c.service().list_keys(&v.actor, None).await {
        Ok(k) => k,
        Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    };
    let holds = match hold_rows(c, v).await {
        Ok(h) => h,
        Err(e) => return error_page(&e, Some(Nav::of(v, c.now_ms()))),
    };
    let now = c.now_ms();
    let mut rows: Vec<KeyRow> = keys.iter().map(|k| KeyRow::new(k, now)).collect();
    for r in &mut rows {
        r.flag_without_2fa(v.info.two_factor_enabled);
    }
    rows.sort_by_key(|r| (r.revoked, std::cmp::Reverse(r.created.clone())));
    let page = KeysPage {
        nav: Some(Nav::of(v, now)),
        csrf: v.info.csrf_token.clone(),
        keys: rows,
        holds,
        form,
        error: error.map(ConsoleError::message),
        needs_code: error.is_some_and(ConsoleError::needs_step_up),
    };
    render(status, &page, cookies)
}

async fn keys_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => {
            keys_view(&c, &v, StatusCode::OK, FormValues { kind: "hmac".into(), ..FormValues::default() }, None, &[])
                .await
        }
        Err(r) => r,
    }
}

/// A new key from the form's fields; nothing is changed yet.
pub(crate) fn new_key_from_form(account: &str, f: &KeyForm) -> Result<NewKey, ConsoleError> {
    let material = match f.kind.as_deref().unwrap_or("hmac") {
        "hmac" => NewKeyMaterial::Hmac,
        "ed25519" => NewKeyMaterial::Ed25519(f.public_key.trim().to_owned()),
        "rsa" => NewKeyMaterial::Rsa(f.public_key.trim().to_owned()),
        other => return Err(ConsoleError::BadRequest(format!("unknown key type {other:?}: hmac, ed25519 or rsa"))),
    };
    let restrictions = keygate_auth::Restrictions {
        ip_allowlist: forms::ip_allowlist(&forms::split_list(&f.ip_allowlist))?,
        expires_at: forms::expiry(&f.expires)?,
        symbols: forms::symbols(&forms::split_list(&f.symbols))?,
        withdraw_addresses: forms::addresses(&forms::split_list(&f.withdraw_addresses)),
        withdraw_limit_24h: forms::withdraw_limit(&f.withdraw_limit)?,
    };
    Ok(NewKey {
        account: account.to_owned(),
        label: f.label.trim().to_owned(),
        material,
        permissions: forms::permissions(f.trade(), f.withdraw()),
        restrictions,
    })
}

#[derive(Template)]
#[template(path = "key_created.html")]
struct KeyCreatedPage {
    nav: Option<Nav>,
    key: KeyRow,
    secret: String,
}

async fn create_key(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<KeyForm>) -> Response {
    let mut v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    let values = FormValues::from(&f);
    let new = match new_key_from_form(&v.info.account, &f) {
        Ok(n) => n,
        Err(e) => return keys_view(&c, &v, e.status(), values, Some(&e), &[]).await,
    };
    let cookie = match maybe_step_up(&c, &ctx, &mut v, f.code.as_deref()).await {
        Ok(c) => c,
        Err(e) => return keys_view(&c, &v, e.status(), values, Some(&e), &[]).await,
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    match c.service().create_key(&v.actor, new).await {
        Ok(created) => {
            let row = KeyRow::new(&created.key, c.now_ms());
            match &created.secret {
                Some(secret) => render(
                    StatusCode::OK,
                    &KeyCreatedPage {
                        nav: Some(Nav::of(&v, c.now_ms())),
                        key: row,
                        secret: secret.expose().to_owned(),
                    },
                    &cookies,
                ),
                None => see_other(&format!("/console/keys/{}", row.id), &cookies),
            }
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            keys_view(&c, &v, e.status(), values, Some(&e), &cookies).await
        }
    }
}

#[derive(Template)]
#[template(path = "key_edit.html")]
struct KeyEditPage {
    nav: Option<Nav>,
    csrf: String,
    key: KeyRow,
    /// The running withdrawal holds of this key and of the whole account.
    holds: Vec<HoldRow>,
    form: FormValues,
    /// The page is the redirect after a successful save.
    saved: bool,
    error: Option<String>,
    needs_code: bool,
}

fn values_of(k: &KeyRow) -> FormValues {
    FormValues {
        label: k.label.clone(),
        kind: k.kind.clone(),
        public_key: String::new(),
        trade: k.trade,
        withdraw: k.withdraw,
        ip_allowlist: k.ip_allowlist.join("\n"),
        symbols: k.symbols.join(" "),
        expires: k.expires_input.clone(),
        withdraw_addresses: k.withdraw_addresses.join("\n"),
        withdraw_limit: k.withdraw_limit.clone(),
        active: k.active,
    }
}

/// What the edit page shows besides the key: the stored values (after a save, with a notice), or
/// the owner's refused form with the reason.
enum EditState<'a> {
    Stored { saved: bool },
    Refused { form: &'a FormValues, error: &'a ConsoleError },
}

async fn edit_view(c: &Console, v: &Viewer, id: &str, state: EditState<'_>, cookies: &[HeaderValue]) -> Response {
    let nav = Some(Nav::of(v, c.now_ms()));
    let holds = match hold_rows(c, v).await {
        Ok(h) => h.into_iter().filter(|h| h.account_wide || h.key_id.as_deref() == Some(id)).collect::<Vec<_>>(),
        Err(e) => return error_page(&e, nav),
    };
    match c.service().key(&v.actor, id).await {
        Ok(k) => {
            let mut row = KeyRow::new(&k, c.now_ms());
            row.flag_without_2fa(v.info.two_factor_enabled);
            let (status, form, error, saved) = match state {
                EditState::Stored { saved } => (StatusCode::OK, values_of(&row), None, saved),
                EditState::Refused { form, error } => (error.status(), form.clone(), Some(error), false),
            };
            let page = KeyEditPage {
                nav,
                csrf: v.info.csrf_token.clone(),
                key: row,
                holds,
                form,
                saved,
                error: error.map(ConsoleError::message),
                needs_code: error.is_some_and(ConsoleError::needs_step_up),
            };
            render(status, &page, cookies)
        }
        Err(e) => error_page(&e.into(), nav),
    }
}

/// `?saved=1`, set by the redirect after a successful edit, so the page can say the change took.
#[derive(Debug, Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

async fn edit_page(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<SavedQuery>,
) -> Response {
    let saved = q.saved.as_deref() == Some("1");
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => edit_view(&c, &v, &id, EditState::Stored { saved }, &[]).await,
        Err(r) => r,
    }
}

/// The full edit the form describes: every field is set to what the form shows.
pub(crate) fn edit_from_form(f: &KeyForm) -> Result<KeyEdit, ConsoleError> {
    let status = match f.status.as_deref() {
        None | Some("active") => KeyStatus::Active,
        Some("disabled") => KeyStatus::Disabled,
        Some(other) => return Err(ConsoleError::BadRequest(format!("status {other:?}: active or disabled"))),
    };
    Ok(KeyEdit {
        label: Some(f.label.trim().to_owned()),
        permissions: Some(forms::permissions(f.trade(), f.withdraw())),
        ip_allowlist: Some(forms::ip_allowlist(&forms::split_list(&f.ip_allowlist))?),
        expires_at: Some(forms::expiry(&f.expires)?),
        symbols: Some(forms::symbols(&forms::split_list(&f.symbols))?),
        withdraw_addresses: Some(forms::addresses(&forms::split_list(&f.withdraw_addresses))),
        withdraw_limit_24h: Some(forms::withdraw_limit(&f.withdraw_limit)?),
        status: Some(status),
    })
}

async fn edit_key(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<KeyForm>,
) -> Response {
    let mut v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    let values = FormValues::from(&f);
    let edit = match edit_from_form(&f) {
        Ok(e) => e,
        Err(e) => return edit_view(&c, &v, &id, EditState::Refused { form: &values, error: &e }, &[]).await,
    };
    let cookie = match maybe_step_up(&c, &ctx, &mut v, f.code.as_deref()).await {
        Ok(c) => c,
        Err(e) => return edit_view(&c, &v, &id, EditState::Refused { form: &values, error: &e }, &[]).await,
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    match c.service().edit_key(&v.actor, &id, edit).await {
        Ok(_) => see_other(&format!("/console/keys/{id}?saved=1"), &cookies),
        Err(e) => {
            let e = ConsoleError::from(e);
            edit_view(&c, &v, &id, EditState::Refused { form: &values, error: &e }, &cookies).await
        }
    }
}

/// The form that removes one withdrawal address from a key (the undo of an address hold).
#[derive(Debug, Deserialize)]
struct RemoveAddressForm {
    csrf: Option<String>,
    address: String,
}

/// `POST /console/keys/{id}/remove-address`: takes one address off the key's withdrawal list,
/// which ends its hold (issue #19). Narrowing a key needs no step-up, so the owner can undo a
/// change they did not make without a 2FA code.
async fn remove_address(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RemoveAddressForm>,
) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let nav = || Some(Nav::of(&v, c.now_ms()));
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, nav());
    }
    let key = match c.service().key(&v.actor, &id).await {
        Ok(k) => k,
        Err(e) => return error_page(&e.into(), nav()),
    };
    let addresses: Vec<String> = key.withdraw_addresses.iter().filter(|a| **a != f.address).cloned().collect();
    let edit = KeyEdit { withdraw_addresses: Some(addresses), ..KeyEdit::default() };
    match c.service().edit_key(&v.actor, &id, edit).await {
        Ok(_) => see_other(&format!("/console/keys/{id}?saved=1"), &[]),
        Err(e) => error_page(&e.into(), nav()),
    }
}

#[derive(Template)]
#[template(path = "key_revoke.html")]
struct RevokePage {
    nav: Option<Nav>,
    csrf: String,
    key: KeyRow,
}

async fn revoke_page(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let nav = Some(Nav::of(&v, c.now_ms()));
    match c.service().key(&v.actor, &id).await {
        Ok(k) => render(
            StatusCode::OK,
            &RevokePage { nav, csrf: v.info.csrf_token.clone(), key: KeyRow::new(&k, c.now_ms()) },
            &[],
        ),
        Err(e) => error_page(&e.into(), nav),
    }
}

async fn revoke_key(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match c.service().revoke_key(&v.actor, &id).await {
        Ok(_) => see_other("/console/keys", &[]),
        Err(e) => error_page(&e.into(), Some(Nav::of(&v, c.now_ms()))),
    }
}

#[derive(Template)]
#[template(path = "revoke_all.html")]
struct RevokeAllPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
}

async fn revoke_all_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => render(
            StatusCode::OK,
            &RevokeAllPage { nav: Some(Nav::of(&v, c.now_ms())), csrf: v.info.csrf_token.clone(), error: None },
            &[],
        ),
        Err(r) => r,
    }
}

async fn revoke_all(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let mut v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    let refuse = |v: &Viewer, e: ConsoleError, cookies: &[HeaderValue]| {
        render(
            e.status(),
            &RevokeAllPage {
                nav: Some(Nav::of(v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                error: Some(e.message()),
            },
            cookies,
        )
    };
    if f.confirm.as_deref() != Some("REVOKE ALL") {
        return refuse(&v, ConsoleError::BadRequest("type REVOKE ALL to confirm".into()), &[]);
    }
    let cookie = match maybe_step_up(&c, &ctx, &mut v, Some(f.code.as_str())).await {
        Ok(c) => c,
        Err(e) => return refuse(&v, e, &[]),
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    let account = v.info.account.clone();
    match c.service().revoke_all_keys(&v.actor, &account).await {
        Ok(_) => see_other("/console/keys", &cookies),
        Err(e) => refuse(&v, e.into(), &cookies),
    }
}

// ---------------------------------------------------------------------------------------------
// Audit.
// ---------------------------------------------------------------------------------------------

/// One audit line for display.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub target: String,
    pub source: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    rows: Vec<AuditRow>,
}

/// The account's newest audit records (at most `limit`), newest first: one query for just
/// those, whatever the length of the history.
pub(crate) async fn recent_audit(
    c: &Console,
    v: &Viewer,
    limit: usize,
) -> Result<Vec<keygate_service::AuditView>, ConsoleError> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    Ok(c.service().audit_log_newest(&v.actor, i64::MAX, limit).await?)
}

async fn audit_page(State(c): State<Console>, ctx: Ctx) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match recent_audit(&c, &v, 500).await {
        Ok(records) => {
            let rows = records
                .iter()
                .map(|r| AuditRow {
                    at: when(Some(keygate_proto::UnixMillis(r.at))),
                    action: r.action.clone(),
                    actor: r.actor.clone(),
                    target: r.target.clone(),
                    source: r.source.clone().unwrap_or_default(),
                    details: r.details.to_string(),
                })
                .collect();
            render(StatusCode::OK, &AuditPage { nav: Some(Nav::of(&v, c.now_ms())), rows }, &[])
        }
        Err(e) => error_page(&e, Some(Nav::of(&v, c.now_ms()))),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn step_up_goes_back_only_inside_the_console() {
        assert_eq!(safe_next(Some("/console/keys/kg_1")), "/console/keys/kg_1");
        assert_eq!(safe_next(Some("/console/keys?page=2&x=y")), "/console/keys?page=2&x=y");
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil",
            "/other",
            "/console/\\x",
            "/console/\x01x",
            "/console/a\r\nSet-Cookie: x=y",
            "/console/\u{e9}",
            "/console/a b",
            "/console/../api",
            "/console/%2F%2Fevil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/keys", "{bad}");
        }
        assert_eq!(safe_next(None), "/console/keys");
    }
}
