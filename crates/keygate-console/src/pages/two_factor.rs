//! Two-factor authentication (enrolment, recovery codes, removal) and step-up, the fresh code
//! that sensitive key changes ask for.

use super::layout::{
    CodeForm, Nav, NoticeQuery, error_page, form_viewer, hold_rows, render, see_other, viewer_or_login,
};
use crate::session::{Ctx, Viewer};
use crate::view::HoldRow;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;

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
    /// What the redirect here says happened (2FA turned off).
    notice: Option<String>,
}

async fn two_factor_view(c: &Console, v: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    two_factor_view_with(c, v, status, error, None).await
}

async fn two_factor_view_with(
    c: &Console,
    v: &Viewer,
    status: StatusCode,
    error: Option<String>,
    notice: Option<String>,
) -> Response {
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
                notice,
            },
            &[],
        ),
        Err(e) => error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    }
}

pub(super) async fn two_factor_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NoticeQuery>) -> Response {
    let notice = q.is("2fa-off").then(|| {
        "2FA is off. Your keys that could trade or withdraw are suspended, and withdrawals are locked for 24 hours."
            .to_owned()
    });
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => two_factor_view_with(&c, &v, StatusCode::OK, None, notice).await,
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
    /// When the pending setup lapses (10 minutes after it started).
    until: String,
    /// A wrong code: the same secret stays, so the person tries the next code.
    error: Option<String>,
}

/// The pending enrollment's page (QR code and secret, read back from the store), or the 2FA page
/// when none is pending.
async fn enroll_view(c: &Console, v: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    match c.service().totp_pending(&v.actor).await {
        Ok(Some((en, until))) => render(
            status,
            &EnrollPage {
                nav: Some(Nav::of(v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                qr_svg: en.qr_svg.clone(),
                secret: en.secret_base32.clone(),
                until: crate::view::when(Some(until)),
                error,
            },
            &[],
        ),
        Ok(None) => match error {
            Some(msg) => two_factor_view(c, v, status, Some(msg)).await,
            None => see_other("/console/2fa", &[]),
        },
        Err(e) => error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    }
}

/// `GET /console/2fa/enroll`: the setup started by the form below, for as long as it is pending.
pub(super) async fn two_factor_enroll_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => enroll_view(&c, &v, StatusCode::OK, None).await,
        Err(r) => r,
    }
}

/// `POST /console/2fa/enroll`: starts a setup (a new secret, sealed in the store), then
/// redirects to its page, so a reload shows the same secret rather than starting another.
pub(super) async fn two_factor_enroll(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().totp_enroll(&v.actor).await {
        Ok(_) => see_other("/console/2fa/enroll", &[]),
        Err(e) => {
            let e = ConsoleError::from(e);
            two_factor_view(&c, &v, e.status(), Some(format!("could not start the setup: {}", e.message()))).await
        }
    }
}

#[derive(Template)]
#[template(path = "recovery.html")]
struct RecoveryPage {
    nav: Option<Nav>,
    codes: Vec<String>,
    /// The codes as a text file, a `data:` URL for the download link (no script, no request:
    /// the codes exist only in this answer).
    download: String,
}

impl RecoveryPage {
    fn new(nav: Option<Nav>, account: &str, codes: &[String]) -> Self {
        let mut text = format!(
            "keygate recovery codes for account {account}\r\n\
             Each code works once, in place of a code from your authenticator app.\r\n\
             Keep this file offline (printed, or in a password manager), never with your password.\r\n\r\n"
        );
        for c in codes {
            text.push_str(c);
            text.push_str("\r\n");
        }
        Self {
            nav,
            codes: codes.to_vec(),
            download: format!("data:text/plain;charset=utf-8,{}", percent_encode(&text)),
        }
    }
}

/// Percent-encodes everything but unreserved characters (RFC 3986 section 2.3), for a `data:` URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) async fn two_factor_confirm(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().totp_confirm(&v.actor, f.code.trim()).await {
        Ok(codes) => {
            // Reload the session so the navigation shows 2FA as on.
            let v = ctx.viewer(&c).await.unwrap_or(v);
            // The codes are the body of this answer, shown once (never stored in plain text).
            render(
                StatusCode::OK,
                &RecoveryPage::new(Some(Nav::of(&v, c.now_ms())), &v.info.account, &codes.codes),
                &[],
            )
        }
        Err(e) => {
            // The pending secret stays (for ten minutes from the start): the page shows it again
            // and asks for the next code, rather than a new QR code.
            let e = ConsoleError::from(e);
            let msg = match &e {
                ConsoleError::Service(keygate_service::ServiceError::InvalidCode(_)) => {
                    format!(
                        "{} Wait for the next code in your app and type it; the QR code stays the same.",
                        e.message()
                    )
                }
                _ => e.message(),
            };
            enroll_view(&c, &v, e.status(), Some(msg)).await
        }
    }
}

pub(super) async fn regenerate_recovery_codes(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().regenerate_recovery_codes(&v.actor, f.code.trim()).await {
        Ok(codes) => render(
            StatusCode::OK,
            &RecoveryPage::new(Some(Nav::of(&v, c.now_ms())), &v.info.account, &codes.codes),
            &[],
        ),
        Err(e) => {
            let e = ConsoleError::from(e);
            two_factor_view(&c, &v, e.status(), Some(e.message())).await
        }
    }
}

pub(super) async fn two_factor_disable(
    State(c): State<Console>,
    ctx: Ctx,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().totp_disable(&v.actor, f.code.trim()).await {
        Ok(()) => see_other("/console/2fa?notice=2fa-off", &[]),
        Err(e) => {
            let e = ConsoleError::from(e);
            two_factor_view(&c, &v, e.status(), Some(e.message())).await
        }
    }
}

/// Steps up with `code` when one was typed; afterwards `v` holds the rotated session (and the
/// proof that a code came with this request), and the returned cookie carries it.
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
    if let keygate_service::Actor::Owner { stepped_up_until, fresh_code, .. } = &mut v.actor {
        *stepped_up_until = v.info.stepped_up_until;
        // The code came with this request: the changes that need one in the same request
        // (enabling withdraw, adding an address) may use it.
        *fresh_code = fresh.fresh_code;
    }
    Ok(Some(cookie))
}

#[derive(Template)]
#[template(path = "step_up.html")]
struct StepUpPage {
    nav: Option<Nav>,
    csrf: String,
    next: String,
    error: Option<String>,
    /// False on an account without 2FA: the page says to turn it on instead of asking for a code
    /// there is no app to read from.
    two_factor: bool,
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
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

pub(super) async fn step_up_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NextQuery>) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => render(
            StatusCode::OK,
            &StepUpPage {
                nav: Some(Nav::of(&v, c.now_ms())),
                csrf: v.info.csrf_token.clone(),
                next: safe_next(q.next.as_deref()),
                error: None,
                two_factor: v.info.two_factor_enabled,
            },
            &[],
        ),
        Err(r) => r,
    }
}

pub(super) async fn step_up(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let mut v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
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
                    two_factor: v.info.two_factor_enabled,
                },
                &[],
            )
        }
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
