//! Sign-up, login (with its second-factor prompt) and logout.

use super::keys::resume_draft;
use super::layout::{CodeForm, Nav, NoticeQuery, error_page, render, retry_after, see_other};
use crate::session::{Ctx, Viewer};
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keygate_service::ServiceError;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Template)]
#[template(path = "signup.html")]
struct SignupPage {
    nav: Option<Nav>,
    csrf: String,
    name: String,
    error: Option<String>,
    /// The server takes sign-ups (`serve --signup open` or `invite`); otherwise the page says
    /// who makes accounts instead of showing a form that cannot work.
    open: bool,
    /// Sign-up is by invitation (`serve --signup invite`): the form asks for the code.
    invite_only: bool,
    /// The invite code as typed, kept when the form comes back with an error about something
    /// else (the person's own code; the page is `no-store` like every console page).
    invite: String,
}

impl SignupPage {
    fn new(c: &Console, csrf: String, name: String, error: Option<String>, invite: String) -> Self {
        let open = c.service().sign_up_open();
        let invite_only = c.service().sign_up_mode() == keygate_service::SignUpMode::Invite;
        Self { nav: None, csrf, name, error, open, invite_only, invite }
    }
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
    #[serde(default)]
    invite: Option<String>,
}

pub(super) async fn signup_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match ctx.pre_token() {
        Ok((csrf, cookie)) => {
            render(StatusCode::OK, &SignupPage::new(&c, csrf, String::new(), None, String::new()), cookie.as_slice())
        }
        Err(e) => error_page(&e, None),
    }
}

pub(super) async fn signup(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<SignupForm>) -> Response {
    let invite = f.invite.as_deref().map(str::trim).unwrap_or_default().to_owned();
    let fail = |e: ConsoleError, name: &str| {
        let csrf = ctx.pre.clone().unwrap_or_default();
        let page = SignupPage::new(&c, csrf, name.to_owned(), Some(e.message()), invite.clone());
        render(e.status(), &page, &[])
    };
    if let Err(e) = ctx.check_pre_csrf(f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    if *f.password != *f.password2 {
        return fail(ConsoleError::BadRequest("the two passwords differ".into()), &f.name);
    }
    let name = f.name.trim().to_ascii_lowercase();
    let code = f.invite.as_deref();
    if let Err(e) = c.service().sign_up_with_invite(&name, f.password.clone(), code, ctx.source.clone()).await {
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
    /// What the redirect here says happened (logged out).
    notice: Option<String>,
    /// Offer the sign-up link (the server takes sign-ups).
    signup_open: bool,
    /// A key form kept through this login (its session ended before it was sent), or empty.
    draft: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LoginForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: Zeroizing<String>,
    /// A key form kept through the login.
    #[serde(default)]
    draft: Option<String>,
}

/// The login page (or the code prompt of a login waiting for its second factor) keeping a form
/// whose session ended before it was sent: once logged in, the form comes back filled in.
pub(super) async fn login_keeping(c: &Console, ctx: &Ctx, draft: String) -> Response {
    if let Some((_, info)) = ctx.pending(c).await {
        let page = LoginTotpPage { nav: None, csrf: info.csrf_token, error: None, draft };
        return render(StatusCode::UNAUTHORIZED, &page, &[]);
    }
    let signup_open = c.service().sign_up_open();
    match ctx.pre_token() {
        Ok((csrf, cookie)) => render(
            StatusCode::UNAUTHORIZED,
            &LoginPage { nav: None, csrf, name: String::new(), error: None, notice: None, signup_open, draft },
            cookie.as_slice(),
        ),
        Err(e) => error_page(&e, None),
    }
}

pub(super) async fn login_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NoticeQuery>) -> Response {
    let notice = q.is("logged-out").then(|| "You are logged out. Log in again to manage your keys.".to_owned());
    let signup_open = c.service().sign_up_open();
    match ctx.pre_token() {
        Ok((csrf, cookie)) => render(
            StatusCode::OK,
            &LoginPage { nav: None, csrf, name: String::new(), error: None, notice, signup_open, draft: String::new() },
            cookie.as_slice(),
        ),
        Err(e) => error_page(&e, None),
    }
}

pub(super) async fn login(
    State(c): State<Console>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    if let Err(e) = ctx.check_pre_csrf(f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    let name = f.name.trim().to_ascii_lowercase();
    let draft = f.draft.clone().unwrap_or_default();
    match c.service().login(&name, f.password, ctx.source.clone()).await {
        Ok(s) => {
            let cookie = ctx.session_cookie(&s.token);
            if !draft.is_empty() {
                // The kept form rides on to the code prompt, or comes back now.
                if s.info.two_factor_pending {
                    let page = LoginTotpPage { nav: None, csrf: s.info.csrf_token.clone(), error: None, draft };
                    return render(StatusCode::OK, &page, &[cookie]);
                }
                let v = Viewer::of(s.token, s.info, ctx.source.clone());
                return resume_draft(&c, &v, &draft, &[cookie]).await;
            }
            // An app's authorize request that sent the owner here continues after the login.
            if !s.info.two_factor_pending
                && let Some((to, clear)) = super::apps::login_return(&ctx, &headers)
            {
                return see_other(&to, &[cookie, clear]);
            }
            let next = if s.info.two_factor_pending { "/console/login/totp" } else { "/console/keys" };
            see_other(next, &[cookie])
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            let csrf = ctx.pre.clone().unwrap_or_default();
            let signup_open = c.service().sign_up_open();
            let page = LoginPage { nav: None, csrf, name, error: Some(e.message()), notice: None, signup_open, draft };
            retry_after(render(e.status(), &page, &[]), &e)
        }
    }
}

#[derive(Template)]
#[template(path = "login_totp.html")]
struct LoginTotpPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
    /// A key form kept through this login, or empty.
    draft: String,
}
pub(super) async fn login_totp_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match ctx.pending(&c).await {
        Some((_, info)) => render(
            StatusCode::OK,
            &LoginTotpPage { nav: None, csrf: info.csrf_token, error: None, draft: String::new() },
            &[],
        ),
        None => see_other("/console/login", &[]),
    }
}

pub(super) async fn login_totp(
    State(c): State<Console>,
    ctx: Ctx,
    headers: axum::http::HeaderMap,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let Some((token, info)) = ctx.pending(&c).await else {
        return see_other("/console/login", &[]);
    };
    if let Err(e) = ctx.check_session_csrf(&token, f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    let draft = f.draft.clone().unwrap_or_default();
    match c.service().login_second_factor(&token, f.code.trim(), ctx.source.clone(), ctx.device.as_deref()).await {
        Ok(s) if !draft.is_empty() => {
            let cookies = ctx.login_cookies(&s);
            let v = Viewer::of(s.token, s.info, ctx.source.clone());
            resume_draft(&c, &v, &draft, &cookies).await
        }
        Ok(s) => match super::apps::login_return(&ctx, &headers) {
            Some((to, clear)) => {
                let mut cookies = ctx.login_cookies(&s);
                cookies.push(clear);
                see_other(&to, &cookies)
            }
            None => see_other("/console/keys", &ctx.login_cookies(&s)),
        },
        Err(e) => {
            let e = ConsoleError::from(e);
            if matches!(e, ConsoleError::Service(ServiceError::Unauthenticated(_))) {
                return see_other("/console/login", &[]);
            }
            retry_after(
                render(
                    e.status(),
                    &LoginTotpPage { nav: None, csrf: info.csrf_token, error: Some(e.message()), draft },
                    &[],
                ),
                &e,
            )
        }
    }
}

pub(super) async fn logout(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let Some(token) = ctx.token.clone() else {
        return see_other("/console/login", &[]);
    };
    if let Err(e) = ctx.check_session_csrf(&token, f.csrf.as_deref()) {
        return error_page(&e, None);
    }
    match c.service().logout(&token, ctx.source.clone()).await {
        Ok(()) => see_other("/console/login?notice=logged-out", &[ctx.clear_session_cookie()]),
        Err(e) => error_page(&e.into(), None),
    }
}
