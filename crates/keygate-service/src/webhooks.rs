//! Owner notifications (issue #17): webhook endpoints, the events owners are told about, and
//! their delivery, signed per the Standard Webhooks specification.
//!
//! **Where events come from.** Every change keygate makes is written with its audit record in
//! one transaction. Events are derived from those records ([`event_for`]): a worker on every node
//! reads the audit log past a durable cursor and stores, in one transaction, the events with one
//! pending delivery per active endpoint ([`keygate_store::EventStore::ingest_events`]). So the
//! audit log is the transactional outbox, every existing write path emits its event without
//! knowing about webhooks, and a crash anywhere between the change and the delivery only delays
//! it. New event sources follow the same rule: write an audit record with the action named in
//! [`event_for`]'s table (the policy sweeper, [`crate::policy`], writes
//! [`POLICY_DISABLE_ACTION`], [`EXPIRING_ACTION`] and `key.expire` records).
//!
//! **Delivery.** Deliveries are claimed with a lease, so one node sends each at a time; a 2xx
//! answer marks it delivered; anything else (an error, a timeout, a 3xx: redirects are not
//! followed) schedules the next attempt after the [`WebhookConfig::retry_schedule_ms`] delay
//! (with up to 10% jitter); after the last one the delivery is dead (the dead letter, shown in the
//! console and redeliverable). A 410 Gone answer kills the delivery and pauses the endpoint (a
//! paused endpoint is not sent events made while it is paused). A
//! node that crashes mid-send leaves the lease to run out, and the delivery is sent again:
//! receivers deduplicate on `webhook-id`, which is the same on every attempt.
//!
//! **Targets.** Endpoint URLs must be `https://` and must not point at loopback, private,
//! link-local or other non-public addresses, unless the operator allows it
//! ([`WebhookConfig::allow_http`], [`WebhookConfig::allow_private_targets`]); the transport
//! checks the resolved addresses again at delivery time, so a name that resolves to a private
//! address is refused too.

use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult};
use async_trait::async_trait;
use keygate_auth::webhook::{WebhookSecret, is_public_address};
use keygate_auth::{AccountId, ApiKeyId, KeyLookup as _};
use keygate_proto::UnixMillis;
use keygate_store::events::{
    AccountEvent, AttemptOutcome, ClaimedDelivery, DeliveryRecord, DeliveryStatus, EndpointStatus, IngestReport,
    KeySighting, NewEvent, NewWebhookEndpoint, Sighting, WebhookEndpointRecord,
};
pub use keygate_store::events::{DeliveryStatus as Delivery, EndpointStatus as Endpoint};
use keygate_store::{AuditDraft, AuditRecord};
use serde::Serialize;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use zeroize::Zeroizing;

/// The audit action the policy sweeper writes when it disables a key (details: `label`,
/// `policy`, `deadline`, `idle_since`, `permissions`; see [`crate::policy`]): it becomes a
/// `key.disabled_by_policy` event.
pub const POLICY_DISABLE_ACTION: &str = "key.policy_disable";
/// The audit action of a policy's warning, 7 days and 1 day ahead (details: `label`, `policy`,
/// `action` (`disable` or `expire`), `at`, `days_left`; see [`crate::policy`]): it becomes a
/// `key.expiring` event.
pub const EXPIRING_ACTION: &str = "key.expiring";
/// The audit action of a key revoked because it was reported leaked: `key.leaked` event.
pub const LEAKED_ACTION: &str = "key.leaked";
/// The audit action of a key used from an address it was never used from: `key.new_address`.
pub const NEW_ADDRESS_ACTION: &str = "key.new_address";

/// Every event type, for documentation, the console and tests.
pub const EVENT_TYPES: &[&str] = &[
    "key.created",
    "key.widened",
    "key.disabled",
    "key.disabled_by_policy",
    "key.expiring",
    "key.expired",
    "key.revoked",
    "key.leaked",
    "key.new_address",
    "account.login_new_address",
    "account.login_code_failed",
    "account.2fa_enabled",
    "account.2fa_removed",
    "withdrawal.requested",
];

/// Delivery settings (`serve --webhook-*`).
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Accept `http://` endpoint URLs (tests, a receiver on the same machine). Off by default.
    pub allow_http: bool,
    /// Accept endpoints on loopback, private and other non-public addresses. Off by default.
    pub allow_private_targets: bool,
    /// The delays before the second, third, ... attempt; its length plus one is the number of
    /// attempts before a delivery is dead. Default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h,
    /// 20 h, 24 h (the Standard Webhooks example schedule: ten attempts over about three days).
    pub retry_schedule_ms: Vec<u64>,
    /// How long one attempt may take (connect and answer): 15 s.
    pub timeout_ms: u64,
    /// How often the worker looks for new events and due deliveries: 1 s.
    pub poll_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        const S: u64 = 1000;
        const H: u64 = 3600 * S;
        Self {
            allow_http: false,
            allow_private_targets: false,
            retry_schedule_ms: vec![5 * S, 300 * S, 1800 * S, 2 * H, 5 * H, 10 * H, 14 * H, 20 * H, 24 * H],
            timeout_ms: 15_000,
            poll_ms: 1_000,
        }
    }
}

impl WebhookConfig {
    /// The lease a sending node holds on a delivery: the attempt's timeout plus a margin, so a
    /// live node's attempt is never taken over, and a dead node's is retried soon after.
    #[must_use]
    pub fn lease_ms(&self) -> u64 {
        self.timeout_ms + 5_000
    }
}

/// How deliveries leave the process: an HTTP client in the server crate (the service knows no
/// HTTP). It must not follow redirects, must time out after [`WebhookConfig::timeout_ms`], and
/// must refuse to connect to non-public addresses unless the operator allowed them.
#[async_trait]
pub trait WebhookTransport: Send + Sync + fmt::Debug {
    /// POSTs `body` with `headers` to `url`; the HTTP status of the answer, or why there was none.
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Result<u16, String>;
}

/// An endpoint as its owner sees it: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookView {
    /// Id, for `keygate webhooks delete ID`.
    pub id: i64,
    /// Whose.
    pub account: String,
    /// Where deliveries go.
    pub url: String,
    /// The owner's note.
    pub description: String,
    /// `active` or `disabled`.
    pub status: EndpointStatus,
    /// Registration time, ms.
    pub created_at: u64,
}

/// A new endpoint and its signing secret, shown this once.
#[derive(Serialize)]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookView,
    /// `whsec_...`: what the receiver verifies signatures with; stored sealed, shown this once.
    #[serde(serialize_with = "expose_secret")]
    pub secret: Zeroizing<String>,
}

// Serialising a CreatedWebhook is the one sanctioned way the secret leaves the service: to
// whoever registered the endpoint, once.
fn expose_secret<S: serde::Serializer>(secret: &Zeroizing<String>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(secret)
}

impl fmt::Debug for CreatedWebhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedWebhook").field("endpoint", &self.endpoint).field("secret", &"<hidden>").finish()
    }
}

/// A delivery as the console and CLI show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// Id, for redelivery.
    pub id: i64,
    /// The event's `webhook-id`.
    pub webhook_id: String,
    /// The event type.
    pub event_type: String,
    /// `pending`, `delivered` or `dead` (the dead letter).
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The next attempt, ms (pending ones).
    pub next_attempt_at: Option<u64>,
    /// The last attempt, ms.
    pub last_attempt_at: Option<u64>,
    /// The last answer's HTTP status.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

impl DeliveryView {
    fn of(d: &DeliveryRecord) -> Self {
        Self {
            id: d.id,
            webhook_id: webhook_id(d.audit_seq),
            event_type: d.event_type.clone(),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: (d.status == DeliveryStatus::Pending).then_some(d.next_attempt_at.0),
            last_attempt_at: d.last_attempt_at.map(|t| t.0),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
        }
    }
}

/// An event as a console notice: the same body the webhooks carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NoticeView {
    /// Store id (newest is highest).
    pub id: i64,
    /// The `webhook-id` of its deliveries.
    pub webhook_id: String,
    /// The event type.
    pub event_type: String,
    /// When, ms.
    pub at: u64,
    /// One readable line.
    pub summary: String,
    /// The delivered body.
    pub payload: serde_json::Value,
}

/// The `webhook-id` of the event made of audit record `seq`: the same on every attempt and for
/// every endpoint, so receivers can deduplicate.
#[must_use]
pub fn webhook_id(audit_seq: i64) -> String {
    format!("msg_kg{audit_seq}")
}

/// The longest endpoint URL accepted.
const MAX_URL_LEN: usize = 2_000;
/// The most endpoints an account may have.
pub const MAX_ENDPOINTS_PER_ACCOUNT: usize = 10;
/// Pairs of (key, address) known to be stored, kept in memory so a flush writes only new ones.
const KNOWN_ADDRESSES_CAP: usize = 100_000;
/// Events read per ingest transaction.
const INGEST_PAGE: u32 = 500;
/// Deliveries claimed (and sent concurrently) per worker round.
const CLAIM_BATCH: u32 = 32;
/// Deliveries one node sends at once.
const MAX_IN_FLIGHT: usize = 256;

/// Checks an endpoint URL against the operator's rules: `https://` (or `http://` when allowed),
/// a host, no user name or password (it would be stored in the clear), and, when the host is an
/// IP address or a local name, a public one unless private targets are allowed. Returns the URL
/// as it will be used.
///
/// # Errors
/// [`ServiceError::Invalid`] saying which rule failed.
pub fn check_target(raw: &str, config: &WebhookConfig) -> ServiceResult<String> {
    let invalid = |why: &str| ServiceError::Invalid(format!("webhook URL: {why}"));
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(invalid("longer than 2000 characters"));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if config.allow_http => {}
        "http" => return Err(invalid("must be https:// (this server does not allow plain http targets)")),
        _ => return Err(invalid("must be https://")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry a user name or password"));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a #fragment"));
    }
    let private = match url.host() {
        None => return Err(invalid("has no host")),
        Some(url::Host::Ipv4(ip)) => !is_public_address(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public_address(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || [".localhost", ".local", ".internal", ".lan", ".home.arpa"].iter().any(|s| d.ends_with(s))
                || !d.contains('.')
        }
    };
    if private && !config.allow_private_targets {
        return Err(invalid("points at a loopback, private or local address, which this server does not allow"));
    }
    Ok(url.to_string())
}

/// The event audit record `r` means for its account, if any; the table of event types:
///
/// | audit action | when | event |
/// |---|---|---|
/// | `key.create` | | `key.created` |
/// | `key.edit` | `details.widened` | `key.widened` |
/// | `key.suspend` | | `key.disabled` (`reason`) |
/// | [`POLICY_DISABLE_ACTION`] | | `key.disabled_by_policy` |
/// | [`EXPIRING_ACTION`] | | `key.expiring` |
/// | `key.expire` | | `key.expired` |
/// | `key.revoke` | | `key.revoked` |
/// | [`LEAKED_ACTION`] | | `key.leaked` |
/// | [`NEW_ADDRESS_ACTION`] | | `key.new_address` |
/// | `auth.login` (no 2FA pending), `auth.second_factor` | first login of the account from this address | `account.login_new_address` |
/// | `totp.failed` | `details.purpose == "login"` | `account.login_code_failed` |
/// | `totp.confirm` | | `account.2fa_enabled` |
/// | `totp.disable`, `totp.reset` | | `account.2fa_removed` |
/// | `api.withdraw` | | `withdrawal.requested` |
/// | `app.token` (a key issued to a connected app) | | `key.created` (with `app`) |
#[must_use]
pub fn event_for(r: &AuditRecord) -> Option<NewEvent> {
    let d = &r.draft;
    let account = d.account_id?;
    let details = &d.details;
    let mut first_sighting = None;
    let (event_type, data) = match d.action.as_str() {
        "key.create" => ("key.created", key_data(d, &["label", "type", "permissions", "restrictions"])),
        // A key issued to a connected app at its code exchange (issue #15): a key created.
        "app.token" => ("key.created", key_data(d, &["label", "type", "permissions", "restrictions", "app"])),
        "key.edit" if details["widened"] == serde_json::Value::Bool(true) => {
            let mut data = key_data(d, &[]);
            data["before"] = details["before"].clone();
            data["after"] = details["after"].clone();
            ("key.widened", data)
        }
        "key.suspend" => ("key.disabled", key_data(d, &["label", "reason"])),
        POLICY_DISABLE_ACTION => {
            ("key.disabled_by_policy", key_data(d, &["label", "policy", "deadline", "idle_since", "permissions"]))
        }
        EXPIRING_ACTION => ("key.expiring", key_data(d, &["label", "policy", "action", "at", "days_left"])),
        "key.expire" => ("key.expired", key_data(d, &["label", "deadline"])),
        "key.revoke" => ("key.revoked", key_data(d, &["label"])),
        LEAKED_ACTION => ("key.leaked", key_data(d, &["label", "url", "source", "revoked"])),
        NEW_ADDRESS_ACTION => ("key.new_address", key_data(d, &["address"])),
        "auth.login" | "auth.second_factor" => {
            if d.action == "auth.login" && details["two_factor_pending"] != serde_json::Value::Bool(false) {
                return None;
            }
            let address = d.source.clone()?;
            first_sighting =
                Some(Sighting { scope: "login", subject: account.0.to_string(), address: address.clone() });
            ("account.login_new_address", serde_json::json!({ "address": address }))
        }
        "totp.failed" if details["purpose"] == "login" => {
            ("account.login_code_failed", serde_json::json!({ "address": d.source, "reason": details["reason"] }))
        }
        "totp.confirm" => ("account.2fa_enabled", serde_json::json!({})),
        "totp.disable" | "totp.reset" => ("account.2fa_removed", serde_json::json!({ "how": d.action })),
        "api.withdraw" => (
            "withdrawal.requested",
            serde_json::json!({
                "key": d.target,
                "asset": details["asset"],
                "amount": details["amount"],
                "address": details["address"],
            }),
        ),
        _ => return None,
    };
    let mut data = data;
    if let Some(map) = data.as_object_mut() {
        map.insert("account_id".into(), serde_json::json!(account.0));
        map.insert("actor".into(), serde_json::json!(d.actor));
        // The client address, unless the event names a source of its own (a leak report's
        // scanner source, e.g. `content`), which it keeps (outside review).
        map.entry("source").or_insert_with(|| serde_json::json!(d.source));
        map.insert("audit_seq".into(), serde_json::json!(r.seq));
    }
    let payload = serde_json::json!({
        "type": event_type,
        "timestamp": rfc3339(d.at),
        "data": data,
    });
    Some(NewEvent { account_id: account, event_type: event_type.into(), payload: payload.to_string(), first_sighting })
}

/// `{"key": target, field: details[field]...}` for a key event.
fn key_data(d: &AuditDraft, fields: &[&str]) -> serde_json::Value {
    let mut data = serde_json::json!({ "key": d.target });
    for f in fields {
        if let Some(v) = d.details.get(*f) {
            data[*f] = v.clone();
        }
    }
    data
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-12-07T05:20:00.123Z`).
fn rfc3339(t: UnixMillis) -> String {
    let nanos = i128::from(t.0) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|dt| {
            dt.format(&time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// One readable line for a notice.
fn summary(event_type: &str, data: &serde_json::Value) -> String {
    let key = data["key"].as_str().unwrap_or("");
    let label = data["label"].as_str().map(|l| format!(" ({l})")).unwrap_or_default();
    let address = data["address"].as_str().unwrap_or("an unknown address");
    match event_type {
        "key.created" => format!("Key {key}{label} was created"),
        "key.widened" => format!("Key {key} was given more permissions or fewer restrictions"),
        "key.disabled" => format!("Key {key}{label} was disabled: {}", data["reason"].as_str().unwrap_or("")),
        "key.disabled_by_policy" => format!(
            "Key {key}{label} was disabled by the key policy: {}",
            crate::policy::policy_words(data["policy"].as_str().unwrap_or(""))
        ),
        "key.expiring" => format!(
            "Key {key}{label} will be {} by the key policy in {} day{} ({})",
            if data["action"] == "expire" { "expired" } else { "disabled" },
            data["days_left"],
            if data["days_left"] == 1 { "" } else { "s" },
            crate::policy::policy_words(data["policy"].as_str().unwrap_or(""))
        ),
        "key.expired" => format!("Key {key}{label} has expired"),
        "key.revoked" => format!("Key {key}{label} was revoked"),
        "key.leaked" => format!("Key {key}{label} was reported leaked and is revoked"),
        "key.new_address" => format!("Key {key} was used from a new address, {address}"),
        "account.login_new_address" => format!("Signed in from a new address, {address}"),
        "account.login_code_failed" => {
            format!("A wrong 2FA code was typed after your correct password, from {address}")
        }
        "account.2fa_enabled" => "Two-factor authentication was turned on".into(),
        "account.2fa_removed" => "Two-factor authentication was removed".into(),
        "withdrawal.requested" => format!(
            "Withdrawal of {} {} requested with key {}",
            data["amount"].as_str().unwrap_or(""),
            data["asset"].as_str().unwrap_or(""),
            key
        ),
        other => other.to_owned(),
    }
}

/// The delay before attempt `attempts + 1` with up to 10% jitter, or `None` when
/// `attempts` attempts are all there are.
fn retry_delay(schedule: &[u64], attempts: u32) -> Option<u64> {
    let base = *schedule.get(usize::try_from(attempts).ok()?.checked_sub(1)?)?;
    let mut b = [0u8; 2];
    let jitter =
        if getrandom::getrandom(&mut b).is_ok() { base / 10 * u64::from(u16::from_le_bytes(b)) / 65_535 } else { 0 };
    Some(base + jitter)
}

/// The worker's memory: (key, address) pairs known to be stored already.
#[derive(Debug, Default)]
pub(crate) struct WebhookState {
    known_addresses: Mutex<HashSet<(ApiKeyId, IpAddr)>>,
}

impl Service {
    fn webhook_config(&self) -> &WebhookConfig {
        &self.inner.config.webhooks
    }

    /// The webhook delivery rules this service runs with, for the transport that carries them.
    #[must_use]
    pub fn webhook_settings(&self) -> &WebhookConfig {
        &self.inner.config.webhooks
    }

    /// The endpoint `id` if `actor` may manage it.
    async fn endpoint_for(&self, actor: &Actor, id: i64) -> ServiceResult<WebhookEndpointRecord> {
        let not_found = || ServiceError::NotFound(format!("webhook endpoint {id}"));
        let ep = self.inner.store.webhook_endpoint(id).await?.ok_or_else(not_found)?;
        if let Actor::Owner { account_id, .. } = actor
            && *account_id != ep.account_id
        {
            return Err(not_found());
        }
        Ok(ep)
    }

    async fn webhook_view(&self, ep: &WebhookEndpointRecord) -> ServiceResult<WebhookView> {
        Ok(WebhookView {
            id: ep.id,
            account: self.account_name(ep.account_id).await?,
            url: ep.url.clone(),
            description: ep.description.clone(),
            status: ep.status,
            created_at: ep.created_at.0,
        })
    }

    fn webhook_draft(&self, actor: &Actor, action: &str, account: AccountId, details: serde_json::Value) -> AuditDraft {
        AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target: String::new(),
            account_id: Some(account),
            source: actor.source(),
            details,
        }
    }

    /// Registers a webhook endpoint for `account`; the signing secret is in the answer and
    /// nowhere else, ever again (stored sealed). Owners: their own account only.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a URL the rules refuse ([`check_target`]), a description
    /// over 200 characters or on several lines, or more than [`MAX_ENDPOINTS_PER_ACCOUNT`];
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn create_webhook(
        &self,
        actor: &Actor,
        account: &str,
        url: &str,
        description: &str,
    ) -> ServiceResult<CreatedWebhook> {
        let acc = self.account_record(actor, account).await?;
        let url = check_target(url, self.webhook_config())?;
        let description = description.trim();
        if description.chars().count() > 200 || description.chars().any(char::is_control) {
            return Err(ServiceError::Invalid("a webhook's description is at most 200 characters on one line".into()));
        }
        if self.inner.store.list_webhook_endpoints(Some(acc.id)).await?.len() >= MAX_ENDPOINTS_PER_ACCOUNT {
            return Err(ServiceError::Invalid(format!(
                "an account has at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints; delete one first"
            )));
        }
        let secret = WebhookSecret::generate(&mut OsEntropy)?;
        let new = NewWebhookEndpoint {
            account_id: acc.id,
            url: url.clone(),
            description: description.to_owned(),
            secret: Zeroizing::new(secret.expose().to_vec()),
            created_at: self.now_ms(),
        };
        let audit = self.webhook_draft(actor, "webhook.create", acc.id, serde_json::json!({ "url": url }));
        let ep = self.inner.store.create_webhook_endpoint(new, audit).await?;
        Ok(CreatedWebhook { endpoint: self.webhook_view(&ep).await?, secret: secret.display() })
    }

    /// The endpoints of `account` (owners: their own), or of every account for the operator
    /// when `account` is `None`.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn list_webhooks(&self, actor: &Actor, account: Option<&str>) -> ServiceResult<Vec<WebhookView>> {
        let filter = match (actor, account) {
            (_, Some(name)) => Some(self.account_record(actor, name).await?.id),
            (Actor::Owner { account_id, .. }, None) => Some(*account_id),
            (_, None) => None,
        };
        let mut out = Vec::new();
        for ep in self.inner.store.list_webhook_endpoints(filter).await? {
            out.push(self.webhook_view(&ep).await?);
        }
        Ok(out)
    }

    /// Deletes an endpoint; its pending deliveries become dead. An owner needs a step-up: an
    /// intruder in the owner's session must not be able to silence the owner's alerts quietly.
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`], [`ServiceError::NotFound`].
    pub async fn delete_webhook(&self, actor: &Actor, id: i64) -> ServiceResult<()> {
        let ep = self.endpoint_for(actor, id).await?;
        if !actor.stepped_up(self.now_ms()) {
            return Err(ServiceError::StepUpRequired("deleting a webhook endpoint".into()));
        }
        let mut audit =
            self.webhook_draft(actor, "webhook.delete", ep.account_id, serde_json::json!({ "url": ep.url }));
        audit.target = format!("webhook:{id}");
        self.inner.store.delete_webhook_endpoint(id, self.now_ms(), audit).await?;
        Ok(())
    }

    /// Pauses (`active == false`, needs a step-up from an owner, as deleting does) or resumes an
    /// endpoint. A paused endpoint gets no deliveries for events made while it is paused; those
    /// already pending wait and are sent once it resumes.
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`], [`ServiceError::NotFound`].
    pub async fn set_webhook_active(&self, actor: &Actor, id: i64, active: bool) -> ServiceResult<WebhookView> {
        let ep = self.endpoint_for(actor, id).await?;
        if !active && !actor.stepped_up(self.now_ms()) {
            return Err(ServiceError::StepUpRequired("pausing a webhook endpoint".into()));
        }
        let (status, action) = if active {
            (EndpointStatus::Active, "webhook.enable")
        } else {
            (EndpointStatus::Disabled, "webhook.disable")
        };
        let mut audit = self.webhook_draft(actor, action, ep.account_id, serde_json::json!({ "url": ep.url }));
        audit.target = format!("webhook:{id}");
        self.inner.store.set_webhook_endpoint_status(id, status, audit).await?;
        self.webhook_view(&WebhookEndpointRecord { status, ..ep }).await
    }

    /// The latest deliveries to an endpoint (at most `limit`), newest first: the console's
    /// delivery log with its dead letters.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign endpoint.
    pub async fn webhook_deliveries(&self, actor: &Actor, id: i64, limit: u32) -> ServiceResult<Vec<DeliveryView>> {
        self.endpoint_for(actor, id).await?;
        let records = self.inner.store.webhook_deliveries(id, limit.min(500)).await?;
        Ok(records.iter().map(DeliveryView::of).collect())
    }

    /// Sends a dead delivery again (its attempts start over).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign endpoint or delivery;
    /// [`ServiceError::Conflict`] when the delivery is not dead.
    pub async fn redeliver_webhook(&self, actor: &Actor, endpoint: i64, delivery: i64) -> ServiceResult<()> {
        let ep = self.endpoint_for(actor, endpoint).await?;
        let mut audit =
            self.webhook_draft(actor, "webhook.redeliver", ep.account_id, serde_json::json!({ "delivery": delivery }));
        audit.target = format!("webhook:{endpoint}");
        self.inner.store.redeliver(endpoint, delivery, self.now_ms(), audit).await?;
        Ok(())
    }

    /// The latest events of `account` (owners: their own), newest first: the console's notices,
    /// the same events the webhooks carry. Reads what the worker has ingested (within a poll
    /// interval of the change).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn notices(&self, actor: &Actor, account: &str, limit: u32) -> ServiceResult<Vec<NoticeView>> {
        let acc = self.account_record(actor, account).await?;
        let events = self.inner.store.account_events(acc.id, i64::MAX, limit.min(500)).await?;
        Ok(events.iter().map(notice_of).collect())
    }

    /// Stores the addresses keys were used from since the last flush; each one new for its key
    /// gets a `key.new_address` audit record (hence event). Pairs already known in this process
    /// are skipped without a store round trip. Best effort: a failure is retried the next time
    /// the key is used from that address.
    pub(crate) async fn record_key_addresses(&self, uses: Vec<crate::usage::AddressUse>) -> ServiceResult<()> {
        let state = &self.inner.webhooks;
        let mut fresh: Vec<crate::usage::AddressUse> = {
            let known = state.known_addresses.lock().unwrap_or_else(PoisonError::into_inner);
            uses.into_iter().filter(|u| !known.contains(&(u.key.clone(), u.ip))).collect()
        };
        if fresh.is_empty() {
            return Ok(());
        }
        // Locked in one order, so two nodes flushing the same pairs never deadlock.
        fresh.sort_by(|a, b| (a.key.as_str(), a.ip).cmp(&(b.key.as_str(), b.ip)));
        let sightings: Vec<KeySighting> = fresh
            .iter()
            .filter_map(|u| {
                let entry = self.inner.cache.lookup(u.key.as_str())?;
                Some(KeySighting {
                    key: u.key.clone(),
                    address: u.ip.to_string(),
                    audit: AuditDraft {
                        at: u.at,
                        actor: format!("api:{}", u.key),
                        action: NEW_ADDRESS_ACTION.into(),
                        target: u.key.to_string(),
                        account_id: Some(entry.account_id),
                        source: Some(u.ip.to_string()),
                        details: serde_json::json!({ "address": u.ip.to_string() }),
                    },
                })
            })
            .collect();
        self.inner.store.record_key_addresses(&sightings).await?;
        let mut known = state.known_addresses.lock().unwrap_or_else(PoisonError::into_inner);
        if known.len() + fresh.len() > KNOWN_ADDRESSES_CAP {
            known.clear();
        }
        known.extend(fresh.into_iter().map(|u| (u.key, u.ip)));
        Ok(())
    }

    /// Turns every audit record not yet looked at into its event and deliveries (see the
    /// module documentation); returns what the last page did. Safe on several nodes at once.
    ///
    /// # Errors
    /// Storage errors; the cursor stays where it was, so the next call does the same work.
    pub async fn ingest_events(&self) -> ServiceResult<IngestReport> {
        let mut total = IngestReport::default();
        loop {
            let r = self.inner.store.ingest_events(INGEST_PAGE, &event_for).await?;
            total.read += r.read;
            total.events += r.events;
            total.deliveries += r.deliveries;
            total.cursor = r.cursor;
            if r.read < INGEST_PAGE as usize {
                return Ok(total);
            }
        }
    }

    /// Sends the deliveries due now (up to a batch, concurrently) through `transport` and records
    /// each outcome; returns how many were attempted.
    ///
    /// # Errors
    /// Storage errors while claiming; an outcome that cannot be recorded is logged and left to
    /// the lease (the delivery is sent again).
    pub async fn deliver_due_webhooks(&self, transport: &Arc<dyn WebhookTransport>) -> ServiceResult<usize> {
        let mut tasks = tokio::task::JoinSet::new();
        let n = self.send_due_webhooks(transport, CLAIM_BATCH, &mut tasks).await?;
        while tasks.join_next().await.is_some() {}
        Ok(n)
    }

    /// Claims up to `limit` deliveries due now (at most one per endpoint, none of an endpoint
    /// with one in flight) and starts sending each as a task in `tasks`, without waiting for
    /// them; returns how many.
    async fn send_due_webhooks(
        &self,
        transport: &Arc<dyn WebhookTransport>,
        limit: u32,
        tasks: &mut tokio::task::JoinSet<()>,
    ) -> ServiceResult<usize> {
        let now = self.now_ms();
        let lease = now.plus_millis(self.webhook_config().lease_ms());
        let claimed = self.inner.store.claim_deliveries(now, lease, limit, true).await?;
        let n = claimed.len();
        for d in claimed {
            let service = self.clone();
            let transport = Arc::clone(transport);
            tasks.spawn(async move { service.attempt(&*transport, d).await });
        }
        Ok(n)
    }

    /// One attempt: sign, POST, record.
    async fn attempt(&self, transport: &dyn WebhookTransport, d: ClaimedDelivery) {
        let now = self.now_ms();
        let id = webhook_id(d.audit_seq);
        let timestamp = now.0 / 1000;
        let secret = WebhookSecret::from_bytes(d.secret.clone());
        let signature = secret.sign(&id, timestamp, d.payload.as_bytes());
        let headers = vec![
            ("webhook-id", id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
            ("content-type", "application/json".to_owned()),
            ("user-agent", "keygate-webhooks/1".to_owned()),
        ];
        let answer = transport.post(&d.url, headers, d.payload.clone().into_bytes()).await;
        let at = self.now_ms();
        let attempts = d.attempts + 1;
        let retry = || retry_delay(&self.webhook_config().retry_schedule_ms, attempts).map(|ms| at.plus_millis(ms));
        let outcome = match answer {
            Ok(status) if (200..300).contains(&status) => AttemptOutcome::Delivered { at, status },
            Ok(410) => AttemptOutcome::Failed {
                at,
                status: Some(410),
                error: "the receiver answered 410 Gone: endpoint paused".into(),
                retry_at: None,
                disable_endpoint: true,
            },
            Ok(status) => AttemptOutcome::Failed {
                at,
                status: Some(status),
                error: format!("the receiver answered HTTP {status}"),
                retry_at: retry(),
                disable_endpoint: false,
            },
            Err(why) => {
                AttemptOutcome::Failed { at, status: None, error: why, retry_at: retry(), disable_endpoint: false }
            }
        };
        match &outcome {
            AttemptOutcome::Delivered { .. } => {
                tracing::debug!(webhook_id = %id, endpoint = d.endpoint_id, event = %d.event_type, "webhook delivered");
            }
            AttemptOutcome::Failed { error, retry_at, .. } => tracing::info!(
                webhook_id = %id, endpoint = d.endpoint_id, event = %d.event_type, attempts, error = %error,
                dead = retry_at.is_none(), "webhook attempt failed"
            ),
        }
        if let Err(e) = self.inner.store.finish_delivery(d.id, outcome).await {
            tracing::warn!(error = %e, delivery = d.id, "recording a webhook attempt failed; it will be sent again");
        }
    }

    /// Starts the event worker: every [`WebhookConfig::poll_ms`], turns new audit records into
    /// events and sends the deliveries that are due through `transport`. Runs on every node;
    /// the store makes sure each event is made once and each delivery sent by one node at a time.
    pub fn start_webhooks(&self, transport: Arc<dyn WebhookTransport>) {
        let every = Duration::from_millis(self.webhook_config().poll_ms.max(10));
        // Events (and so notices) are made on a loop of their own, never behind a delivery.
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = service.ingest_events().await {
                    tracing::warn!(error = %e, "reading new events failed; will retry");
                }
            }
        }));
        // Deliveries: each on its own task, at most MAX_IN_FLIGHT at once on this node and one
        // per endpoint anywhere, so a receiver that hangs holds back only its own.
        let service = self.clone();
        self.inner.background.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut in_flight = tokio::task::JoinSet::new();
            loop {
                tick.tick().await;
                while in_flight.try_join_next().is_some() {}
                let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
                if room == 0 {
                    continue;
                }
                let limit = u32::try_from(room).unwrap_or(CLAIM_BATCH).min(CLAIM_BATCH);
                match service.send_due_webhooks(&transport, limit, &mut in_flight).await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed; will retry"),
                }
            }
        }));
    }
}

fn notice_of(e: &AccountEvent) -> NoticeView {
    let payload: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null);
    NoticeView {
        id: e.id,
        webhook_id: webhook_id(e.audit_seq),
        event_type: e.event_type.clone(),
        at: e.at.0,
        summary: summary(&e.event_type, &payload["data"]),
        payload,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(http: bool, private: bool) -> WebhookConfig {
        WebhookConfig { allow_http: http, allow_private_targets: private, ..WebhookConfig::default() }
    }

    #[test]
    fn targets_must_be_public_https_unless_the_operator_allows_otherwise() {
        let strict = config(false, false);
        assert_eq!(check_target("https://hooks.example.com/kg", &strict).unwrap(), "https://hooks.example.com/kg");
        for refused in [
            "http://hooks.example.com/kg",
            "ftp://hooks.example.com/",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://10.0.0.8/x",
            "https://169.254.169.254/latest",
            "https://localhost:8080/",
            "https://printer.local/",
            "https://intranet/",
            "https://user:pw@hooks.example.com/",
            "not a url",
        ] {
            assert!(check_target(refused, &strict).is_err(), "{refused}");
        }
        let loose = config(true, true);
        assert!(check_target("http://127.0.0.1:9000/hook", &loose).is_ok());
        assert!(check_target("https://127.0.0.1:9000/hook", &config(false, true)).is_ok());
        assert!(check_target("http://127.0.0.1:9000/hook", &config(false, true)).is_err(), "http still refused");
    }

    #[test]
    fn retries_follow_the_schedule_with_bounded_jitter_and_then_stop() {
        let s = [1_000, 60_000];
        let first = retry_delay(&s, 1).unwrap();
        assert!((1_000..=1_100).contains(&first), "{first}");
        let second = retry_delay(&s, 2).unwrap();
        assert!((60_000..=66_000).contains(&second), "{second}");
        assert_eq!(retry_delay(&s, 3), None, "three attempts in all");
        assert_eq!(retry_delay(&[], 1), None);
    }

    fn record(action: &str, details: serde_json::Value, source: Option<&str>) -> AuditRecord {
        AuditRecord {
            seq: 42,
            draft: AuditDraft {
                at: UnixMillis(1_765_000_000_123),
                actor: "owner:alice".into(),
                action: action.into(),
                target: "kg_example".into(),
                account_id: Some(AccountId(7)),
                source: source.map(str::to_owned),
                details,
            },
            prev_hash: [0; 32],
            hash: [0; 32],
        }
    }

    #[test]
    fn audit_records_map_to_the_documented_events() {
        let cases = [
            ("key.create", serde_json::json!({"label": "bot"}), Some("key.created")),
            ("key.edit", serde_json::json!({"widened": true}), Some("key.widened")),
            ("key.edit", serde_json::json!({"widened": false}), None),
            ("key.suspend", serde_json::json!({"reason": "2fa removed"}), Some("key.disabled")),
            (POLICY_DISABLE_ACTION, serde_json::json!({"policy": "unused_days"}), Some("key.disabled_by_policy")),
            (EXPIRING_ACTION, serde_json::json!({}), Some("key.expiring")),
            ("key.revoke", serde_json::json!({}), Some("key.revoked")),
            (LEAKED_ACTION, serde_json::json!({}), Some("key.leaked")),
            (NEW_ADDRESS_ACTION, serde_json::json!({"address": "192.0.2.1"}), Some("key.new_address")),
            ("auth.login", serde_json::json!({"two_factor_pending": false}), Some("account.login_new_address")),
            ("auth.login", serde_json::json!({"two_factor_pending": true}), None),
            ("auth.second_factor", serde_json::json!({}), Some("account.login_new_address")),
            ("totp.failed", serde_json::json!({"purpose": "login"}), Some("account.login_code_failed")),
            ("totp.failed", serde_json::json!({"purpose": "step_up"}), None),
            ("totp.confirm", serde_json::json!({}), Some("account.2fa_enabled")),
            ("totp.disable", serde_json::json!({}), Some("account.2fa_removed")),
            ("totp.reset", serde_json::json!({}), Some("account.2fa_removed")),
            ("api.withdraw", serde_json::json!({"asset": "USDT"}), Some("withdrawal.requested")),
            ("auth.logout", serde_json::json!({}), None),
        ];
        for (action, details, want) in cases {
            let got = event_for(&record(action, details, Some("192.0.2.9")));
            assert_eq!(got.as_ref().map(|e| e.event_type.as_str()), want, "{action}");
            if let Some(e) = got {
                assert!(EVENT_TYPES.contains(&e.event_type.as_str()));
                let body: serde_json::Value = serde_json::from_str(&e.payload).unwrap();
                assert_eq!(body["type"], e.event_type);
                assert_eq!(body["timestamp"], "2025-12-06T05:46:40.123Z");
                assert_eq!(body["data"]["audit_seq"], 42);
                assert_eq!(body["data"]["account_id"], 7);
                assert_eq!(e.first_sighting.is_some(), e.event_type == "account.login_new_address");
            }
        }
        assert!(event_for(&record("auth.second_factor", serde_json::json!({}), None)).is_none(), "no address");
    }
}
