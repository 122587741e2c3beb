//! The account's audit log: the page, and the queries the JSON API and the faucet's daily limit
//! share.

use super::layout::{Nav, error_page, render, viewer_or_login};
use crate::session::{Ctx, Viewer};
use crate::view::when;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

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

pub(super) async fn audit_page(State(c): State<Console>, ctx: Ctx) -> Response {
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
