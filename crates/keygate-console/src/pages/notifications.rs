//! Notifications (issue #17): the account's notices (the events its webhooks carry), its webhook
//! endpoints with their delivery log (dead letters included), and the forms to register, pause,
//! resume and delete endpoints and to send a dead delivery again.

use super::layout::{Nav, NoticeQuery, error_page, form_viewer, render, see_other, viewer_or_login};
use super::maybe_step_up;
use crate::session::{Ctx, Viewer};
use crate::view::when;
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use keygate_proto::UnixMillis;
use keygate_service::webhooks::{Delivery, Endpoint};
use keygate_service::{DeliveryView, WebhookView};
use serde::Deserialize;

/// A notice as the page shows it.
pub(crate) struct NoticeRow {
    pub at: String,
    pub event_type: String,
    pub summary: String,
}

/// A delivery as the page shows it.
pub(crate) struct DeliveryRow {
    pub id: i64,
    pub webhook_id: String,
    pub event_type: String,
    pub status: &'static str,
    pub dead: bool,
    pub attempts: u32,
    pub last_attempt: String,
    pub next_attempt: String,
    pub last_error: String,
}

impl DeliveryRow {
    fn of(d: &DeliveryView) -> Self {
        Self {
            id: d.id,
            webhook_id: d.webhook_id.clone(),
            event_type: d.event_type.clone(),
            status: match d.status {
                Delivery::Pending => "pending",
                Delivery::Delivered => "delivered",
                Delivery::Dead => "dead",
            },
            dead: d.status == Delivery::Dead,
            attempts: d.attempts,
            last_attempt: d.last_attempt_at.map(|t| when(Some(UnixMillis(t)))).unwrap_or_default(),
            next_attempt: d.next_attempt_at.map(|t| when(Some(UnixMillis(t)))).unwrap_or_default(),
            last_error: d.last_error.clone().unwrap_or_default(),
        }
    }
}

/// An endpoint with its latest deliveries.
pub(crate) struct EndpointRow {
    pub id: i64,
    pub url: String,
    pub description: String,
    pub active: bool,
    pub created: String,
    pub deliveries: Vec<DeliveryRow>,
    pub dead: usize,
}

#[derive(Template)]
#[template(path = "notifications.html")]
struct NotificationsPage {
    nav: Option<Nav>,
    csrf: String,
    notices: Vec<NoticeRow>,
    endpoints: Vec<EndpointRow>,
    message: Option<String>,
    error: Option<String>,
    /// The secret of an endpoint registered with this very request, shown this once.
    created: Option<(WebhookView, String)>,
}

async fn page_for(
    c: &Console,
    v: &Viewer,
    message: Option<String>,
    error: Option<String>,
    created: Option<(WebhookView, String)>,
) -> Result<NotificationsPage, ConsoleError> {
    let s = c.service();
    let notices = s
        .notices(&v.actor, &v.info.account, 50)
        .await?
        .into_iter()
        .map(|n| NoticeRow { at: when(Some(UnixMillis(n.at))), event_type: n.event_type, summary: n.summary })
        .collect();
    let mut endpoints = Vec::new();
    for ep in s.list_webhooks(&v.actor, None).await? {
        let deliveries: Vec<DeliveryRow> =
            s.webhook_deliveries(&v.actor, ep.id, 20).await?.iter().map(DeliveryRow::of).collect();
        endpoints.push(EndpointRow {
            id: ep.id,
            url: ep.url,
            description: ep.description,
            active: ep.status == Endpoint::Active,
            created: when(Some(UnixMillis(ep.created_at))),
            dead: deliveries.iter().filter(|d| d.dead).count(),
            deliveries,
        });
    }
    Ok(NotificationsPage {
        nav: Some(Nav::of(v, c.now_ms())),
        csrf: v.info.csrf_token.clone(),
        notices,
        endpoints,
        message,
        error,
        created,
    })
}

async fn show(c: &Console, v: &Viewer, status: StatusCode, message: Option<String>, error: Option<String>) -> Response {
    match page_for(c, v, message, error, None).await {
        Ok(p) => render(status, &p, &[]),
        Err(e) => error_page(&e, Some(Nav::of(v, c.now_ms()))),
    }
}

/// `GET /console/notifications`.
pub(super) async fn page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NoticeQuery>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let message = [
        ("deleted", "Endpoint deleted; its pending deliveries will not be sent."),
        ("paused", "Endpoint paused: nothing is sent to it until you resume it."),
        ("resumed", "Endpoint resumed: events from now on are sent to it."),
        ("redelivering", "The delivery will be sent again within a few seconds."),
    ]
    .iter()
    .find(|(event, _)| q.is(event))
    .map(|(_, m)| (*m).to_owned());
    show(&c, &v, StatusCode::OK, message, None).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct WebhookForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    description: String,
}

/// `POST /console/notifications/webhooks`: registers an endpoint and shows its secret once
/// (the answer is the page itself, never a redirect, so the secret is in no URL).
pub(super) async fn create(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<WebhookForm>) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().create_webhook(&v.actor, &v.info.account, &f.url, &f.description).await {
        Ok(created) => {
            let secret = created.secret.to_string();
            match page_for(&c, &v, None, None, Some((created.endpoint, secret))).await {
                Ok(p) => render(StatusCode::CREATED, &p, &[]),
                Err(e) => error_page(&e, Some(Nav::of(&v, c.now_ms()))),
            }
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            show(&c, &v, e.status(), None, Some(e.message())).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    csrf: Option<String>,
    /// A 2FA code, for the actions that need a step-up (delete, pause) when none is open.
    #[serde(default)]
    code: Option<String>,
}

/// `POST /console/notifications/webhooks/{id}/{action}`: `delete`, `pause` or `resume`.
pub(super) async fn act(
    State(c): State<Console>,
    ctx: Ctx,
    Path((id, action)): Path<(i64, String)>,
    axum::Form(f): axum::Form<ActionForm>,
) -> Response {
    let mut v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cookie = match maybe_step_up(&c, &ctx, &mut v, f.code.as_deref()).await {
        Ok(cookie) => cookie,
        Err(e) => return show(&c, &v, e.status(), None, Some(e.message())).await,
    };
    let s = c.service();
    let done = match action.as_str() {
        "delete" => s.delete_webhook(&v.actor, id).await.map(|()| "deleted"),
        "pause" => s.set_webhook_active(&v.actor, id, false).await.map(|_| "paused"),
        "resume" => s.set_webhook_active(&v.actor, id, true).await.map(|_| "resumed"),
        _ => {
            return error_page(
                &ConsoleError::Service(keygate_service::ServiceError::NotFound("no such action".into())),
                None,
            );
        }
    };
    match done {
        Ok(event) => see_other(&format!("/console/notifications?notice={event}"), cookie.as_slice()),
        Err(e) => {
            let e = ConsoleError::from(e);
            show(&c, &v, e.status(), None, Some(e.message())).await
        }
    }
}

/// `POST /console/notifications/webhooks/{id}/deliveries/{delivery}/redeliver`.
pub(super) async fn redeliver(
    State(c): State<Console>,
    ctx: Ctx,
    Path((id, delivery)): Path<(i64, i64)>,
    axum::Form(f): axum::Form<ActionForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().redeliver_webhook(&v.actor, id, delivery).await {
        Ok(()) => see_other("/console/notifications?notice=redelivering", &[]),
        Err(e) => {
            let e = ConsoleError::from(e);
            show(&c, &v, e.status(), None, Some(e.message())).await
        }
    }
}
