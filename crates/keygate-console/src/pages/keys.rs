//! The API keys: the list with the create form, the edit page (and removing one withdrawal
//! address), revoking one key, and revoking them all.

use super::layout::{
    CodeForm, Nav, NoticeQuery, error_page, form_viewer, hold_rows, notice_url, render, see_other, viewer_or_login,
};
use super::two_factor::maybe_step_up;
use crate::forms::{self, KeyForm};
use crate::session::{Ctx, Viewer};
use crate::view::{HoldRow, KeyRow, when};
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use keygate_auth::KeyStatus;
use keygate_service::{CreatedOnce, KeyEdit, NewKey, NewKeyMaterial};
use serde::{Deserialize, Serialize};

/// What the create form shows (kept on errors so nothing typed is lost, and through a login
/// when the session ended before the form was sent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
    pub confirm_wide_ip: bool,
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
            confirm_wide_ip: f.confirm_wide_ip(),
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    nav: Option<Nav>,
    csrf: String,
    /// Live (active or disabled) keys matching the search, most recently used first.
    keys: Vec<KeyRow>,
    /// Revoked keys matching the search (behind "Show revoked (N)").
    revoked: Vec<KeyRow>,
    /// The label search (`?q=`), empty for all.
    search: String,
    /// Every running withdrawal hold of the account.
    holds: Vec<HoldRow>,
    /// Wrong login codes of the last 24 hours, as a sentence for the owner (issue #18).
    code_warning: Option<String>,
    /// A re-confirmation of trade and withdraw keys due after a password change (issue #17):
    /// its deadline as UTC text and ISO 8601.
    reconfirm: Option<(String, String)>,
    /// The key policies that apply, one line each, for the owner to read.
    policy_lines: Vec<String>,
    /// The account's own tightenings, as the form shows them (empty: the deployment's).
    own_policy: [(&'static str, &'static str, String, String); 5],
    form: FormValues,
    error: Option<String>,
    needs_code: bool,
    /// What the POST that redirected here did (revoked, revoked all, already created).
    notice: Option<String>,
    /// The create form's one-time token: a second POST of the same form creates nothing.
    form_token: String,
    /// The time now in UTC, beside the expiry field (which is read as UTC).
    now_utc: String,
}

/// A fresh one-time token for a create form: 256 random bits, hex.
fn new_form_token() -> String {
    let mut raw = [0u8; 32];
    match getrandom::getrandom(&mut raw) {
        Ok(()) => hex::encode(raw),
        // Without randomness the form carries no token (and posts like a client without one).
        Err(_) => String::new(),
    }
}

/// The sentence for a notice on the keys page, naming the key (the viewer's own only). A notice
/// is shown only while it is still true, so a made-up link cannot make the page claim what did
/// not happen: "revoked" only for a revoked key, "all revoked" only while no key is live (and
/// without a count, which the link could invent), "already created" only for a key created in
/// the last ten minutes.
async fn keys_notice(c: &Console, v: &Viewer, q: &NoticeQuery) -> Option<String> {
    let key = match &q.key {
        Some(id) => c.service().key(&v.actor, id).await.ok(),
        None => None,
    };
    let named = |k: &keygate_service::KeyView| {
        let prefix: String = k.api_key.chars().take(12).collect();
        format!("“{}” ({prefix}…)", k.label)
    };
    let now = c.service().now_ms().0;
    match (q.notice.as_deref()?, key) {
        ("revoked", Some(k)) if k.status == keygate_auth::KeyStatus::Revoked => Some(format!(
            "Key {} is revoked: the next request signed with it is refused (-2015). Revoking cannot be undone.",
            named(&k)
        )),
        ("revoked-all", _) => {
            let keys = c.service().list_keys(&v.actor, None).await.ok()?;
            let live = keys.iter().any(|k| k.status != keygate_auth::KeyStatus::Revoked);
            (!live && q.count().is_some()).then(|| {
                "None of your keys is live any more: requests signed with any of them are refused from now on."
                    .to_owned()
            })
        }
        ("policy", _) => Some("Your key policies are saved: see them under your keys.".to_owned()),
        ("reconfirmed", _) => {
            let p = c.service().key_policy(&v.actor, &v.info.account).await.ok()?;
            p.reconfirm.is_none().then(|| {
                "Your trade and withdraw keys are re-confirmed: they keep working after your password change."
                    .to_owned()
            })
        }
        ("already-created", Some(k)) if now.saturating_sub(k.created_at.0) <= 600_000 => Some(format!(
            "This form was already sent, and it created key {} then. Nothing new was created. \
             An HMAC key's secret was shown only that once: if you did not save it, revoke the key and create another.",
            named(&k)
        )),
        _ => None,
    }
}

/// The key policies that apply, as sentences.
fn policy_lines(p: &keygate_service::policy::KeyPolicy) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(d) = p.unused_days {
        out.push(format!("A key not used for {d} days is disabled; you are told 7 days and 1 day before."));
    }
    if let Some(d) = p.unrestricted_idle_days {
        out.push(format!("A key that can trade or withdraw and has no IP allowlist is disabled after {d} idle days."));
    }
    if let Some(d) = p.withdraw_max_days {
        out.push(format!("A key that can withdraw expires within {d} days."));
    }
    out.push(format!("At most {} keys.", p.max_keys));
    out.push(if p.reconfirm_grace_hours == 0 {
        "After a password change, trade and withdraw keys are suspended until you re-enable them.".to_owned()
    } else {
        format!(
            "After a password change, re-confirm your trade and withdraw keys within {} hour{}, or they are suspended.",
            p.reconfirm_grace_hours,
            if p.reconfirm_grace_hours == 1 { "" } else { "s" }
        )
    });
    out
}

/// The policy form's fields: name, label, the account's own value (or empty) and the
/// deployment's, for the hint.
fn own_policy_fields(p: &keygate_service::policy::KeyPolicyView) -> [(&'static str, &'static str, String, String); 5] {
    let v = |x: Option<u32>| x.map(|n| n.to_string()).unwrap_or_default();
    let d = |x: Option<u32>, unit: &str| x.map_or_else(|| "off".to_owned(), |n| format!("{n} {unit}"));
    let dep = &p.deployment;
    [
        ("unused_days", "Disable keys unused for (days)", v(p.own.unused_days), d(dep.unused_days, "days")),
        (
            "unrestricted_idle_days",
            "… trade or withdraw keys without an IP allowlist (days)",
            v(p.own.unrestricted_idle_days),
            d(dep.unrestricted_idle_days, "days"),
        ),
        ("max_keys", "At most this many keys", v(p.own.max_keys), dep.max_keys.to_string()),
        (
            "withdraw_max_days",
            "Withdraw keys expire within (days)",
            v(p.own.withdraw_max_days),
            d(dep.withdraw_max_days, "days"),
        ),
        (
            "reconfirm_grace_hours",
            "Re-confirm keys after a password change within (hours)",
            v(p.own.reconfirm_grace_hours),
            d(Some(dep.reconfirm_grace_hours), "hours"),
        ),
    ]
}

/// The key-policy form: each field a number or empty (the deployment's).
#[derive(Debug, Deserialize)]
pub(super) struct PolicyForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    unused_days: String,
    #[serde(default)]
    unrestricted_idle_days: String,
    #[serde(default)]
    max_keys: String,
    #[serde(default)]
    withdraw_max_days: String,
    #[serde(default)]
    reconfirm_grace_hours: String,
}

/// The owner tightens the account's key policies (issue #17); relaxing an earlier tightening
/// needs a 2FA code (or an open step-up).
pub(super) async fn set_policy(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<PolicyForm>) -> Response {
    let mut v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let number = |label: &str, text: &str| -> Result<Option<u32>, ConsoleError> {
        let t = text.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u32>()
            .map(Some)
            .map_err(|_| ConsoleError::BadRequest(format!("{label}: write a whole number, or leave it empty")))
    };
    let own = (|| {
        Ok::<_, ConsoleError>(keygate_service::policy::AccountKeyPolicy {
            unused_days: number("Unused keys", &f.unused_days)?,
            unrestricted_idle_days: number("Keys without an IP allowlist", &f.unrestricted_idle_days)?,
            max_keys: number("Most keys", &f.max_keys)?,
            withdraw_max_days: number("Withdraw key expiry", &f.withdraw_max_days)?,
            reconfirm_grace_hours: number("Re-confirmation", &f.reconfirm_grace_hours)?,
        })
    })();
    let own = match own {
        Ok(o) => o,
        Err(e) => return error_page(&e, Some(Nav::of(&v, c.now_ms()))),
    };
    let code = Some(f.code.as_str()).filter(|c| !c.trim().is_empty());
    let cookie = match maybe_step_up(&c, &ctx, &mut v, code).await {
        Ok(c) => c,
        Err(e) => return error_page(&e, Some(Nav::of(&v, c.now_ms()))),
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    let account = v.info.account.clone();
    match c.service().set_key_policy(&v.actor, &account, own).await {
        Ok(_) => see_other("/console/keys?notice=policy#key-policy", &cookies),
        Err(e) => error_page(&e.into(), Some(Nav::of(&v, c.now_ms()))),
    }
}

/// The owner re-confirms every trade and withdraw key after a password change (issue #17), with
/// a 2FA code typed in the same form unless a step-up is open.
pub(super) async fn reconfirm(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let mut v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let code = Some(f.code.as_str()).filter(|c| !c.trim().is_empty());
    let cookie = match maybe_step_up(&c, &ctx, &mut v, code).await {
        Ok(c) => c,
        Err(e) => return error_page(&e, Some(Nav::of(&v, c.now_ms()))),
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    let account = v.info.account.clone();
    match c.service().reconfirm_keys(&v.actor, &account).await {
        Ok(_) => see_other("/console/keys?notice=reconfirmed", &cookies),
        Err(e) => error_page(&e.into(), Some(Nav::of(&v, c.now_ms()))),
    }
}

/// What the keys page shows besides the list.
struct KeysExtras {
    notice: Option<String>,
    form_token: String,
    /// The label search, empty for all keys.
    search: String,
}

/// `?q=`: the key list's search by label (a plain GET form, so it works without JavaScript).
#[derive(Debug, Default, Deserialize)]
pub(super) struct SearchQuery {
    #[serde(default)]
    q: Option<String>,
}

async fn keys_view(
    c: &Console,
    v: &Viewer,
    status: StatusCode,
    form: FormValues,
    error: Option<&ConsoleError>,
    cookies: &[HeaderValue],
    extras: KeysExtras,
) -> Response {
    let keys = match c.service().list_keys(&v.actor, None).await {
        Ok(k) => k,
        Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    };
    let holds = match hold_rows(c, v).await {
        Ok(h) => h,
        Err(e) => return error_page(&e, Some(Nav::of(v, c.now_ms()))),
    };
    let code_warning = match c.service().failed_login_codes(&v.actor, 24 * 60 * 60 * 1000).await {
        Ok(f) => f.map(|f| {
            let from = f.last_source.map(|s| format!(" from {s}")).unwrap_or_default();
            format!(
                "{} wrong 2FA code{} {} typed in the last 24 hours to finish logins to your account, the last at {}{from}. \
                 Whoever typed {} had your password: if that was not you, change your password now.",
                f.count,
                if f.count == 1 { "" } else { "s" },
                if f.count == 1 { "was" } else { "were" },
                when(Some(f.last_at)),
                if f.count == 1 { "it" } else { "them" },
            )
        }),
        Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    };
    let policy = match c.service().key_policy(&v.actor, &v.info.account).await {
        Ok(p) => p,
        Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
    };
    let reconfirm = policy.reconfirm.as_ref().map(|r| (when(Some(r.due)), crate::view::iso(Some(r.due))));
    let policy_lines = policy_lines(&policy.effective);
    let own_policy = own_policy_fields(&policy);
    let now = c.now_ms();
    let needle = extras.search.trim().to_lowercase();
    let mut rows: Vec<KeyRow> = keys
        .iter()
        .map(|k| KeyRow::new(k, now))
        .filter(|r| needle.is_empty() || r.label.to_lowercase().contains(&needle))
        .collect();
    for r in &mut rows {
        r.flag_without_2fa(v.info.two_factor_enabled);
    }
    crate::view::sort_keys(&mut rows);
    let (revoked, live): (Vec<KeyRow>, Vec<KeyRow>) = rows.into_iter().partition(|r| r.revoked);
    let page = KeysPage {
        nav: Some(Nav::of(v, now)),
        csrf: v.info.csrf_token.clone(),
        keys: live,
        revoked,
        search: extras.search.trim().to_owned(),
        holds,
        code_warning,
        reconfirm,
        policy_lines,
        own_policy,
        form,
        error: error.map(ConsoleError::message),
        needs_code: error.is_some_and(ConsoleError::needs_step_up),
        notice: extras.notice,
        form_token: extras.form_token,
        now_utc: when(Some(now)),
    };
    render(status, &page, cookies)
}

pub(super) async fn keys_page(
    State(c): State<Console>,
    ctx: Ctx,
    Query(q): Query<NoticeQuery>,
    Query(search): Query<SearchQuery>,
) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => {
            let extras = KeysExtras {
                notice: keys_notice(&c, &v, &q).await,
                form_token: new_form_token(),
                search: search.q.unwrap_or_default().chars().take(64).collect(),
            };
            let form = FormValues { kind: "hmac".into(), ..FormValues::default() };
            keys_view(&c, &v, StatusCode::OK, form, None, &[], extras).await
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
        confirm_wide_ip: f.confirm_wide_ip(),
    })
}

#[derive(Template)]
#[template(path = "key_created.html")]
struct KeyCreatedPage {
    nav: Option<Nav>,
    key: KeyRow,
    secret: String,
}

/// A key form kept through a login: the session ended before the form was sent, so the login
/// page carries it (a hidden field) and, once logged in, the form is shown again with it, not
/// sent. The 2FA code is not kept (it would be stale), nor anything secret: a key form holds
/// none (a public key is public).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Draft {
    /// The key an edit form was about; `None` for the create form.
    key: Option<String>,
    form: FormValues,
}

/// Drafts larger than this are not kept (a form's fields are far smaller).
const MAX_DRAFT: usize = 32 * 1024;

impl Draft {
    fn encode(&self) -> String {
        let s = serde_json::to_string(self).unwrap_or_default();
        if s.len() > MAX_DRAFT { String::new() } else { s }
    }

    fn decode(s: &str) -> Option<Self> {
        if s.len() > MAX_DRAFT {
            return None;
        }
        let d: Self = serde_json::from_str(s).ok()?;
        // Only a key id can come back as a path.
        d.key.as_deref().is_none_or(|k| k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then_some(d)
    }
}

/// The viewer of a key form; when the session has ended, the login page keeping the form
/// instead of a redirect that would lose it (issue #18).
async fn key_form_viewer(c: &Console, ctx: &Ctx, f: &KeyForm, key: Option<&str>) -> Result<Viewer, Response> {
    let v = match ctx.viewer(c).await {
        Ok(v) => v,
        Err(ConsoleError::NotLoggedIn) => {
            let draft = Draft { key: key.map(str::to_owned), form: FormValues::from(f) };
            return Err(super::auth::login_keeping(c, ctx, draft.encode()).await);
        }
        Err(e) => return Err(error_page(&e, None)),
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return Err(error_page(&e, Some(Nav::of(&v, c.now_ms()))));
    }
    Ok(v)
}

/// What the form kept through a login says when it comes back.
fn restored() -> ConsoleError {
    ConsoleError::BadRequest(
        "your session had ended, so this form was not sent and nothing changed. What you typed is back in the form: \
         check it, type the 2FA code if the change needs one, and send it again"
            .into(),
    )
}

/// After a login that carried a kept form: that form again, filled in, not sent.
pub(super) async fn resume_draft(c: &Console, v: &Viewer, encoded: &str, cookies: &[HeaderValue]) -> Response {
    let Some(d) = Draft::decode(encoded) else {
        return see_other("/console/keys", cookies);
    };
    match d.key {
        None => {
            let extras = KeysExtras { notice: None, form_token: new_form_token(), search: String::new() };
            keys_view(c, v, StatusCode::OK, d.form, Some(&restored()), cookies, extras).await
        }
        Some(id) => edit_view(c, v, &id, EditState::Restored { form: &d.form }, cookies).await,
    }
}

pub(super) async fn create_key(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<KeyForm>) -> Response {
    let mut v = match key_form_viewer(&c, &ctx, &f, None).await {
        Ok(v) => v,
        Err(refused) => {
            // A browser re-sending a form that already created its key (a refresh of the secret
            // page) carries the session's old CSRF token when the create stepped up: say what
            // happened instead of "expired". Only a read, of the viewer's own account.
            if let (Ok(v), Some(token)) = (ctx.viewer(&c).await, f.form_token.as_deref().filter(|t| !t.is_empty()))
                && let Ok(Some(key)) = c.service().key_created_by_form(&v.actor, token).await
            {
                return see_other(&notice_url("/console/keys", "already-created", Some(&key.api_key)), &[]);
            }
            return refused;
        }
    };
    let values = FormValues::from(&f);
    // A refused form keeps its token: nothing was created with it, so the next try may use it.
    let token = f.form_token.clone().filter(|t| !t.is_empty());
    let extras =
        || KeysExtras { notice: None, form_token: token.clone().unwrap_or_else(new_form_token), search: String::new() };
    let new = match new_key_from_form(&v.info.account, &f) {
        Ok(n) => n,
        Err(e) => return keys_view(&c, &v, e.status(), values, Some(&e), &[], extras()).await,
    };
    let cookie = match maybe_step_up(&c, &ctx, &mut v, f.code.as_deref()).await {
        Ok(c) => c,
        Err(e) => return keys_view(&c, &v, e.status(), values, Some(&e), &[], extras()).await,
    };
    let cookies: Vec<HeaderValue> = cookie.into_iter().collect();
    let outcome = match &token {
        Some(t) => c.service().create_key_once(&v.actor, new, t).await,
        None => c.service().create_key(&v.actor, new).await.map(CreatedOnce::Created),
    };
    match outcome {
        Ok(CreatedOnce::Created(created)) => {
            let row = KeyRow::new(&created.key, c.now_ms());
            match &created.secret {
                // The secret is the body of this answer, never in a URL: the one answer that is
                // not a redirect, and the form's one-time token keeps a refresh from making a
                // second key.
                Some(secret) => render(
                    StatusCode::OK,
                    &KeyCreatedPage {
                        nav: Some(Nav::of(&v, c.now_ms())),
                        key: row,
                        secret: secret.expose().to_owned(),
                    },
                    &cookies,
                ),
                None => see_other(&notice_url(&format!("/console/keys/{}", row.id), "created", None), &cookies),
            }
        }
        Ok(CreatedOnce::AlreadyCreated(key)) => {
            see_other(&notice_url("/console/keys", "already-created", Some(&key.api_key)), &cookies)
        }
        Err(e) => {
            let e = ConsoleError::from(e);
            keys_view(&c, &v, e.status(), values, Some(&e), &cookies, extras()).await
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
    /// The page is the redirect after creating this (Ed25519 or RSA) key.
    created: bool,
    error: Option<String>,
    needs_code: bool,
    /// The time now in UTC, beside the expiry field (which is read as UTC).
    now_utc: String,
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
        confirm_wide_ip: k.wide_confirmed,
    }
}

/// What the edit page shows besides the key: the stored values (after a save, with a notice), or
/// the owner's refused form with the reason.
enum EditState<'a> {
    Stored {
        saved: bool,
        created: bool,
    },
    Refused {
        form: &'a FormValues,
        error: &'a ConsoleError,
    },
    /// The form kept through a login, shown again unsent.
    Restored {
        form: &'a FormValues,
    },
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
            let restored = restored();
            let (status, form, error, saved, created) = match state {
                EditState::Stored { saved, created } => (StatusCode::OK, values_of(&row), None, saved, created),
                EditState::Refused { form, error } => (error.status(), form.clone(), Some(error), false, false),
                EditState::Restored { form } => (StatusCode::OK, form.clone(), Some(&restored), false, false),
            };
            let page = KeyEditPage {
                nav,
                csrf: v.info.csrf_token.clone(),
                key: row,
                holds,
                form,
                saved,
                created,
                error: error.map(ConsoleError::message),
                needs_code: error.is_some_and(ConsoleError::needs_step_up),
                now_utc: when(Some(c.now_ms())),
            };
            render(status, &page, cookies)
        }
        Err(e) => error_page(&e.into(), nav),
    }
}

/// `?saved=1`, set by the redirect after a successful edit, so the page can say the change took;
/// `?notice=created` after creating a key that has no secret to show.
#[derive(Debug, Deserialize)]
pub(super) struct SavedQuery {
    saved: Option<String>,
    notice: Option<String>,
}

pub(super) async fn edit_page(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    Query(q): Query<SavedQuery>,
) -> Response {
    let saved = q.saved.as_deref() == Some("1");
    let created = q.notice.as_deref() == Some("created");
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => edit_view(&c, &v, &id, EditState::Stored { saved, created }, &[]).await,
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
        confirm_wide_ip: f.confirm_wide_ip(),
    })
}

pub(super) async fn edit_key(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<KeyForm>,
) -> Response {
    let mut v = match key_form_viewer(&c, &ctx, &f, Some(&id)).await {
        Ok(v) => v,
        Err(r) => return r,
    };
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
pub(super) struct RemoveAddressForm {
    csrf: Option<String>,
    address: String,
}

/// `POST /console/keys/{id}/remove-address`: takes one address off the key's withdrawal list,
/// which ends its hold (issue #19). Narrowing a key needs no step-up, so the owner can undo a
/// change they did not make without a 2FA code.
pub(super) async fn remove_address(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<RemoveAddressForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let nav = || Some(Nav::of(&v, c.now_ms()));
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

pub(super) async fn revoke_page(State(c): State<Console>, ctx: Ctx, Path(id): Path<String>) -> Response {
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

pub(super) async fn revoke_key(
    State(c): State<Console>,
    ctx: Ctx,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    let v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match c.service().revoke_key(&v.actor, &id).await {
        Ok(k) => see_other(&notice_url("/console/keys", "revoked", Some(&k.api_key)), &[]),
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

pub(super) async fn revoke_all_page(State(c): State<Console>, ctx: Ctx) -> Response {
    match viewer_or_login(&ctx, &c).await {
        Ok(v) => render(
            StatusCode::OK,
            &RevokeAllPage { nav: Some(Nav::of(&v, c.now_ms())), csrf: v.info.csrf_token.clone(), error: None },
            &[],
        ),
        Err(r) => r,
    }
}

pub(super) async fn revoke_all(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<CodeForm>) -> Response {
    let mut v = match form_viewer(&ctx, &c, f.csrf.as_deref()).await {
        Ok(v) => v,
        Err(r) => return r,
    };
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
        Ok(n) => see_other(&format!("/console/keys?notice=revoked-all&n={n}"), &cookies),
        Err(e) => refuse(&v, e.into(), &cookies),
    }
}
