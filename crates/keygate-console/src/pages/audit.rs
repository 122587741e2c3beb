//! The account's audit log as a person reads it: each record as a sentence, filters by event
//! type, key and date, pages of 100 going back through the whole history (a cursor by the
//! record's sequence number), and CSV/JSONL downloads of the filtered list. Also the query the
//! JSON API shares.

use super::layout::{Nav, error_page, render, viewer_or_login};
use crate::session::{Ctx, Viewer};
use crate::view::{iso, when};
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygate_proto::UnixMillis;
use keygate_service::AuditView;
use serde::Deserialize;
use std::collections::HashMap;

/// Rows on one page of the activity list.
const PAGE_ROWS: usize = 100;
/// Records read from the store per query while looking for matches.
const BATCH: u32 = 500;
/// Records one page may look through for matches before it offers "older" instead: a filter
/// that matches little still answers quickly.
const PAGE_SCAN: usize = 20_000;
/// Most rows in one download.
pub(crate) const EXPORT_ROWS: usize = 100_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The kinds of event the filter offers: (value, what the menu says, actions it covers).
const EVENT_TYPES: &[(&str, &str, &[&str])] = &[
    (
        "logins",
        "Logins and sessions",
        &[
            "auth.login",
            "auth.login_failed",
            "auth.second_factor",
            "auth.logout",
            "auth.step_up",
            "auth.sessions_ended",
        ],
    ),
    ("account", "Account and password", &["account.create", "account.sign_up", "invite.redeem", "account.password"]),
    (
        "2fa",
        "2FA",
        &[
            "totp.enroll",
            "totp.confirm",
            "totp.disable",
            "totp.failed",
            "totp.reset",
            "totp.recovery_codes_regenerated",
            "auth.recovery_code_used",
        ],
    ),
    ("keys", "Key changes", &["key.create", "key.edit", "key.revoke", "key.suspend", "app.token"]),
    (
        "apps",
        "Connected apps",
        &["app.consent", "app.consent_refused", "app.token", "app.code_reuse", "app.disconnect", "app.register"],
    ),
    ("refused", "Refused API requests", &["api.denied"]),
    ("withdrawals", "Withdrawals", &["api.withdraw"]),
    ("deposits", "Deposits and faucet", &["console.faucet", "exchange.deposit"]),
];

/// The filter, as the page's GET form sends it (and the download links repeat it).
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct AuditFilter {
    /// One of [`EVENT_TYPES`]' values; empty for all.
    #[serde(default)]
    r#type: Option<String>,
    /// A key id of the account; empty for all.
    #[serde(default)]
    key: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    from: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), inclusive.
    #[serde(default)]
    to: Option<String>,
    /// The page's cursor: records older than this sequence number.
    #[serde(default)]
    before: Option<String>,
}

/// The filter, checked.
#[derive(Debug, Clone, Default)]
struct Filter {
    actions: Option<&'static [&'static str]>,
    key: Option<String>,
    from_ms: Option<u64>,
    /// Exclusive end.
    until_ms: Option<u64>,
}

fn day_start(text: &str, what: &str) -> Result<Option<u64>, ConsoleError> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(t, &format)
        .map_err(|_| ConsoleError::BadRequest(format!("The {what} date {t:?} should look like 2026-01-31.")))?;
    let ms = d.midnight().assume_utc().unix_timestamp_nanos() / 1_000_000;
    Ok(Some(u64::try_from(ms).unwrap_or(0)))
}

impl AuditFilter {
    fn checked(&self) -> Result<Filter, ConsoleError> {
        let kind = self.r#type.as_deref().unwrap_or("").trim();
        let actions = if kind.is_empty() {
            None
        } else {
            let found = EVENT_TYPES.iter().find(|(v, _, _)| *v == kind);
            Some(
                found
                    .map(|(_, _, a)| *a)
                    .ok_or_else(|| ConsoleError::BadRequest(format!("No event type {kind:?}.")))?,
            )
        };
        let key = self.key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned);
        let from_ms = day_start(self.from.as_deref().unwrap_or(""), "from")?;
        let until_ms = day_start(self.to.as_deref().unwrap_or(""), "to")?.map(|d| d + DAY_MS);
        if let (Some(from), Some(until)) = (from_ms, until_ms)
            && from >= until
        {
            return Err(ConsoleError::BadRequest(format!(
                "The range runs backwards: {} is after {}. Put the earlier date first.",
                self.from.as_deref().unwrap_or("").trim(),
                self.to.as_deref().unwrap_or("").trim()
            )));
        }
        Ok(Filter { actions, key, from_ms, until_ms })
    }

    fn cursor(&self) -> i64 {
        self.before.as_deref().and_then(|b| b.trim().parse().ok()).unwrap_or(i64::MAX)
    }

    /// The query string of the filter (without the cursor), for links.
    fn query(&self) -> String {
        let pairs = [("type", &self.r#type), ("key", &self.key), ("from", &self.from), ("to", &self.to)];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref().filter(|v| !v.trim().is_empty()).map(|v| format!("{k}={}", url_encode(v.trim())))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes everything but unreserved characters.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Filter {
    fn matches(&self, r: &AuditView) -> bool {
        self.actions.is_none_or(|a| a.contains(&r.action.as_str()))
            && self.key.as_deref().is_none_or(|k| r.target == k)
            && self.from_ms.is_none_or(|f| r.at >= f)
            && self.until_ms.is_none_or(|u| r.at < u)
    }

    /// True once records are so old that none older can match (the log is in time order, give
    /// or take the clocks of several nodes: an hour's slack).
    fn past_the_start(&self, r: &AuditView) -> bool {
        self.from_ms.is_some_and(|f| r.at.saturating_add(60 * 60 * 1000) < f)
    }
}

/// Matching records older than `before`, newest first: at most `rows`, looking through at most
/// `scan` records; with the cursor to continue from when more may remain.
async fn matching(
    c: &Console,
    v: &Viewer,
    filter: &Filter,
    before: i64,
    rows: usize,
    scan: usize,
) -> Result<(Vec<AuditView>, Option<i64>), ConsoleError> {
    let mut cursor = before;
    let mut found = Vec::new();
    let mut scanned = 0usize;
    loop {
        let batch = c.service().audit_log_newest(&v.actor, cursor, BATCH).await?;
        let full = batch.len() == BATCH as usize;
        for r in batch {
            cursor = r.seq;
            scanned += 1;
            if filter.past_the_start(&r) {
                return Ok((found, None));
            }
            if filter.matches(&r) {
                found.push(r);
                if found.len() >= rows {
                    return Ok((found, Some(cursor)));
                }
            }
        }
        if !full {
            return Ok((found, None));
        }
        if scanned >= scan {
            return Ok((found, Some(cursor)));
        }
    }
}

/// The account's newest audit records (at most `limit`), newest first: one query for just
/// those, whatever the length of the history.
pub(crate) async fn recent_audit(c: &Console, v: &Viewer, limit: usize) -> Result<Vec<AuditView>, ConsoleError> {
    let limit = u32::try_from(limit).unwrap_or(u32::MAX);
    Ok(c.service().audit_log_newest(&v.actor, i64::MAX, limit).await?)
}

/// What the sentences need to know of the account's keys (revoked ones too): label and
/// permissions by key id.
struct KeyNames(HashMap<String, (String, Vec<String>)>);

impl KeyNames {
    async fn load(c: &Console, v: &Viewer) -> Result<Self, ConsoleError> {
        let keys = c.service().list_keys(&v.actor, None).await?;
        Ok(Self(
            keys.into_iter()
                .map(|k| {
                    let perms = k.permissions.iter().map(|p| p.as_str().to_owned()).collect();
                    (k.api_key, (k.label, perms))
                })
                .collect(),
        ))
    }

    fn label(&self, id: &str) -> Option<&str> {
        self.0.get(id).map(|(l, _)| l.as_str())
    }
}

/// "Trade key", "Withdraw key", "Read-only key", from a permission list.
fn key_kind(perms: &[String]) -> &'static str {
    if perms.iter().any(|p| p == "withdraw") {
        "Withdraw key"
    } else if perms.iter().any(|p| p == "trade") {
        "Trade key"
    } else {
        "Read-only key"
    }
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// "wrong password" from "WRONG_PASSWORD" or "wrong_password".
fn words(code: &str) -> String {
    code.replace('_', " ").to_lowercase()
}

/// What a key edit changed, in words: "widened to withdraw", "IP allowlist changed", ...
fn edit_changes(d: &serde_json::Value) -> Vec<String> {
    let (b, a) = (&d["before"], &d["after"]);
    let (bp, ap) = (strings(&b["permissions"]), strings(&a["permissions"]));
    let mut out = Vec::new();
    let added: Vec<&String> = ap.iter().filter(|p| !bp.contains(p)).collect();
    let removed: Vec<&String> = bp.iter().filter(|p| !ap.contains(p)).collect();
    if let Some(top) = added.last() {
        out.push(format!("widened to {top}"));
    }
    if !removed.is_empty() {
        let list: Vec<&str> = removed.iter().map(|s| s.as_str()).collect();
        out.push(format!("no longer allowed to {}", list.join(" or ")));
    }
    if b["label"] != a["label"] {
        out.push(format!("renamed to '{}'", text(&a["label"])));
    }
    let (br, ar) = (&b["restrictions"], &a["restrictions"]);
    for (field, what) in [
        ("ip_allowlist", "IP allowlist"),
        ("symbols", "symbols"),
        ("expires_at", "expiry"),
        ("withdraw_limit_24h", "withdrawal limit"),
    ] {
        if br[field] != ar[field] {
            out.push(format!("{what} changed"));
        }
    }
    let (ba, aa) = (strings(&br["withdraw_addresses"]), strings(&ar["withdraw_addresses"]));
    let new_addresses: Vec<&String> = aa.iter().filter(|x| !ba.contains(x)).collect();
    if !new_addresses.is_empty() {
        let list: Vec<&str> = new_addresses.iter().map(|s| s.as_str()).collect();
        out.push(format!("withdrawal address {} added", list.join(", ")));
    }
    if ba.iter().any(|x| !aa.contains(x)) {
        out.push("a withdrawal address removed".into());
    }
    match (b["status"].as_str(), a["status"].as_str()) {
        (Some("active"), Some("disabled")) => out.push("disabled".into()),
        (Some(x), Some("active")) if x != "active" => out.push("enabled again".into()),
        _ => {}
    }
    out
}

/// One record as a sentence: "Trade key 'bot' widened to withdraw from 127.0.0.1".
fn sentence(r: &AuditView, keys: &KeyNames) -> String {
    let d = &r.details;
    let key_named = || {
        let label = keys.label(&r.target).map(str::to_owned).or_else(|| d["label"].as_str().map(str::to_owned));
        match label {
            Some(l) => format!("'{l}'"),
            None => {
                let prefix: String = r.target.chars().take(12).collect();
                format!("{prefix}…")
            }
        }
    };
    let by_operator = r.actor.starts_with("operator:");
    let mut s = match r.action.as_str() {
        "key.create" => {
            let kind = key_kind(&strings(&d["permissions"]));
            let ty = d["type"].as_str().map(|t| format!(" ({})", t.to_uppercase())).unwrap_or_default();
            format!("{kind} {}{ty} created", key_named())
        }
        "key.edit" => {
            let kind = key_kind(&strings(&d["before"]["permissions"]));
            let label = d["before"]["label"].as_str().map_or_else(key_named, |l| format!("'{l}'"));
            let changes = edit_changes(d);
            if changes.is_empty() {
                format!("{kind} {label} saved without changes")
            } else {
                format!("{kind} {label} {}", changes.join(", "))
            }
        }
        "key.revoke" => format!("Key {} revoked", key_named()),
        "key.suspend" => {
            let why = d["reason"].as_str().map(|w| format!(" ({})", words(w))).unwrap_or_default();
            format!("Key {} suspended{why}", key_named())
        }
        "auth.login" if d["two_factor_pending"] == true => {
            "Password accepted at login; the 2FA code was asked next".into()
        }
        "auth.login" => "Logged in".into(),
        "auth.login_failed" => match d["reason"].as_str() {
            Some("password") => "Login refused: wrong account name or password".into(),
            Some("throttled") => "Login refused: too many attempts".into(),
            Some("password_change") => "Password change refused: the current password was wrong".into(),
            Some(other) => format!("Login refused ({})", words(other)),
            None => "Login refused".into(),
        },
        "auth.second_factor" => match d["method"].as_str() {
            Some("recovery") | Some("recovery_code") => "Login finished with a recovery code".into(),
            _ => "Login finished with a 2FA code".into(),
        },
        "auth.step_up" => "Changes unlocked for 5 minutes with a 2FA code".into(),
        "auth.logout" => "Logged out".into(),
        "auth.sessions_ended" => "Every session of the account was ended".into(),
        "auth.recovery_code_used" => "A recovery code was used".into(),
        "account.create" => "Account created by the operator".into(),
        "account.sign_up" => "Account signed up".into(),
        "invite.redeem" => "Invite code used to create the account".into(),
        "account.password" if d["first"] == true => "Password set".into(),
        "account.password" => "Password changed; every other session ended".into(),
        "totp.enroll" => "2FA setup started".into(),
        "totp.confirm" => "2FA turned on".into(),
        "totp.disable" => "2FA turned off".into(),
        "totp.reset" => "2FA reset by the operator".into(),
        "totp.recovery_codes_regenerated" => "New recovery codes made (the old ones stopped working)".into(),
        "totp.failed" => {
            let purpose = d["purpose"].as_str().map(|p| format!(" ({})", words(p))).unwrap_or_default();
            if d["reason"] == "throttled" {
                format!("2FA code refused: too many attempts{purpose}")
            } else {
                format!("Wrong 2FA code{purpose}")
            }
        }
        "api.denied" => {
            let n = d["count"].as_u64().unwrap_or(1);
            let reason = d["reason"].as_str().map(words).unwrap_or_else(|| "refused".into());
            let with = if r.target == "unknown-key" {
                "with an unknown key".to_owned()
            } else {
                format!("with key {}", key_named())
            };
            format!("{n} API request{} {with} refused: {reason}", if n == 1 { "" } else { "s" })
        }
        "api.withdraw" => format!(
            "Withdrawal of {} {} to {} with key {}",
            text(&d["amount"]),
            text(&d["asset"]),
            text(&d["address"]),
            key_named()
        ),
        "app.consent" if d["narrowed"] == true => format!("You allowed app {}, narrowed", text(&d["app"])),
        "app.consent" => format!("You allowed app {}", text(&d["app"])),
        "app.consent_refused" => format!("You refused app {}", text(&d["app"])),
        "app.token" => format!(
            "App {} exchanged its code for {} key {}",
            text(&d["app_name"]),
            key_kind(&strings(&d["permissions"])).to_lowercase(),
            key_named()
        ),
        "app.code_reuse" => "An app's code was used a second time; the key it issued is revoked".to_owned(),
        "app.disconnect" => format!("App {} disconnected ({} keys revoked)", r.target, text(&d["keys_revoked"])),
        "app.register" => format!("App {} registered", text(&d["name"])),
        "console.faucet" => format!("Sandbox faucet deposited {} {}", text(&d["amount"]), text(&d["asset"])),
        "exchange.deposit" => format!("Deposit of {} {} credited", text(&d["amount"]), text(&d["asset"])),
        other => other.to_owned(),
    };
    if by_operator && !s.contains("operator") {
        s.push_str(" by the operator");
    }
    if let Some(src) = &r.source {
        s.push_str(" from ");
        s.push_str(src);
    }
    s
}

/// One audit line for display.
#[derive(Debug, Clone)]
struct EventRow {
    seq: i64,
    at: String,
    at_iso: String,
    sentence: String,
    action: String,
    actor: String,
    target: String,
    source: String,
    details: String,
}

impl EventRow {
    fn new(r: &AuditView, keys: &KeyNames) -> Self {
        Self {
            seq: r.seq,
            at: when(Some(UnixMillis(r.at))),
            at_iso: iso(Some(UnixMillis(r.at))),
            sentence: sentence(r, keys),
            action: r.action.clone(),
            actor: r.actor.clone(),
            target: r.target.clone(),
            source: r.source.clone().unwrap_or_default(),
            details: serde_json::to_string_pretty(&r.details).unwrap_or_default(),
        }
    }
}

/// A choice in a filter menu.
struct Choice {
    value: String,
    text: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    rows: Vec<EventRow>,
    types: Vec<Choice>,
    keys: Vec<Choice>,
    from: String,
    to: String,
    /// The filter's query string (no cursor), for the download and paging links.
    query: String,
    /// The cursor of the next (older) page, when there may be one.
    older: Option<i64>,
    /// This is not the newest page.
    paged: bool,
    filtered: bool,
    error: Option<String>,
}

pub(super) async fn audit_page(State(c): State<Console>, ctx: Ctx, Query(q): Query<AuditFilter>) -> Response {
    let v = match viewer_or_login(&ctx, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let nav = Some(Nav::of(&v, c.now_ms()));
    let names = match KeyNames::load(&c, &v).await {
        Ok(k) => k,
        Err(e) => return error_page(&e, nav),
    };
    let (filter, error) = match q.checked() {
        Ok(f) => (f, None),
        Err(e) => (Filter::default(), Some(e)),
    };
    let (records, older) = match matching(&c, &v, &filter, q.cursor(), PAGE_ROWS, PAGE_SCAN).await {
        Ok(x) => x,
        Err(e) => return error_page(&e, nav),
    };
    let kind = q.r#type.clone().unwrap_or_default();
    let types = EVENT_TYPES
        .iter()
        .map(|(value, text, _)| Choice { value: (*value).into(), text: (*text).into(), selected: kind == *value })
        .collect();
    let chosen_key = q.key.clone().unwrap_or_default();
    let mut key_list: Vec<(&String, &(String, Vec<String>))> = names.0.iter().collect();
    key_list.sort_by(|a, b| a.1.0.to_lowercase().cmp(&b.1.0.to_lowercase()).then(a.0.cmp(b.0)));
    let keys = key_list
        .iter()
        .map(|(id, (label, _))| {
            let prefix: String = id.chars().take(12).collect();
            Choice { value: (*id).clone(), text: format!("{label} ({prefix}…)"), selected: **id == chosen_key }
        })
        .collect();
    let page = AuditPage {
        nav,
        rows: records.iter().map(|r| EventRow::new(r, &names)).collect(),
        types,
        keys,
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        query: q.query(),
        older,
        paged: q.before.is_some(),
        filtered: filter.actions.is_some()
            || filter.key.is_some()
            || filter.from_ms.is_some()
            || filter.until_ms.is_some(),
        error: error.as_ref().map(ConsoleError::message),
    };
    let status = error.as_ref().map_or(StatusCode::OK, ConsoleError::status);
    render(status, &page, &[])
}

/// One CSV cell (quoted when needed; formulas defused), as the wallet's downloads write them.
fn csv_cell(s: &str) -> String {
    super::wallet::cell(s)
}

/// `GET /console/audit.csv`: every record the filter matches (the
/// newest [`EXPORT_ROWS`]), newest first, with its sentence and ISO 8601 UTC time.
pub(super) async fn audit_csv(State(c): State<Console>, ctx: Ctx, Query(q): Query<AuditFilter>) -> Response {
    audit_export(&c, &ctx, &q, "csv").await
}

/// `GET /console/audit.jsonl`: as [`audit_csv`], one JSON object a line.
pub(super) async fn audit_jsonl(State(c): State<Console>, ctx: Ctx, Query(q): Query<AuditFilter>) -> Response {
    audit_export(&c, &ctx, &q, "jsonl").await
}

async fn audit_export(c: &Console, ctx: &Ctx, q: &AuditFilter, format: &str) -> Response {
    let v = match ctx.viewer(c).await {
        Ok(v) => v,
        Err(e) => return error_page(&e, None),
    };
    let nav = || Some(Nav::of(&v, c.now_ms()));
    let filter = match q.checked() {
        Ok(f) => f,
        Err(e) => return error_page(&e, nav()),
    };
    let names = match KeyNames::load(c, &v).await {
        Ok(k) => k,
        Err(e) => return error_page(&e, nav()),
    };
    let (records, _) = match matching(c, &v, &filter, q.cursor(), EXPORT_ROWS, usize::MAX).await {
        Ok(x) => x,
        Err(e) => return error_page(&e, nav()),
    };
    let mut body = String::new();
    if format == "csv" {
        body.push_str("seq,time,event,summary,actor,target,source,details\r\n");
        for r in &records {
            let cells = [
                r.seq.to_string(),
                iso(Some(UnixMillis(r.at))),
                r.action.clone(),
                sentence(r, &names),
                r.actor.clone(),
                r.target.clone(),
                r.source.clone().unwrap_or_default(),
                r.details.to_string(),
            ];
            body.push_str(&cells.iter().map(|x| csv_cell(x)).collect::<Vec<_>>().join(","));
            body.push_str("\r\n");
        }
    } else {
        for r in &records {
            let line = serde_json::json!({
                "seq": r.seq,
                "time": iso(Some(UnixMillis(r.at))),
                "at": r.at,
                "event": r.action,
                "summary": sentence(r, &names),
                "actor": r.actor,
                "target": r.target,
                "source": r.source,
                "details": r.details,
                "hash": r.hash,
            });
            body.push_str(&line.to_string());
            body.push('\n');
        }
    }
    let (mime, name) = if format == "csv" {
        ("text/csv; charset=utf-8", "attachment; filename=\"keygate-activity.csv\"")
    } else {
        ("application/x-ndjson; charset=utf-8", "attachment; filename=\"keygate-activity.jsonl\"")
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(mime)),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static(name)),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(action: &str, target: &str, source: Option<&str>, details: serde_json::Value) -> AuditView {
        serde_json::from_value(serde_json::json!({
            "seq": 1, "at": 0, "actor": "owner:alice", "action": action, "target": target,
            "source": source, "details": details, "hash": ""
        }))
        .unwrap()
    }

    fn names() -> KeyNames {
        KeyNames(HashMap::from([("kg_bot".to_owned(), ("bot".to_owned(), vec!["read".to_owned()]))]))
    }

    #[test]
    fn a_widening_edit_reads_as_a_sentence() {
        let r = view(
            "key.edit",
            "kg_bot",
            Some("127.0.0.1"),
            serde_json::json!({
                "widened": true,
                "before": { "label": "bot", "permissions": ["read", "trade"], "restrictions": { "ip_allowlist": ["127.0.0.1/32"], "withdraw_addresses": [] }, "status": "active" },
                "after": { "label": "bot", "permissions": ["read", "trade", "withdraw"], "restrictions": { "ip_allowlist": ["127.0.0.1/32"], "withdraw_addresses": ["bc1qx"] }, "status": "active" },
            }),
        );
        assert_eq!(
            sentence(&r, &names()),
            "Trade key 'bot' widened to withdraw, withdrawal address bc1qx added from 127.0.0.1"
        );
    }

    #[test]
    fn withdrawals_and_refusals_name_the_key() {
        let w = view(
            "api.withdraw",
            "kg_bot",
            Some("127.0.0.1"),
            serde_json::json!({ "asset": "BTC", "amount": "0.10000000", "address": "bc1qx" }),
        );
        assert_eq!(sentence(&w, &names()), "Withdrawal of 0.10000000 BTC to bc1qx with key 'bot' from 127.0.0.1");
        let d = view(
            "api.denied",
            "kg_bot",
            Some("198.51.100.7"),
            serde_json::json!({ "reason": "IP_NOT_ALLOWED", "count": 3 }),
        );
        assert_eq!(sentence(&d, &names()), "3 API requests with key 'bot' refused: ip not allowed from 198.51.100.7");
    }

    #[test]
    fn the_filter_checks_its_dates_and_types() {
        let f =
            AuditFilter { from: Some("2026-01-02".into()), to: Some("2026-01-02".into()), ..AuditFilter::default() };
        let f = f.checked().unwrap();
        assert_eq!(f.from_ms, Some(1_767_312_000_000));
        assert_eq!(f.until_ms, Some(1_767_312_000_000 + DAY_MS));
        assert!(AuditFilter { from: Some("yesterday".into()), ..AuditFilter::default() }.checked().is_err());
        // A backwards range is said, not answered with an empty page.
        let backwards =
            AuditFilter { from: Some("2026-01-03".into()), to: Some("2026-01-02".into()), ..AuditFilter::default() };
        let e = backwards.checked().unwrap_err();
        assert!(e.message().contains("runs backwards"), "{}", e.message());
        assert!(AuditFilter { r#type: Some("nope".into()), ..AuditFilter::default() }.checked().is_err());
        let q = AuditFilter { r#type: Some("keys".into()), key: Some("kg_a b".into()), ..AuditFilter::default() };
        assert_eq!(q.query(), "type=keys&key=kg_a%20b");
    }
}
