//! Changing the account's password.

use super::layout::{Nav, NoticeQuery, form_viewer, render, retry_after, see_other, viewer_or_login};
use crate::session::Ctx;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use zeroize::Zeroizing;

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
    done: bool,
    /// After a change: when the trade and withdraw keys must be re-confirmed by (issue #17),
    /// UTC text and ISO 8601, if they must.
    reconfirm: Option<(String, String)>,
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
    /// The 2FA code, asked for with the change when 2FA is on (issue #18).
    #[serde(default)]
    code: Zeroizing<String>,
}

pub(super) async fn password_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NoticeQuery>) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => {
            let pending = c.service().key_policy(&v.actor, &v.info.account).await.ok().and_then(|p| p.reconfirm);
            let reconfirm = pending
                .filter(|_| q.is("changed"))
                .map(|r| (crate::view::when(Some(r.due)), crate::view::iso(Some(r.due))));
            render(
                StatusCode::OK,
                &PasswordPage {
                    nav: Some(Nav::of(&v, c.now_ms())),
                    csrf: v.info.csrf_token.clone(),
                    error: None,
                    done: q.is("changed"),
                    reconfirm,
                },
                &[],
            )
        }
        Err(r) => r,
    }
}

pub(super) async fn change_password(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<PasswordForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let refuse = |e: ConsoleError| {
        let page = PasswordPage {
            nav: Some(Nav::of(&v, c.now_ms())),
            csrf: v.info.csrf_token.clone(),
            error: Some(e.message()),
            done: false,
            reconfirm: None,
        };
        retry_after(render(e.status(), &page, &[]), &e)
    };
    if *f.password != *f.password2 {
        return refuse(ConsoleError::BadRequest("the two new passwords differ".into()));
    }
    match c.service().change_password(&v.token, f.current, f.password, Some(f.code.as_str()), ctx.source.clone()).await
    {
        // Post/redirect/get: the new session's cookie rides on the redirect.
        Ok(fresh) => see_other("/console/password?notice=changed", &ctx.login_cookies(&fresh)),
        Err(e) => refuse(e.into()),
    }
}
