//! What every page shares: the navigation bar, rendering and redirects, the refusal page, the
//! login gate and the form most actions post, and the pages that are only frame (the home
//! redirect, not found, the assets).

use crate::session::{Ctx, Viewer};
use crate::view::HoldRow;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use keygate_service::ServiceError;
use serde::Deserialize;

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
pub(super) fn retry_after(mut res: Response, e: &ConsoleError) -> Response {
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
pub(super) async fn hold_rows(c: &Console, v: &Viewer) -> Result<Vec<HoldRow>, ConsoleError> {
    Ok(c.service().withdrawal_holds(&v.actor, &v.info.account).await?.iter().map(HoldRow::new).collect())
}

/// The logged-in viewer, or the login page (the code prompt for a login waiting for its second
/// factor).
pub(super) async fn viewer_or_login(ctx: &Ctx, c: &Console) -> Result<Viewer, Response> {
    match ctx.viewer(c).await {
        Ok(v) => Ok(v),
        Err(ConsoleError::NotLoggedIn) if ctx.pending(c).await.is_some() => Err(see_other("/console/login/totp", &[])),
        Err(e) => Err(error_page(&e, None)),
    }
}

/// The logged-in viewer of a form that changes something, once the form's CSRF token matches
/// their session; otherwise the answer to send instead (the login page, or the refusal).
pub(super) async fn form_viewer(ctx: &Ctx, c: &Console, csrf: Option<&str>) -> Result<Viewer, Response> {
    let v = viewer_or_login(ctx, c).await?;
    if let Err(e) = ctx.check_session_csrf(&v.token, csrf) {
        return Err(error_page(&e, Some(Nav::of(&v, c.now_ms()))));
    }
    Ok(v)
}

/// The console's one stylesheet, compiled in: no CDN, nothing to install.
pub(super) async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../assets/console.css"))
}

/// The console's one script (the copy button next to a secret), compiled in.
pub(super) async fn js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("../../assets/console.js"))
}

/// Any other `/console/...` path: a page that says so, inside the frame when logged in.
pub(super) async fn not_found(State(c): State<Console>, ctx: Ctx) -> Response {
    let nav = ctx.viewer(&c).await.ok().map(|v| Nav::of(&v, c.now_ms()));
    let page = MessagePage {
        nav,
        title: "Not found".into(),
        message: "There is no such page.".into(),
        back: "/console/".into(),
    };
    render(StatusCode::NOT_FOUND, &page, &[])
}

/// `/console/`: the key list when logged in, else the login page.
pub(super) async fn home(State(c): State<Console>, ctx: Ctx) -> Response {
    if ctx.viewer(&c).await.is_ok() { see_other("/console/keys", &[]) } else { see_other("/console/login", &[]) }
}

/// What a page that a successful POST redirected to says happened (post/redirect/get, issue #18):
/// `?notice=` names one of a fixed set of events, each page turns the ones it knows into a
/// sentence (unknown ones show nothing), and the URL carries no secret. A refresh of the page
/// shows the notice again but never repeats the action.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct NoticeQuery {
    /// The event: `revoked`, `revoked-all`, `created`, `already-created`, `logged-out`, ...
    #[serde(default)]
    pub notice: Option<String>,
    /// The key it was about (looked up again, so only the viewer's own key is named).
    #[serde(default)]
    pub key: Option<String>,
    /// How many (`revoked-all`); text, so a mangled link shows no notice rather than an error.
    #[serde(default)]
    pub n: Option<String>,
}

impl NoticeQuery {
    /// `true` when `notice` is `event`.
    pub(crate) fn is(&self, event: &str) -> bool {
        self.notice.as_deref() == Some(event)
    }

    /// The count, when it is a number.
    pub(crate) fn count(&self) -> Option<u32> {
        self.n.as_deref().and_then(|n| n.parse().ok())
    }
}

/// `/console/...?notice=EVENT` (and `&key=ID`), for a redirect after a POST.
pub(crate) fn notice_url(path: &str, event: &str, key: Option<&str>) -> String {
    let key = key.filter(|k| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    match key {
        Some(k) => format!("{path}?notice={event}&key={k}"),
        None => format!("{path}?notice={event}"),
    }
}

/// The form of the actions that take at most a code (logout, 2FA, step-up, revoking): the CSRF
/// token, the 2FA code, where to go next, and a typed confirmation.
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
    /// A key form kept through a login (the code prompt carries it on).
    #[serde(default)]
    pub draft: Option<String>,
}
