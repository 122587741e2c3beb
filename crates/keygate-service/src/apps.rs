//! Connected apps (issue #15): who may register an app, what an authorization request may ask,
//! what the owner's consent creates, and what the token endpoint issues: an API key bound to the
//! app, never a bearer token.
//!
//! * The operator registers apps (they may ask for `read` and `trade`, never `withdraw`), marks
//!   them verified, suspends or deletes them; suspending or deleting revokes every key the app
//!   holds through the ordinary revocation path, so every node refuses them at once.
//! * Owners the operator allows ([`Service::allow_app_developer`]) may register apps from the
//!   console; those start unverified.
//! * An authorization request whose client or redirect URI is wrong is refused without a
//!   redirect (RFC 6749 section 4.1.2.1); every other refusal goes back to the app.
//! * Consent is an owner's act: giving `trade` needs what creating a trade key needs (2FA on the
//!   account and a step-up). The owner may narrow; the code records what was granted.
//! * A code works once, for 60 s, for its client, redirect URI and PKCE verifier; a second use
//!   revokes the key the first one made.

use crate::keys::{check_key_rules, check_label};
use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult};
use keygate_auth::oauth::{self, ClientKind, ErrorCode, Grant, Narrowing, OAuthError};
use keygate_auth::{ApiKeyId, HmacSecret, KeyStatus, Permission, Permissions, PublicKey, Restrictions};
use keygate_proto::UnixMillis;
use keygate_store::{AppRecord, AppStatus, AuditDraft, CodeRecord, KeyMaterial, KeyRecord};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// An app to register.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewApp {
    /// Display name (2 to 64 printable characters).
    pub name: String,
    /// Home page (https).
    pub homepage: String,
    /// The publisher's domain.
    pub publisher_domain: String,
    /// Exact redirect URIs (https, or http to a loopback address).
    pub redirect_uris: Vec<String>,
    /// The most it may ask for, comma- or space-separated: `read` or `read,trade`.
    pub max_permissions: String,
    /// `confidential` (gets a client secret) or `public`.
    pub client_type: String,
    /// Optional logo URL (https).
    #[serde(default)]
    pub logo_url: Option<String>,
}

/// An app as operators and its registrant see it (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppView {
    /// The public client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Home page.
    pub homepage: String,
    /// The publisher's domain.
    pub publisher_domain: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The most it may ask for.
    pub max_permissions: Permissions,
    /// `confidential` or `public`.
    pub client_type: ClientKind,
    /// Set by the operator only.
    pub verified: bool,
    /// Optional logo URL.
    pub logo_url: Option<String>,
    /// `active`, `suspended` or `deleted`.
    pub status: AppStatus,
    /// Registration time, ms.
    pub created_at: UnixMillis,
    /// Who registered it.
    pub created_by: String,
}

impl From<&AppRecord> for AppView {
    fn from(a: &AppRecord) -> Self {
        Self {
            client_id: a.client_id.clone(),
            name: a.name.clone(),
            homepage: a.homepage.clone(),
            publisher_domain: a.publisher_domain.clone(),
            redirect_uris: a.redirect_uris.clone(),
            max_permissions: a.max_permissions,
            client_type: a.client_kind,
            verified: a.verified,
            logo_url: a.logo_url.clone(),
            status: a.status,
            created_at: a.created_at,
            created_by: a.created_by.clone(),
        }
    }
}

/// A newly registered app, with its client secret (confidential clients), shown this once.
#[derive(Debug, Serialize)]
pub struct RegisteredApp {
    /// The app.
    #[serde(flatten)]
    pub app: AppView,
    /// The client secret; stored only as its SHA-256.
    pub client_secret: Option<String>,
}

/// What suspending or deleting an app did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppKillSwitch {
    /// The app after the change.
    pub app: AppView,
    /// Keys revoked by it.
    pub keys_revoked: usize,
}

/// The parameters of `GET /oauth/authorize`, as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeParams {
    /// `code`.
    pub response_type: Option<String>,
    /// The app.
    pub client_id: Option<String>,
    /// Where to send the answer.
    pub redirect_uri: Option<String>,
    /// `read trade`.
    pub scope: Option<String>,
    /// RFC 9396 JSON.
    pub authorization_details: Option<String>,
    /// The app's CSRF value; required.
    pub state: Option<String>,
    /// PKCE S256 challenge.
    pub code_challenge: Option<String>,
    /// `S256`.
    pub code_challenge_method: Option<String>,
}

impl AuthorizeParams {
    /// Reads the parameters from decoded query pairs. A parameter sent twice is remembered as
    /// such and refused by [`Service::authorization_request`] (RFC 6749 section 3.1).
    #[must_use]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> (Self, Vec<String>) {
        let mut p = Self::default();
        let mut repeated = Vec::new();
        for (k, v) in pairs {
            let slot = match k {
                "response_type" => &mut p.response_type,
                "client_id" => &mut p.client_id,
                "redirect_uri" => &mut p.redirect_uri,
                "scope" => &mut p.scope,
                "authorization_details" => &mut p.authorization_details,
                "state" => &mut p.state,
                "code_challenge" => &mut p.code_challenge,
                "code_challenge_method" => &mut p.code_challenge_method,
                _ => continue,
            };
            if slot.is_some() {
                repeated.push(k.to_owned());
            }
            *slot = Some(v.to_owned());
        }
        (p, repeated)
    }
}

/// A valid authorization request, ready for the consent page.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    /// The app.
    pub app: AppView,
    /// The (registered) redirect URI.
    pub redirect_uri: String,
    /// The app's state.
    pub state: String,
    /// The PKCE challenge.
    pub code_challenge: String,
    /// What it asks for.
    pub requested: Grant,
}

/// Why an authorization request is refused, and where the refusal goes.
#[derive(Debug, Clone)]
pub enum AuthorizeRefusal {
    /// The client or redirect URI cannot be trusted: show an error page, never redirect.
    Page(OAuthError),
    /// Send the error back to the app at this URL (`error`, `error_description`, `state`).
    Redirect(String),
}

/// The owner's answer on the consent page.
#[derive(Debug, Clone)]
pub enum Consent {
    /// Refused.
    Deny,
    /// Allowed, as narrowed.
    Allow(Narrowing),
}

/// The parameters of `POST /oauth/token`.
#[derive(Default)]
pub struct TokenParams {
    /// `authorization_code`.
    pub grant_type: Option<String>,
    /// The code.
    pub code: Option<String>,
    /// The redirect URI of the authorization request.
    pub redirect_uri: Option<String>,
    /// The client id (public clients, or `client_secret_post`).
    pub client_id: Option<String>,
    /// `client_secret_post`.
    pub client_secret: Option<Zeroizing<String>>,
    /// From `Authorization: Basic`.
    pub basic: Option<(String, Zeroizing<String>)>,
    /// The PKCE verifier.
    pub code_verifier: Option<String>,
    /// The app's Ed25519 public key (PEM or base64 of the 32 bytes or SPKI); without it the key
    /// is HMAC and its secret is in the answer.
    pub public_key: Option<String>,
}

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParams")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<hidden>"))
            .field("basic", &self.basic.as_ref().map(|(id, _)| (id, "<hidden>")))
            .finish_non_exhaustive()
    }
}

/// The token answer: an API key bound to the app (`access_token` is its id, for RFC clients).
#[derive(Serialize)]
pub struct TokenAnswer {
    /// The API key id (`X-MBX-APIKEY`).
    pub access_token: String,
    /// [`oauth::TOKEN_TYPE`].
    pub token_type: &'static str,
    /// The API key id again, under the name Binance clients use.
    pub api_key: String,
    /// `hmac` or `ed25519`.
    pub key_type: &'static str,
    /// The HMAC secret, in this answer only; absent for Ed25519 keys.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
    /// Granted permissions, space-separated.
    pub scope: String,
    /// Granted details (RFC 9396 section 7).
    pub authorization_details: serde_json::Value,
    /// Seconds until the key expires, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<u64>,
}

impl std::fmt::Debug for TokenAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAnswer")
            .field("api_key", &self.api_key)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// One app with access to an owner's account, for the console's "Connected apps" page.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectedApp {
    /// The app (its current registration).
    pub app: AppView,
    /// Union of the permissions of its live keys.
    pub permissions: Permissions,
    /// Its live (not revoked) keys' ids.
    pub keys: Vec<String>,
    /// When its first live key was issued.
    pub created_at: UnixMillis,
    /// Last verified request with any of its keys.
    pub last_used_at: Option<UnixMillis>,
    /// From where.
    pub last_used_ip: Option<String>,
    /// Verified requests with its keys.
    pub use_count: u64,
}

fn invalid(msg: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(msg.into())
}

fn grant_err(d: impl Into<String>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidGrant, d)
}

/// `uri` with `pairs` appended to its query.
fn with_query(uri: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.to_string()
        }
        Err(_) => uri.to_owned(),
    }
}

fn check_app_fields(new: &NewApp) -> ServiceResult<(Permissions, ClientKind)> {
    let name = new.name.trim();
    if !(2..=64).contains(&name.chars().count()) || name.chars().any(char::is_control) {
        return Err(invalid("the app name must be 2 to 64 printable characters"));
    }
    let https = |what: &str, v: &str| -> ServiceResult<()> {
        let ok = url::Url::parse(v).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
        if ok { Ok(()) } else { Err(invalid(format!("the {what} must be an https URL, not {v:?}"))) }
    };
    https("homepage", &new.homepage)?;
    if let Some(logo) = &new.logo_url {
        https("logo URL", logo)?;
    }
    let d = new.publisher_domain.trim();
    let domain_ok = d.len() <= 253
        && d.contains('.')
        && d.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if !domain_ok {
        return Err(invalid(format!("publisher domain {d:?} is not a domain name like example.com")));
    }
    if new.redirect_uris.is_empty() || new.redirect_uris.len() > oauth::MAX_REDIRECT_URIS {
        return Err(invalid(format!("give 1 to {} redirect URIs", oauth::MAX_REDIRECT_URIS)));
    }
    for uri in &new.redirect_uris {
        oauth::validate_redirect_uri(uri).map_err(invalid)?;
    }
    let perms = Permissions::parse_list(&new.max_permissions.replace(' ', ",")).map_err(|e| invalid(e.0))?;
    if perms.contains(Permission::Withdraw) {
        return Err(invalid("an app may never ask for withdraw; its highest permission is trade"));
    }
    let kind = ClientKind::parse(new.client_type.trim()).map_err(invalid)?;
    Ok((perms, kind))
}

/// How long an authorization code's row is kept after it expired. Its reuse is refused either way;
/// within its lifetime (a minute) a reuse must still find the key the first use made, and a day
/// more keeps it for whoever looks into a failed connection.
pub const CODE_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;

impl Service {
    /// Deletes the authorization codes that expired more than [`CODE_RETENTION_MS`] ago (run
    /// once a minute by the server's housekeeping): one row is written per consent, and without
    /// this the table only grows. Returns how many were deleted.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_codes(&self) -> ServiceResult<u64> {
        let before = UnixMillis(self.now_ms().0.saturating_sub(CODE_RETENTION_MS));
        Ok(self.inner.store.purge_codes(before).await?)
    }

    fn app_audit(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        account: Option<keygate_auth::AccountId>,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target: target.into(),
            account_id: account,
            source: actor.source(),
            details,
        }
    }

    async fn app_record(&self, client_id: &str) -> ServiceResult<AppRecord> {
        self.inner.store.get_app(client_id).await?.ok_or_else(|| ServiceError::NotFound(format!("app {client_id}")))
    }

    fn operator_only(actor: &Actor, what: &str) -> ServiceResult<()> {
        match actor {
            Actor::Operator { .. } => Ok(()),
            _ => Err(ServiceError::Forbidden(format!("only the operator may {what}"))),
        }
    }

    /// Registers an app. The operator may always; an owner only when the operator allowed the
    /// account ([`Service::allow_app_developer`]). Apps start unverified. A confidential app's
    /// client secret is in the answer and nowhere else (the store keeps its SHA-256).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for owners not allowed and for the system;
    /// [`ServiceError::Invalid`] for bad fields (a redirect URI over http to a non-loopback host,
    /// `withdraw` asked for, ...).
    pub async fn register_app(&self, actor: &Actor, new: NewApp) -> ServiceResult<RegisteredApp> {
        let registered_by = match actor {
            Actor::Operator { .. } => None,
            Actor::Owner { account_id, .. } => {
                if !self.inner.store.is_app_developer(*account_id).await? {
                    return Err(ServiceError::Forbidden(
                        "this account may not register apps; ask the operator to allow it".into(),
                    ));
                }
                Some(*account_id)
            }
            Actor::System { .. } => return Err(ServiceError::Forbidden("the system registers no apps".into())),
        };
        let (max_permissions, client_kind) = check_app_fields(&new)?;
        let secret = match client_kind {
            ClientKind::Confidential => Some(oauth::generate_client_secret(&mut OsEntropy)?),
            ClientKind::Public => None,
        };
        let secret_sha256 = match &secret {
            Some(s) => {
                Some(oauth::hash_client_secret(s).ok_or_else(|| ServiceError::Internal("client secret".into()))?)
            }
            None => None,
        };
        let now = self.now_ms();
        let app = AppRecord {
            client_id: oauth::generate_client_id(&mut OsEntropy)?,
            name: new.name.trim().to_owned(),
            homepage: new.homepage.clone(),
            publisher_domain: new.publisher_domain.trim().to_ascii_lowercase(),
            redirect_uris: new.redirect_uris.clone(),
            max_permissions,
            client_kind,
            secret_sha256,
            verified: false,
            logo_url: new.logo_url.clone(),
            status: AppStatus::Active,
            registered_by_account: registered_by,
            created_at: now,
            created_by: actor.label(),
            updated_at: now,
        };
        let details = serde_json::json!({
            "name": app.name, "publisher_domain": app.publisher_domain, "redirect_uris": app.redirect_uris,
            "max_permissions": app.max_permissions, "client_type": app.client_kind.as_str(),
        });
        let audit = self.app_audit(actor, "app.register", &app.client_id, registered_by, details);
        self.inner.store.insert_app(&app, audit).await?;
        Ok(RegisteredApp { app: AppView::from(&app), client_secret: secret.map(|s| s.to_string()) })
    }

    /// Apps: every one for the operator (deleted ones with `all`), an owner's own registrations.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn list_apps(&self, actor: &Actor, all: bool) -> ServiceResult<Vec<AppView>> {
        let apps = self.inner.store.list_apps().await?;
        Ok(apps
            .iter()
            .filter(|a| all || a.status != AppStatus::Deleted)
            .filter(|a| match actor {
                Actor::Owner { account_id, .. } => a.registered_by_account == Some(*account_id),
                _ => true,
            })
            .map(AppView::from)
            .collect())
    }

    /// One app (operators: any; owners: their own registrations).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`].
    pub async fn app(&self, actor: &Actor, client_id: &str) -> ServiceResult<AppView> {
        let app = self.app_record(client_id).await?;
        if let Actor::Owner { account_id, .. } = actor
            && app.registered_by_account != Some(*account_id)
        {
            return Err(ServiceError::NotFound(format!("app {client_id}")));
        }
        Ok(AppView::from(&app))
    }

    /// Marks an app verified or not (operator only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::NotFound`].
    pub async fn set_app_verified(&self, actor: &Actor, client_id: &str, verified: bool) -> ServiceResult<AppView> {
        Self::operator_only(actor, "verify apps")?;
        let mut app = self.app_record(client_id).await?;
        app.verified = verified;
        app.updated_at = self.now_ms();
        let audit = self.app_audit(actor, "app.verify", client_id, None, serde_json::json!({ "verified": verified }));
        self.inner.store.update_app(&app, audit).await?;
        Ok(AppView::from(&app))
    }

    /// The kill switch: suspends (or deletes) an app and revokes every key it holds, on every
    /// account, through the ordinary revocation path (each with its `key.revoke` record), so
    /// every node refuses them on their next request. The app is marked first, so no new code
    /// or key is issued while its keys are being revoked. Operator only.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::NotFound`].
    pub async fn suspend_app(&self, actor: &Actor, client_id: &str, delete: bool) -> ServiceResult<AppKillSwitch> {
        Self::operator_only(actor, if delete { "delete apps" } else { "suspend apps" })?;
        let mut app = self.app_record(client_id).await?;
        let status = if delete { AppStatus::Deleted } else { AppStatus::Suspended };
        let action = if delete { "app.delete" } else { "app.suspend" };
        if app.status != status {
            app.status = status;
            app.updated_at = self.now_ms();
            let audit = self.app_audit(actor, action, client_id, None, serde_json::json!({ "name": app.name }));
            self.inner.store.update_app(&app, audit).await?;
        }
        let reason = if delete { "app_deleted" } else { "app_suspended" };
        self.inner.store.expire_codes(client_id, None, self.now_ms()).await?;
        let keys_revoked = self.revoke_app_keys(actor, client_id, None, reason).await?;
        Ok(AppKillSwitch { app: AppView::from(&app), keys_revoked })
    }

    /// Lets an app be used again after a suspension (operator only); its revoked keys stay
    /// revoked: owners connect it again.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::NotFound`].
    pub async fn resume_app(&self, actor: &Actor, client_id: &str) -> ServiceResult<AppView> {
        Self::operator_only(actor, "resume apps")?;
        let mut app = self.app_record(client_id).await?;
        if app.status == AppStatus::Deleted {
            return Err(ServiceError::Conflict(format!("app {client_id} was deleted; register it again")));
        }
        app.status = AppStatus::Active;
        app.updated_at = self.now_ms();
        let audit = self.app_audit(actor, "app.resume", client_id, None, serde_json::json!({ "name": app.name }));
        self.inner.store.update_app(&app, audit).await?;
        Ok(AppView::from(&app))
    }

    /// Revokes the live keys of app `client_id` (only `account`'s when given). Returns how many.
    async fn revoke_app_keys(
        &self,
        actor: &Actor,
        client_id: &str,
        account: Option<keygate_auth::AccountId>,
        reason: &str,
    ) -> ServiceResult<usize> {
        let _writing = self.inner.key_writes.lock().await;
        let mut n = 0;
        for id in self.inner.store.app_key_ids(client_id).await? {
            let Some(k) = self.inner.store.get_key(&id).await? else { continue };
            if k.status == KeyStatus::Revoked || account.is_some_and(|a| a != k.account_id) {
                continue;
            }
            let mut extra = serde_json::Map::new();
            extra.insert("app".into(), serde_json::Value::String(client_id.to_owned()));
            extra.insert("reason".into(), serde_json::Value::String(reason.to_owned()));
            // An owner's call passes their account, so only their keys come this far.
            if self.revoke_as(actor, id.as_str(), "key.revoke", extra).await?.1 {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Allows (or stops allowing) an account to register apps from the console (operator only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`], [`ServiceError::NotFound`] for an unknown account.
    pub async fn allow_app_developer(&self, actor: &Actor, account: &str, allowed: bool) -> ServiceResult<()> {
        Self::operator_only(actor, "allow app developers")?;
        let acc = self.account_record(actor, account).await?;
        let audit = self.app_audit(
            actor,
            if allowed { "app.developer_allow" } else { "app.developer_disallow" },
            &format!("account:{}", acc.name),
            Some(acc.id),
            serde_json::json!({}),
        );
        self.inner.store.set_app_developer(acc.id, allowed, self.now_ms(), audit).await?;
        Ok(())
    }

    /// Whether an owner may register apps from the console.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn may_register_apps(&self, actor: &Actor) -> ServiceResult<bool> {
        match actor {
            Actor::Owner { account_id, .. } => Ok(self.inner.store.is_app_developer(*account_id).await?),
            Actor::Operator { .. } => Ok(true),
            Actor::System { .. } => Ok(false),
        }
    }

    /// Checks an authorization request (RFC 6749 section 4.1.1 with PKCE): first the client and
    /// redirect URI (refused on a page: never redirect to a URI that is not the app's), then the
    /// rest (refused back to the app): `response_type=code`, `state` present, an S256 challenge,
    /// what is asked for, and the app's registered ceiling. No parameter may repeat.
    ///
    /// # Errors
    /// [`AuthorizeRefusal`] saying where the refusal goes.
    pub async fn authorization_request(
        &self,
        p: &AuthorizeParams,
        repeated: &[String],
    ) -> Result<AuthorizeRequest, AuthorizeRefusal> {
        let page = |code, d: &str| AuthorizeRefusal::Page(OAuthError::new(code, d));
        if repeated.iter().any(|r| r == "client_id" || r == "redirect_uri") {
            return Err(page(ErrorCode::InvalidRequest, "client_id or redirect_uri is repeated"));
        }
        let Some(client_id) = p.client_id.as_deref().filter(|c| !c.is_empty()) else {
            return Err(page(ErrorCode::InvalidRequest, "client_id is missing"));
        };
        let app = if oauth::is_client_id(client_id) {
            self.inner.store.get_app(client_id).await.map_err(|_| page(ErrorCode::ServerError, "try again"))?
        } else {
            None
        };
        let Some(app) = app else {
            return Err(page(ErrorCode::InvalidClient, "no app has this client_id"));
        };
        if app.status != AppStatus::Active {
            return Err(page(
                ErrorCode::InvalidClient,
                "this app is suspended by the operator; it cannot be connected",
            ));
        }
        let Some(redirect_uri) = p.redirect_uri.as_deref().filter(|r| !r.is_empty()) else {
            return Err(page(ErrorCode::InvalidRequest, "redirect_uri is missing"));
        };
        if !oauth::redirect_uri_matches(&app.redirect_uris, redirect_uri) {
            return Err(page(ErrorCode::InvalidRequest, "redirect_uri is not one this app registered"));
        }
        let state = p.state.clone().unwrap_or_default();
        let back = |e: OAuthError| {
            let mut pairs = vec![("error", e.code.as_str()), ("error_description", e.description.as_str())];
            if !state.is_empty() {
                pairs.push(("state", state.as_str()));
            }
            AuthorizeRefusal::Redirect(with_query(redirect_uri, &pairs))
        };
        if let Some(r) = repeated.first() {
            return Err(back(OAuthError::new(ErrorCode::InvalidRequest, format!("parameter {r} is repeated"))));
        }
        if p.response_type.as_deref() != Some("code") {
            return Err(back(OAuthError::new(ErrorCode::UnsupportedResponseType, "response_type must be code")));
        }
        if state.is_empty() {
            return Err(back(OAuthError::new(ErrorCode::InvalidRequest, "state is required")));
        }
        let code_challenge =
            oauth::check_challenge(p.code_challenge.as_deref(), p.code_challenge_method.as_deref()).map_err(back)?;
        let requested = oauth::parse_requested(p.scope.as_deref(), p.authorization_details.as_deref()).map_err(back)?;
        oauth::check_ceiling(&requested, app.max_permissions).map_err(back)?;
        Ok(AuthorizeRequest {
            app: AppView::from(&app),
            redirect_uri: redirect_uri.to_owned(),
            state,
            code_challenge,
            requested,
        })
    }

    /// Why the owner's account cannot take the key an app would get (it holds as many live keys
    /// as its key policy allows), for the consent page to say before the owner answers rather
    /// than after; `None` when it can, and for anyone but an owner.
    ///
    /// # Errors
    /// Store failures.
    pub async fn key_room_notice(&self, actor: &Actor) -> ServiceResult<Option<String>> {
        let Actor::Owner { account_id, name, .. } = actor else { return Ok(None) };
        match self.check_key_room(*account_id, name).await {
            Ok(_) => Ok(None),
            Err(ServiceError::Invalid(full)) => Ok(Some(full)),
            Err(e) => Err(e),
        }
    }

    /// The owner's answer to a checked request: the URL to send the browser to. Allowing issues
    /// a code (valid [`oauth::CODE_TTL_MS`]) for the narrowed grant; a grant with `trade` needs
    /// 2FA on the account and a step-up, as creating a trade key does. Audited as `app.consent`
    /// (with `narrowed`) or `app.consent_refused`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a non-owner or no 2FA; [`ServiceError::StepUpRequired`];
    /// [`ServiceError::Invalid`] for a narrowing that cannot be chosen.
    pub async fn consent(&self, actor: &Actor, req: &AuthorizeRequest, answer: Consent) -> ServiceResult<String> {
        let Actor::Owner { account_id, name, .. } = actor else {
            return Err(ServiceError::Forbidden("only the account's owner consents".into()));
        };
        let now = self.now_ms();
        let client_id = req.app.client_id.as_str();
        let narrowing = match answer {
            Consent::Deny => {
                let audit = self.app_audit(
                    actor,
                    "app.consent_refused",
                    client_id,
                    Some(*account_id),
                    serde_json::json!({ "app": req.app.name, "requested": req.requested }),
                );
                self.inner.store.append_audit(audit).await?;
                return Ok(with_query(
                    &req.redirect_uri,
                    &[("error", "access_denied"), ("error_description", "the owner refused"), ("state", &req.state)],
                ));
            }
            Consent::Allow(n) => n,
        };
        let (grant, narrowed) = oauth::narrow(&req.requested, &narrowing, now).map_err(invalid)?;
        let r = Restrictions {
            ip_allowlist: grant.ip_allowlist.clone(),
            expires_at: grant.expires_at,
            symbols: grant.symbols.clone(),
            ..Restrictions::default()
        };
        check_key_rules(grant.permissions, &r, now)?;
        if grant.permissions.contains(Permission::Trade) {
            if self.inner.config.require_2fa_for_trading_keys && !self.two_factor_enabled(*account_id).await? {
                return Err(ServiceError::Forbidden(
                    "giving an app trade needs 2FA on the account: enable it first, or untick trade".into(),
                ));
            }
            if !actor.stepped_up(now) {
                return Err(ServiceError::StepUpRequired("giving an app the trade permission".into()));
            }
        }
        // The key the code makes counts like any other: told here, on the owner's page, rather
        // than only to the app when it exchanges the code.
        self.check_key_room(*account_id, name).await?;
        let code = oauth::generate_code(&mut OsEntropy)?;
        let code_hash = oauth::hash_code(&code).ok_or_else(|| ServiceError::Internal("code format".into()))?;
        let record = CodeRecord {
            code_hash,
            client_id: client_id.to_owned(),
            account_id: *account_id,
            redirect_uri: req.redirect_uri.clone(),
            code_challenge: req.code_challenge.clone(),
            grant_json: serde_json::to_string(&grant).map_err(|e| ServiceError::Internal(e.to_string()))?,
            created_at: now,
            expires_at: now.plus_millis(oauth::CODE_TTL_MS),
            used_at: None,
            key_id: None,
        };
        let audit = self.app_audit(
            actor,
            "app.consent",
            client_id,
            Some(*account_id),
            serde_json::json!({
                "app": req.app.name, "requested": req.requested, "granted": grant, "narrowed": narrowed,
            }),
        );
        self.inner.store.insert_code(&record, audit).await?;
        Ok(with_query(&req.redirect_uri, &[("code", code.as_str()), ("state", &req.state)]))
    }

    /// The token endpoint (RFC 6749 section 4.1.3): authenticates the client (a confidential
    /// client by its secret, compared in constant time), checks the code (known, unused, its
    /// client's, its redirect URI, not older than 60 s, the PKCE verifier) and issues an API key
    /// bound to the app: Ed25519 with the app's public key when it sends one (no secret exists
    /// outside the app), HMAC otherwise (its secret in this answer only). A code used a second
    /// time is refused and the key the first use made is revoked. Audited as `app.token`.
    ///
    /// # Errors
    /// [`OAuthError`] with the RFC code; nothing is issued on any error.
    pub async fn token(&self, p: TokenParams, source: Option<String>) -> Result<TokenAnswer, OAuthError> {
        let server = |e: ServiceError| {
            tracing::warn!(error = %e, "token endpoint failed");
            OAuthError::new(ErrorCode::ServerError, "try again")
        };
        if p.grant_type.as_deref() != Some("authorization_code") {
            return Err(OAuthError::new(ErrorCode::UnsupportedGrantType, "grant_type must be authorization_code"));
        }
        let bad_client = || OAuthError::new(ErrorCode::InvalidClient, "client authentication failed");
        let (client_id, secret) = match (&p.basic, &p.client_id) {
            (Some((id, _)), Some(body)) if id != body => {
                return Err(OAuthError::new(ErrorCode::InvalidRequest, "client_id differs from the Basic credentials"));
            }
            (Some((id, s)), _) => (id.clone(), Some(s.clone())),
            (None, Some(id)) => (id.clone(), p.client_secret.clone()),
            (None, None) => return Err(OAuthError::new(ErrorCode::InvalidClient, "client_id is missing")),
        };
        if p.basic.is_some() && p.client_secret.is_some() {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "use one client authentication method"));
        }
        let app = if oauth::is_client_id(&client_id) {
            self.inner.store.get_app(&client_id).await.map_err(|e| server(e.into()))?
        } else {
            None
        };
        let Some(app) = app else { return Err(bad_client()) };
        if app.status != AppStatus::Active {
            return Err(OAuthError::new(ErrorCode::InvalidClient, "this app is suspended"));
        }
        match (app.client_kind, &app.secret_sha256, secret) {
            (ClientKind::Confidential, Some(stored), Some(s)) if oauth::client_secret_matches(&s, stored) => {}
            (ClientKind::Public, _, None) => {}
            _ => return Err(bad_client()),
        }
        let Some(code) = p.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "code is missing"));
        };
        let Some(code_hash) = oauth::hash_code(code) else { return Err(grant_err("unknown code")) };
        let Some(rec) = self.inner.store.get_code(&code_hash).await.map_err(|e| server(e.into()))? else {
            return Err(grant_err("unknown code"));
        };
        if rec.client_id != app.client_id {
            return Err(grant_err("this code was issued to another client"));
        }
        if rec.used_at.is_some() {
            self.code_reused(&rec, source.clone()).await.map_err(server)?;
            return Err(grant_err("this code was already used; the key issued with it is revoked"));
        }
        let now = self.now_ms();
        if now >= rec.expires_at {
            return Err(grant_err("this code has expired (codes are valid for 60 s)"));
        }
        // An operator's change since the code was issued (a suspension, even one resumed since,
        // or a change of verification) voids it: the owner consented to the app as it was.
        if app.updated_at > rec.created_at {
            return Err(grant_err("the operator changed this app after the code was issued; authorize again"));
        }
        if p.redirect_uri.as_deref() != Some(rec.redirect_uri.as_str()) {
            return Err(grant_err("redirect_uri differs from the authorization request's"));
        }
        let Some(verifier) = p.code_verifier.as_deref().filter(|v| !v.is_empty()) else {
            return Err(OAuthError::new(ErrorCode::InvalidRequest, "code_verifier is missing"));
        };
        if !oauth::verify_pkce(verifier, &rec.code_challenge) {
            return Err(grant_err("code_verifier does not match the code_challenge"));
        }
        let grant: Grant =
            serde_json::from_str(&rec.grant_json).map_err(|e| server(ServiceError::Internal(e.to_string())))?;
        let account = self.inner.store.account_by_id(rec.account_id).await.map_err(|e| server(e.into()))?;
        let Some(account) = account.filter(|a| a.status == keygate_store::AccountStatus::Active) else {
            return Err(grant_err("the account that consented is not active"));
        };
        // Checked again: the owner may have made other keys since consenting (and once more
        // below, where keys are written one at a time).
        self.token_key_room(&account).await?;
        let (material, secret) = match p.public_key.as_deref().filter(|k| !k.trim().is_empty()) {
            Some(text) => (
                KeyMaterial::Public(
                    PublicKey::parse_ed25519(text)
                        .map_err(|e| OAuthError::new(ErrorCode::InvalidRequest, format!("public_key: {e}")))?,
                ),
                None,
            ),
            None => {
                let s = HmacSecret::generate(&mut OsEntropy).map_err(|e| server(e.into()))?;
                (KeyMaterial::Hmac(s.clone()), Some(s))
            }
        };
        let key_id = ApiKeyId::generate(&mut OsEntropy).map_err(|e| server(e.into()))?;
        let label: String = app.name.chars().take(64).collect();
        check_label(&label).map_err(server)?;
        let record = KeyRecord {
            id: key_id.clone(),
            account_id: rec.account_id,
            label,
            material,
            permissions: grant.permissions,
            restrictions: Restrictions {
                ip_allowlist: grant.ip_allowlist.clone(),
                expires_at: grant.expires_at,
                symbols: grant.symbols.clone(),
                ..Restrictions::default()
            },
            status: KeyStatus::Active,
            status_reason: None,
            created_at: now,
            created_by: "owner".into(),
            updated_at: now,
            updated_by: "owner".into(),
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            withdrawal_holds: keygate_store::WithdrawalHolds::default(),
            app_id: Some(app.client_id.clone()),
        };
        // Taken here, in one conditional statement: of two exchanges at once (any node), one.
        if !self.inner.store.redeem_code(&code_hash, now, &key_id).await.map_err(|e| server(e.into()))? {
            if let Ok(Some(fresh)) = self.inner.store.get_code(&code_hash).await {
                self.code_reused(&fresh, source.clone()).await.map_err(server)?;
            }
            return Err(grant_err("this code was already used; the key issued with it is revoked"));
        }
        // A disconnect or suspension that ended the code after it was read above wins: nothing is
        // issued. Only an end rewrites a code's expiry; the code's own minute running out after it
        // was taken in time does not count (it was taken in time).
        let fresh = self.inner.store.get_code(&code_hash).await.map_err(|e| server(e.into()))?;
        if fresh.is_none_or(|c| c.expires_at != rec.expires_at) {
            return Err(grant_err("this code has ended (its app was disconnected or suspended)"));
        }
        let audit = AuditDraft {
            at: now,
            actor: format!("app:{}", app.client_id),
            action: "app.token".into(),
            target: key_id.to_string(),
            account_id: Some(rec.account_id),
            source,
            details: serde_json::json!({
                "app": app.client_id, "app_name": app.name, "label": record.label,
                "type": record.material.key_type(), "permissions": record.permissions,
                "restrictions": record.restrictions,
            }),
        };
        {
            let _writing = self.inner.key_writes.lock().await;
            // Under the lock every key creation on this node takes, so that exchanges at once
            // cannot each find room for one more (the code is spent: the app asks again).
            self.token_key_room(&account).await?;
            self.inner.store.insert_key(&record, audit).await.map_err(|e| server(e.into()))?;
            self.inner.cache.upsert(&record).map_err(server)?;
        }
        // The kill switch marks the app, and a disconnect ends the owner's codes (this one too,
        // though it is taken), before either lists the app's keys. Read both again after the key
        // is stored: either a read sees the mark, and the key is revoked here, or the key was
        // stored before the mark, and the kill switch's or the disconnect's list (on any node)
        // finds it. Only an end rewrites a code's expiry, so a changed one is a disconnect's or a
        // suspension's, never the code's own minute running out meanwhile.
        let now_app = self.inner.store.get_app(&app.client_id).await.map_err(|e| server(e.into()))?;
        let suspended = now_app.as_ref().is_none_or(|a| a.status != AppStatus::Active);
        let ended = !suspended
            && self
                .inner
                .store
                .get_code(&code_hash)
                .await
                .map_err(|e| server(e.into()))?
                .is_none_or(|c| c.expires_at != rec.expires_at);
        if suspended || ended {
            let _writing = self.inner.key_writes.lock().await;
            let mut extra = serde_json::Map::new();
            extra.insert("app".into(), serde_json::Value::String(app.client_id.clone()));
            let reason = if suspended { "app_suspended" } else { "app_disconnected" };
            extra.insert("reason".into(), serde_json::Value::String(reason.into()));
            self.revoke_as(&Actor::System { policy: "oauth".into() }, key_id.as_str(), "key.revoke", extra)
                .await
                .map_err(server)?;
            return Err(if suspended {
                OAuthError::new(ErrorCode::InvalidClient, "this app is suspended")
            } else {
                grant_err("this code has ended (its app was disconnected)")
            });
        }
        Ok(TokenAnswer {
            access_token: key_id.to_string(),
            token_type: oauth::TOKEN_TYPE,
            api_key: key_id.to_string(),
            key_type: record.material.key_type().as_str(),
            secret_key: secret.map(|s| s.expose().to_owned()),
            scope: oauth::granted_scope(&grant),
            authorization_details: oauth::granted_details(&grant),
            expires_in: grant.expires_at.map(|at| at.0.saturating_sub(now.0) / 1000),
        })
    }

    /// [`Service::check_key_room`] for the token endpoint: a full account is `invalid_grant`.
    async fn token_key_room(&self, account: &keygate_store::AccountRecord) -> Result<(), OAuthError> {
        match self.check_key_room(account.id, &account.name).await {
            Ok(_) => Ok(()),
            Err(ServiceError::Invalid(why)) => Err(grant_err(why)),
            Err(e) => {
                tracing::warn!(error = %e, "token endpoint failed");
                Err(OAuthError::new(ErrorCode::ServerError, "try again"))
            }
        }
    }

    /// A code used again: revokes the key its first use made (RFC 6749 section 4.1.2: the code
    /// may have been stolen), audited as `app.code_reuse`.
    async fn code_reused(&self, rec: &CodeRecord, source: Option<String>) -> ServiceResult<()> {
        let audit = AuditDraft {
            at: self.now_ms(),
            actor: format!("app:{}", rec.client_id),
            action: "app.code_reuse".into(),
            target: rec.client_id.clone(),
            account_id: Some(rec.account_id),
            source,
            details: serde_json::json!({ "key": rec.key_id.as_ref().map(ToString::to_string) }),
        };
        self.inner.store.append_audit(audit).await?;
        if let Some(key) = &rec.key_id
            && self.inner.store.get_key(key).await?.is_some()
        {
            let _writing = self.inner.key_writes.lock().await;
            let mut extra = serde_json::Map::new();
            extra.insert("app".into(), serde_json::Value::String(rec.client_id.clone()));
            extra.insert("reason".into(), serde_json::Value::String("code_reused".into()));
            self.revoke_as(&Actor::System { policy: "oauth".into() }, key.as_str(), "key.revoke", extra).await?;
        }
        Ok(())
    }

    /// The apps with access to the owner's account: each app holding a live key of it.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for non-owners.
    pub async fn connected_apps(&self, actor: &Actor) -> ServiceResult<Vec<ConnectedApp>> {
        let Actor::Owner { account_id, .. } = actor else {
            return Err(ServiceError::Forbidden("connected apps are an owner's page".into()));
        };
        let mut out: Vec<ConnectedApp> = Vec::new();
        for k in self.inner.store.list_keys(Some(*account_id)).await? {
            let Some(app_id) = &k.app_id else { continue };
            if k.status == KeyStatus::Revoked {
                continue;
            }
            let i = match out.iter().position(|c| &c.app.client_id == app_id) {
                Some(i) => i,
                None => {
                    let app = self.app_record(app_id).await?;
                    out.push(ConnectedApp {
                        app: AppView::from(&app),
                        permissions: Permissions::READ_ONLY,
                        keys: Vec::new(),
                        created_at: k.created_at,
                        last_used_at: None,
                        last_used_ip: None,
                        use_count: 0,
                    });
                    out.len() - 1
                }
            };
            let c = &mut out[i];
            c.permissions = c.permissions.iter().chain(k.permissions.iter()).collect::<Vec<_>>().into();
            c.keys.push(k.id.to_string());
            c.created_at = c.created_at.min(k.created_at);
            if k.last_used_at > c.last_used_at {
                c.last_used_at = k.last_used_at;
                c.last_used_ip.clone_from(&k.last_used_ip);
            }
            c.use_count = c.use_count.saturating_add(k.use_count);
        }
        Ok(out)
    }

    /// "Disconnect": revokes every key of the owner's account that app `client_id` holds, at
    /// once (each through the revocation path), audited as `app.disconnect`. Never needs a
    /// step-up: making things safer is always easy. Returns how many keys.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for non-owners; [`ServiceError::NotFound`] for an app with no
    /// key of the account.
    pub async fn disconnect_app(&self, actor: &Actor, client_id: &str) -> ServiceResult<usize> {
        let Actor::Owner { account_id, .. } = actor else {
            return Err(ServiceError::Forbidden("only the owner disconnects an app".into()));
        };
        let held = self.inner.store.app_key_ids(client_id).await?;
        let mut mine = false;
        for id in &held {
            if self.inner.store.get_key(id).await?.is_some_and(|k| k.account_id == *account_id) {
                mine = true;
                break;
            }
        }
        if !mine {
            return Err(ServiceError::NotFound(format!("connected app {client_id}")));
        }
        self.inner.store.expire_codes(client_id, Some(*account_id), self.now_ms()).await?;
        let n = self.revoke_app_keys(actor, client_id, Some(*account_id), "app_disconnected").await?;
        let audit = self.app_audit(
            actor,
            "app.disconnect",
            client_id,
            Some(*account_id),
            serde_json::json!({ "keys_revoked": n }),
        );
        self.inner.store.append_audit(audit).await?;
        Ok(n)
    }
}
