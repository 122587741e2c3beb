//! Connected apps (issue #15): the consent page of `GET /oauth/authorize` and its form, the
//! "Connected apps" page with its Disconnect button, and app registration for the accounts the
//! operator allows. Every decision is a service call; what this adds is the browser's side:
//! the login detour (the authorize URL is kept in a cookie through login and 2FA), the session's
//! CSRF token on the consent form, a step-up code field when `trade` is asked for, and a
//! `Content-Security-Policy` whose `form-action` admits the app's redirect URI, so the browser
//! follows the answer's redirect and nothing else.

use super::layout::{Nav, error_page, render, see_other};
use super::maybe_step_up;
use crate::session::{Ctx, Viewer, clear_cookie, read_cookie, set_cookie};
use crate::view::when;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use keygate_auth::Permission;
use keygate_auth::oauth::Narrowing;
use keygate_service::apps::{AuthorizeParams, AuthorizeRefusal, AuthorizeRequest, Consent, NewApp};
use serde::Deserialize;

/// The cookie that carries an authorize URL through login and its second factor.
pub(crate) fn return_cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-kg_oauth_return" } else { "kg_oauth_return" }
}

/// Where a finished login continues: the authorize URL kept in the return cookie, if there is a
/// well-formed one, with the cookie that clears it; else `None`.
pub(crate) fn login_return(ctx: &Ctx, headers: &axum::http::HeaderMap) -> Option<(String, HeaderValue)> {
    let raw = read_cookie(headers, return_cookie_name(ctx.secure))?;
    let bytes = hex::decode(raw).ok()?;
    let query = String::from_utf8(bytes).ok()?;
    if query.len() > 4096 || query.chars().any(|c| c.is_control()) {
        return None;
    }
    Some((format!("/oauth/authorize?{query}"), clear_cookie(return_cookie_name(ctx.secure), ctx.secure)))
}

#[derive(Template)]
#[template(path = "consent.html")]
struct ConsentPage {
    nav: Option<Nav>,
    csrf: String,
    app_name: String,
    publisher_domain: String,
    homepage: String,
    verified: bool,
    trade: bool,
    permissions: String,
    symbols: String,
    ip_allowlist: String,
    expires: String,
    /// The request's parameters, carried by the form as hidden fields.
    hidden: Vec<(&'static str, String)>,
    redirect_host: String,
    error: Option<String>,
    /// The account has 2FA (trade can be given only then).
    two_factor: bool,
    /// The account holds as many keys as its policy allows, so Allow cannot succeed: why.
    full: Option<String>,
}

fn hidden_fields(p: &AuthorizeParams) -> Vec<(&'static str, String)> {
    [
        ("response_type", &p.response_type),
        ("client_id", &p.client_id),
        ("redirect_uri", &p.redirect_uri),
        ("scope", &p.scope),
        ("authorization_details", &p.authorization_details),
        ("state", &p.state),
        ("code_challenge", &p.code_challenge),
        ("code_challenge_method", &p.code_challenge_method),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

/// `scheme://host[:port]` of a URI, for the consent page's `form-action`.
fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    let origin = u.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

async fn consent_page(
    v: &Viewer,
    c: &Console,
    p: &AuthorizeParams,
    req: &AuthorizeRequest,
    status: StatusCode,
    error: Option<String>,
    cookies: &[HeaderValue],
) -> Response {
    let full = match c.service().key_room_notice(&v.actor).await {
        Ok(full) => full,
        Err(e) => return error_page(&ConsoleError::from(e), Some(Nav::of(v, c.now_ms()))),
    };
    // Said once: as the page's warning, not again as the refused answer's error.
    let error = error.filter(|e| full.as_ref() != Some(e));
    let g = &req.requested;
    let page = ConsentPage {
        nav: Some(Nav::of(v, c.now_ms())),
        csrf: v.info.csrf_token.clone(),
        app_name: req.app.name.clone(),
        publisher_domain: req.app.publisher_domain.clone(),
        homepage: req.app.homepage.clone(),
        verified: req.app.verified,
        trade: g.permissions.contains(Permission::Trade),
        permissions: g.permissions.iter().map(Permission::as_str).collect::<Vec<_>>().join(", "),
        symbols: g.symbols.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        ip_allowlist: g.ip_allowlist.nets().iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
        expires: g.expires_at.map(|e| when(Some(e))).unwrap_or_default(),
        hidden: hidden_fields(p),
        redirect_host: url::Url::parse(&req.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default(),
        error,
        two_factor: v.info.two_factor_enabled,
        full,
    };
    let mut res = render(status, &page, cookies);
    // The answer to this form is a redirect to the app: the one other place it may go.
    let target = origin_of(&req.redirect_uri).unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self' {target}; frame-ancestors 'none'; base-uri 'none'; connect-src 'self'"
    );
    if let Ok(h) = HeaderValue::from_str(&csp) {
        res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, h);
    }
    res
}

/// The error page of a request that cannot go back to the app (RFC 6749 section 4.1.2.1).
fn refusal_page(e: &keygate_auth::oauth::OAuthError, nav: Option<Nav>) -> Response {
    let page = super::layout::MessagePage {
        nav,
        title: "This app's request was refused".into(),
        message: format!("{} ({}). Nothing was shared with the app.", e.description, e.code.as_str()),
        back: "/console/".into(),
    };
    render(StatusCode::BAD_REQUEST, &page, &[])
}

fn refused(r: AuthorizeRefusal, nav: Option<Nav>) -> Response {
    match r {
        AuthorizeRefusal::Page(e) => refusal_page(&e, nav),
        AuthorizeRefusal::Redirect(url) => see_other(&url, &[]),
    }
}

fn params_of(query: &str) -> (AuthorizeParams, Vec<String>) {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    AuthorizeParams::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `GET /oauth/authorize`: the request is checked first (a bad client or redirect URI gets a
/// page, the rest goes back to the app), then the owner logs in if needed (the URL is kept
/// through login and 2FA), then the consent page.
pub(super) async fn authorize_page(State(c): State<Console>, ctx: Ctx, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let (p, repeated) = params_of(&query);
    let req = match c.service().authorization_request(&p, &repeated).await {
        Ok(r) => r,
        Err(r) => return refused(r, None),
    };
    let v = match ctx.viewer(&c).await {
        Ok(v) => v,
        Err(ConsoleError::NotLoggedIn) => {
            let keep = set_cookie(return_cookie_name(ctx.secure), &hex::encode(query.as_bytes()), ctx.secure);
            let next = if ctx.pending(&c).await.is_some() { "/console/login/totp" } else { "/console/login" };
            return see_other(next, &[keep]);
        }
        Err(e) => return error_page(&e, None),
    };
    consent_page(&v, &c, &p, &req, StatusCode::OK, None, &[]).await
}

/// The consent form: the request's parameters again, the owner's answer and narrowing.
#[derive(Debug, Deserialize)]
pub(crate) struct ConsentForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    keep_trade: Option<String>,
    #[serde(default)]
    ip_allowlist: String,
    #[serde(default)]
    symbols: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    response_type: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    authorization_details: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

/// `POST /oauth/authorize`: the owner's answer. The request is checked again (the form carries
/// it), the CSRF token must be the session's, a typed 2FA code steps up, and the browser is sent
/// to the app with a code (or `error=access_denied`).
pub(super) async fn authorize_answer(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<ConsentForm>,
) -> Response {
    let mut v = match super::layout::form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let p = AuthorizeParams {
        response_type: f.response_type.clone(),
        client_id: f.client_id.clone(),
        redirect_uri: f.redirect_uri.clone(),
        scope: f.scope.clone(),
        authorization_details: f.authorization_details.clone(),
        state: f.state.clone(),
        code_challenge: f.code_challenge.clone(),
        code_challenge_method: f.code_challenge_method.clone(),
    };
    let nav = Some(Nav::of(&v, c.now_ms()));
    let req = match c.service().authorization_request(&p, &[]).await {
        Ok(r) => r,
        Err(r) => return refused(r, nav),
    };
    let answer = if f.decision == "allow" {
        let expires_at = match crate::forms::expiry(&f.expires) {
            Ok(e) => e,
            Err(e) => return consent_page(&v, &c, &p, &req, e.status(), Some(e.message()), &[]).await,
        };
        Consent::Allow(Narrowing {
            keep_trade: f.keep_trade.is_some(),
            ip_allowlist: crate::forms::split_list(&f.ip_allowlist).into_iter().map(str::to_owned).collect(),
            symbols: crate::forms::split_list(&f.symbols).into_iter().map(str::to_owned).collect(),
            expires_at,
        })
    } else {
        Consent::Deny
    };
    let cookies: Vec<HeaderValue> = if matches!(answer, Consent::Allow(_)) {
        match maybe_step_up(&c, &ctx, &mut v, f.code.as_deref()).await {
            Ok(cookie) => cookie.into_iter().collect(),
            Err(e) => return consent_page(&v, &c, &p, &req, e.status(), Some(e.message()), &[]).await,
        }
    } else {
        Vec::new()
    };
    match c.service().consent(&v.actor, &req, answer).await {
        Ok(url) => see_other(&url, &cookies),
        Err(e) => {
            let e = ConsoleError::from(e);
            consent_page(&v, &c, &p, &req, e.status(), Some(e.message()), &cookies).await
        }
    }
}

struct AppRow {
    client_id: String,
    name: String,
    publisher_domain: String,
    verified: bool,
    permissions: String,
    keys: Vec<String>,
    created: String,
    last_used: String,
    last_ip: String,
    use_count: u64,
}

struct RegisteredRow {
    client_id: String,
    name: String,
    status: String,
    verified: bool,
    redirect_uris: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    nav: Option<Nav>,
    csrf: String,
    rows: Vec<AppRow>,
    notice: Option<String>,
    may_register: bool,
    registered: Vec<RegisteredRow>,
    /// A newly registered app's client id and secret, shown once.
    new_app: Option<(String, String)>,
    error: Option<String>,
}

async fn apps_view(
    c: &Console,
    v: &Viewer,
    status: StatusCode,
    notice: Option<String>,
    new_app: Option<(String, String)>,
    error: Option<String>,
) -> Response {
    let connected = match c.service().connected_apps(&v.actor).await {
        Ok(a) => a,
        Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    };
    let rows = connected
        .iter()
        .map(|a| AppRow {
            client_id: a.app.client_id.clone(),
            name: a.app.name.clone(),
            publisher_domain: a.app.publisher_domain.clone(),
            verified: a.app.verified,
            permissions: a.permissions.iter().map(Permission::as_str).collect::<Vec<_>>().join(", "),
            keys: a.keys.clone(),
            created: when(Some(a.created_at)),
            last_used: when(a.last_used_at),
            last_ip: a.last_used_ip.clone().unwrap_or_else(|| "-".into()),
            use_count: a.use_count,
        })
        .collect();
    let may_register = c.service().may_register_apps(&v.actor).await.unwrap_or(false);
    let registered = if may_register {
        c.service()
            .list_apps(&v.actor, false)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| RegisteredRow {
                client_id: a.client_id,
                name: a.name,
                status: a.status.as_str().to_owned(),
                verified: a.verified,
                redirect_uris: a.redirect_uris.join(" "),
            })
            .collect()
    } else {
        Vec::new()
    };
    let page = AppsPage {
        nav: Some(Nav::of(v, c.now_ms())),
        csrf: v.info.csrf_token.clone(),
        rows,
        notice,
        may_register,
        registered,
        new_app,
        error,
    };
    render(status, &page, &[])
}

#[derive(Debug, Deserialize)]
pub(crate) struct AppsQuery {
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    n: Option<u32>,
}

/// `GET /console/apps`: every app with access to the account, and the owner's registrations.
pub(super) async fn apps_page(
    State(c): State<Console>,
    ctx: Ctx,
    axum::extract::Query(q): axum::extract::Query<AppsQuery>,
) -> Response {
    let v = match super::layout::viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let notice = (q.notice.as_deref() == Some("disconnected"))
        .then(|| format!("App disconnected: {} key(s) revoked. Its next request is refused.", q.n.unwrap_or(0)));
    apps_view(&c, &v, StatusCode::OK, notice, None, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

/// `POST /console/apps/{client_id}/disconnect`: revokes all of that app's keys of this account.
pub(super) async fn disconnect(
    State(c): State<Console>,
    ctx: Ctx,
    Path(client_id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    let v = match super::layout::form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    match c.service().disconnect_app(&v.actor, &client_id).await {
        Ok(n) => see_other(&format!("/console/apps?notice=disconnected&n={n}"), &[]),
        Err(e) => error_page(&e.into(), Some(Nav::of(&v, c.now_ms()))),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RegisterForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    homepage: String,
    #[serde(default)]
    publisher_domain: String,
    #[serde(default)]
    redirect_uris: String,
    #[serde(default)]
    trade: Option<String>,
    #[serde(default)]
    client_type: String,
}

/// `POST /console/apps/register`: an allowed owner registers an app (unverified).
pub(super) async fn register(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<RegisterForm>) -> Response {
    let v = match super::layout::form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(res) => return res,
    };
    let new = NewApp {
        name: f.name.clone(),
        homepage: f.homepage.trim().to_owned(),
        publisher_domain: f.publisher_domain.clone(),
        redirect_uris: crate::forms::split_list(&f.redirect_uris).into_iter().map(str::to_owned).collect(),
        max_permissions: if f.trade.is_some() { "read,trade".into() } else { "read".into() },
        client_type: f.client_type.clone(),
        logo_url: None,
    };
    match c.service().register_app(&v.actor, new).await {
        Ok(r) => {
            let shown = r.client_secret.map(|s| (r.app.client_id.clone(), s));
            let notice = Some(format!("App {} registered, unverified.", r.app.client_id));
            apps_view(&c, &v, StatusCode::OK, notice, shown, None).await
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            apps_view(&c, &v, e.status(), None, None, Some(e.message())).await
        }
    }
}
