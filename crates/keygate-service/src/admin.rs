//! The admin channel: operator commands as JSON lines over a 0600 Unix socket in the data
//! directory.
//!
//! While a server runs it owns the store, the key cache and the engine, so the CLI's state changes
//! must go through it to take effect at once: a key revoked from the CLI fails on its very next
//! request. With no server running, the CLI calls [`execute`] itself on a service it assembled
//! directly, so both paths run the same code. It lives in the service layer, not the HTTP one, so
//! the CLI reaches it without the web server.

use crate::{Actor, DepositRequest, KeyEdit, NewKey, NewKeyMaterial, Service, ServiceError};
use keygate_auth::{IpAllowlist, KeyStatus, Permissions, Restrictions, WithdrawLimit};
use keygate_proto::{Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use zeroize::Zeroizing;

/// Largest request line accepted on the socket.
const MAX_LINE: usize = 1 << 20;

/// Restrictions as typed by an operator, parsed by [`execute`] so both paths report the same
/// errors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RestrictionArgs {
    /// CIDR entries.
    #[serde(default)]
    pub ip: Vec<String>,
    /// Symbols.
    #[serde(default)]
    pub symbols: Vec<String>,
    /// RFC 3339 expiry.
    #[serde(default)]
    pub expires: Option<String>,
    /// Withdrawal addresses.
    #[serde(default)]
    pub withdraw_addresses: Vec<String>,
    /// `(amount, asset)`.
    #[serde(default)]
    pub withdraw_limit_24h: Option<(String, String)>,
}

/// Changes to a key as typed by an operator; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EditArgs {
    /// New label.
    pub label: Option<String>,
    /// New permission list.
    pub permissions: Option<String>,
    /// New IP allowlist (empty list: any address).
    pub ip: Option<Vec<String>>,
    /// New symbols (empty list: all).
    pub symbols: Option<Vec<String>>,
    /// New expiry; `Some(None)` removes it.
    pub expires: Option<Option<String>>,
    /// New withdrawal addresses (empty list: none).
    pub withdraw_addresses: Option<Vec<String>>,
    /// New limit; `Some(None)` removes it.
    pub withdraw_limit_24h: Option<Option<(String, String)>>,
    /// `active` or `disabled`.
    pub status: Option<KeyStatus>,
}

/// One operator command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create an account.
    AccountCreate {
        /// Name.
        name: String,
        /// Password.
        password: String,
    },
    /// List accounts.
    AccountList,
    /// Show one account.
    AccountShow {
        /// Name.
        name: String,
    },
    /// Set an account's password.
    AccountPassword {
        /// Name.
        name: String,
        /// New password.
        password: String,
    },
    /// Remove an account's 2FA (its owner lost the device): ends its sessions, locks withdrawals
    /// for 24 h.
    AccountTotpReset {
        /// Name.
        name: String,
    },
    /// Create a key.
    KeyCreate {
        /// Owning account.
        account: String,
        /// Label.
        label: String,
        /// `hmac`, `ed25519` or `rsa`.
        key_type: String,
        /// Public key text for ed25519/rsa.
        public_key: Option<String>,
        /// Comma-separated permissions.
        permissions: String,
        /// Restrictions.
        restrictions: RestrictionArgs,
    },
    /// List keys.
    KeyList {
        /// Only this account's.
        account: Option<String>,
    },
    /// Show a key.
    KeyShow {
        /// Key id.
        id: String,
    },
    /// Change a key.
    KeyEdit {
        /// Key id.
        id: String,
        /// Changes.
        edit: EditArgs,
    },
    /// Revoke a key.
    KeyRevoke {
        /// Key id.
        id: String,
    },
    /// Revoke every key of an account.
    KeyRevokeAll {
        /// Account name.
        account: String,
    },
    /// Read the audit log.
    AuditList {
        /// Records after this sequence number.
        after: i64,
        /// At most this many.
        limit: u32,
    },
    /// Check the audit chain.
    AuditVerify,
    /// Credit sandbox funds to an account (operators only; never reachable with an API key).
    Deposit {
        /// Account name.
        account: String,
        /// Asset code.
        asset: String,
        /// Amount, Binance decimal.
        amount: String,
        /// Network; the asset's first by default.
        network: Option<String>,
    },
    /// Check the exchange ledger's invariant and show the totals per asset.
    AuditLedger,
    /// Check the exchange journal: contiguous, readable, in time order.
    AuditJournal,
    /// Make a single-use invite code for `serve --signup invite`; the answer holds the code,
    /// shown this once.
    InviteCreate {
        /// The operator's note (whom it is for).
        #[serde(default)]
        note: String,
        /// Valid for this long, ms; [`crate::invites::DEFAULT_INVITE_MS`] when absent.
        #[serde(default)]
        valid_ms: Option<u64>,
    },
    /// List invites, without their codes.
    InviteList,
    /// An account's key policies: the deployment's, its own tightenings, what applies.
    AccountPolicyShow {
        /// Account name.
        name: String,
    },
    /// Replace an account's own key-policy tightenings.
    AccountPolicySet {
        /// Account name.
        name: String,
        /// The tightenings (`{}` for none: the deployment's apply).
        policy: crate::policy::AccountKeyPolicy,
    },
    /// Apply the key policies now (the server also does every minute).
    PolicySweep,
    /// Register a connected app (issue #15); the answer holds its client secret (confidential
    /// clients), shown once.
    AppRegister {
        /// The app.
        app: crate::apps::NewApp,
    },
    /// List apps (deleted ones with `all`).
    AppList {
        /// Include deleted apps.
        #[serde(default)]
        all: bool,
    },
    /// Show one app.
    AppShow {
        /// Client id.
        client_id: String,
    },
    /// Mark an app verified or not.
    AppVerify {
        /// Client id.
        client_id: String,
        /// The flag.
        verified: bool,
    },
    /// Suspend (or delete) an app: the kill switch, revoking every key it holds.
    AppSuspend {
        /// Client id.
        client_id: String,
        /// Delete rather than suspend.
        #[serde(default)]
        delete: bool,
    },
    /// Let a suspended app be connected again (its revoked keys stay revoked).
    AppResume {
        /// Client id.
        client_id: String,
    },
    /// Allow (or stop allowing) an account to register apps from the console.
    AppDeveloper {
        /// Account name.
        account: String,
        /// Allowed or not.
        allowed: bool,
    },
    /// Revoke an unused invite.
    InviteRevoke {
        /// Invite id.
        id: i64,
    },
    /// Register a webhook endpoint for an account; the answer holds its secret, shown once.
    WebhookCreate {
        /// Account name.
        account: String,
        /// Where deliveries go.
        url: String,
        /// A note.
        #[serde(default)]
        description: String,
    },
    /// List webhook endpoints (one account's, or everyone's).
    WebhookList {
        /// Account name.
        #[serde(default)]
        account: Option<String>,
    },
    /// Delete a webhook endpoint (its pending deliveries become dead).
    WebhookDelete {
        /// Endpoint id.
        id: i64,
    },
    /// Pause or resume a webhook endpoint.
    WebhookSetActive {
        /// Endpoint id.
        id: i64,
        /// Resume (true) or pause (false).
        active: bool,
    },
    /// An endpoint's latest deliveries, dead letters included.
    WebhookDeliveries {
        /// Endpoint id.
        id: i64,
        /// At most this many.
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Send a dead delivery again.
    WebhookRedeliver {
        /// Endpoint id.
        endpoint: i64,
        /// Delivery id.
        delivery: i64,
    },
    /// An account's latest events (the console's notices).
    Notices {
        /// Account name.
        account: String,
        /// At most this many.
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Pause the running server's simulated market.
    MarketPause,
    /// Resume it.
    MarketResume,
    /// Show it.
    MarketStatus,
}

impl AdminRequest {
    /// True if and only if the request needs the exchange engine.
    #[must_use]
    pub fn needs_engine(&self) -> bool {
        matches!(
            self,
            Self::Deposit { .. } | Self::AuditLedger | Self::MarketPause | Self::MarketResume | Self::MarketStatus
        )
    }
}

/// The answer to one command.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminResponse {
    /// Success, with the command's JSON result.
    Ok(serde_json::Value),
    /// Failure, with a message for the operator.
    Error {
        /// `invalid`, `not_found`, `conflict`, `forbidden`, `step_up`, `internal`.
        kind: String,
        /// The message.
        message: String,
    },
}

fn invalid(msg: impl ToString) -> ServiceError {
    ServiceError::Invalid(msg.to_string())
}

/// Parses an RFC 3339 time such as `2027-01-31T00:00:00Z` into ms.
///
/// # Errors
/// [`ServiceError::Invalid`] with an example of the expected form.
pub fn parse_time(text: &str) -> Result<UnixMillis, ServiceError> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| invalid(format!("{text:?} is not a time like 2027-01-31T00:00:00Z")))?;
    let ms = t.unix_timestamp_nanos() / 1_000_000;
    u64::try_from(ms).map(UnixMillis).map_err(|_| invalid(format!("{text:?} is before 1970")))
}

fn parse_symbols(list: &[String]) -> Result<Vec<Symbol>, ServiceError> {
    let mut out = Vec::new();
    for s in list.iter().flat_map(|s| s.split(',')).map(str::trim).filter(|s| !s.is_empty()) {
        let sym = Symbol::parse(&s.to_ascii_uppercase()).map_err(invalid)?;
        if !out.contains(&sym) {
            out.push(sym);
        }
    }
    Ok(out)
}

fn parse_limit((amount, asset): &(String, String)) -> Result<WithdrawLimit, ServiceError> {
    Ok(WithdrawLimit {
        asset: AssetCode::parse(&asset.to_ascii_uppercase()).map_err(invalid)?,
        amount: Amount::parse(amount).map_err(|e| invalid(format!("withdrawal limit {amount:?}: {e}")))?,
    })
}

fn parse_restrictions(r: &RestrictionArgs) -> Result<Restrictions, ServiceError> {
    Ok(Restrictions {
        ip_allowlist: IpAllowlist::parse(&r.ip).map_err(invalid)?,
        expires_at: r.expires.as_deref().map(parse_time).transpose()?,
        symbols: parse_symbols(&r.symbols)?,
        withdraw_addresses: r.withdraw_addresses.clone(),
        withdraw_limit_24h: r.withdraw_limit_24h.as_ref().map(parse_limit).transpose()?,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<serde_json::Value, ServiceError> {
    serde_json::to_value(v).map_err(|e| ServiceError::Internal(e.to_string()))
}

/// Runs one command as `actor`.
///
/// # Errors
/// The service's error, for the CLI to print.
pub async fn execute(service: &Service, actor: &Actor, req: AdminRequest) -> Result<serde_json::Value, ServiceError> {
    match req {
        AdminRequest::AccountCreate { name, password } => {
            to_json(&service.create_account(actor, &name, Zeroizing::new(password)).await?)
        }
        AdminRequest::AccountList => to_json(&service.list_accounts(actor).await?),
        AdminRequest::AccountShow { name } => to_json(&service.account(actor, &name).await?),
        AdminRequest::AccountPassword { name, password } => {
            service.set_password(actor, &name, Zeroizing::new(password)).await?;
            Ok(serde_json::json!({ "account": name, "password": "changed" }))
        }
        AdminRequest::AccountTotpReset { name } => {
            service.totp_reset(actor, &name).await?;
            Ok(serde_json::json!({ "account": name, "two_factor": "reset" }))
        }
        AdminRequest::KeyCreate { account, label, key_type, public_key, permissions, restrictions } => {
            let material = match (key_type.as_str(), public_key) {
                ("hmac", None) => NewKeyMaterial::Hmac,
                ("ed25519", Some(pk)) => NewKeyMaterial::Ed25519(pk),
                ("rsa", Some(pk)) => NewKeyMaterial::Rsa(pk),
                ("hmac", Some(_)) => return Err(invalid("an HMAC key takes no public key")),
                ("ed25519" | "rsa", None) => return Err(invalid(format!("an {key_type} key needs its public key"))),
                (other, _) => return Err(invalid(format!("unknown key type {other:?}; use hmac, ed25519 or rsa"))),
            };
            let new = NewKey {
                account,
                label,
                material,
                permissions: Permissions::parse_list(&permissions).map_err(invalid)?,
                restrictions: parse_restrictions(&restrictions)?,
                confirm_wide_ip: false,
            };
            to_json(&service.create_key(actor, new).await?)
        }
        AdminRequest::KeyList { account } => to_json(&service.list_keys(actor, account.as_deref()).await?),
        AdminRequest::KeyShow { id } => to_json(&service.key(actor, &id).await?),
        AdminRequest::KeyEdit { id, edit } => {
            let e = KeyEdit {
                label: edit.label,
                permissions: edit.permissions.as_deref().map(Permissions::parse_list).transpose().map_err(invalid)?,
                ip_allowlist: edit.ip.as_deref().map(IpAllowlist::parse).transpose().map_err(invalid)?,
                expires_at: edit.expires.map(|o| o.as_deref().map(parse_time).transpose()).transpose()?,
                symbols: edit.symbols.as_deref().map(parse_symbols).transpose()?,
                withdraw_addresses: edit.withdraw_addresses,
                withdraw_limit_24h: edit
                    .withdraw_limit_24h
                    .map(|o| o.as_ref().map(parse_limit).transpose())
                    .transpose()?,
                status: edit.status,
                confirm_wide_ip: false,
            };
            to_json(&service.edit_key(actor, &id, e).await?)
        }
        AdminRequest::KeyRevoke { id } => to_json(&service.revoke_key(actor, &id).await?),
        AdminRequest::KeyRevokeAll { account } => {
            let n = service.revoke_all_keys(actor, &account).await?;
            Ok(serde_json::json!({ "account": account, "revoked": n }))
        }
        AdminRequest::AuditList { after, limit } => to_json(&service.audit_log(actor, after, limit).await?),
        AdminRequest::AuditVerify => {
            let n = service.verify_audit_chain(actor).await?;
            Ok(serde_json::json!({ "records": n, "chain": "intact" }))
        }
        AdminRequest::Deposit { account, asset, amount, network } => {
            to_json(&service.deposit(actor, DepositRequest { account, asset, amount, network }).await?)
        }
        AdminRequest::AuditLedger => {
            let assets = service.audit_ledger(actor).await?;
            Ok(serde_json::json!({ "invariant": "holds", "assets": to_json(&assets)? }))
        }
        AdminRequest::AuditJournal => to_json(&service.audit_journal(actor).await?),
        AdminRequest::InviteCreate { note, valid_ms } => {
            to_json(&service.create_invite(actor, &note, valid_ms.unwrap_or(crate::invites::DEFAULT_INVITE_MS)).await?)
        }
        AdminRequest::InviteList => to_json(&service.list_invites(actor).await?),
        AdminRequest::MarketPause => to_json(&service.pause_market(actor, true).await?),
        AdminRequest::MarketResume => to_json(&service.pause_market(actor, false).await?),
        AdminRequest::MarketStatus => to_json(&service.market_status().await?),
        AdminRequest::InviteRevoke { id } => to_json(&service.revoke_invite(actor, id).await?),
        AdminRequest::AppRegister { app } => to_json(&service.register_app(actor, app).await?),
        AdminRequest::AppList { all } => to_json(&service.list_apps(actor, all).await?),
        AdminRequest::AppShow { client_id } => to_json(&service.app(actor, &client_id).await?),
        AdminRequest::AppVerify { client_id, verified } => {
            to_json(&service.set_app_verified(actor, &client_id, verified).await?)
        }
        AdminRequest::AppSuspend { client_id, delete } => {
            to_json(&service.suspend_app(actor, &client_id, delete).await?)
        }
        AdminRequest::AppResume { client_id } => to_json(&service.resume_app(actor, &client_id).await?),
        AdminRequest::AppDeveloper { account, allowed } => {
            service.allow_app_developer(actor, &account, allowed).await?;
            Ok(serde_json::json!({ "account": account, "may_register_apps": allowed }))
        }
        AdminRequest::AccountPolicyShow { name } => to_json(&service.key_policy(actor, &name).await?),
        AdminRequest::AccountPolicySet { name, policy } => {
            to_json(&service.set_key_policy(actor, &name, policy).await?)
        }
        AdminRequest::PolicySweep => {
            if !matches!(actor, Actor::Operator { .. }) {
                return Err(ServiceError::Forbidden("only the operator applies the key policies by hand".into()));
            }
            to_json(&service.sweep_key_policies().await?)
        }
        AdminRequest::WebhookCreate { account, url, description } => {
            to_json(&service.create_webhook(actor, &account, &url, &description).await?)
        }
        AdminRequest::WebhookList { account } => to_json(&service.list_webhooks(actor, account.as_deref()).await?),
        AdminRequest::WebhookDelete { id } => {
            service.delete_webhook(actor, id).await?;
            Ok(serde_json::json!({ "id": id, "deleted": true }))
        }
        AdminRequest::WebhookSetActive { id, active } => to_json(&service.set_webhook_active(actor, id, active).await?),
        AdminRequest::WebhookDeliveries { id, limit } => {
            to_json(&service.webhook_deliveries(actor, id, limit.unwrap_or(50)).await?)
        }
        AdminRequest::WebhookRedeliver { endpoint, delivery } => {
            service.redeliver_webhook(actor, endpoint, delivery).await?;
            Ok(serde_json::json!({ "endpoint": endpoint, "delivery": delivery, "status": "pending" }))
        }
        AdminRequest::Notices { account, limit } => {
            to_json(&service.notices(actor, &account, limit.unwrap_or(50)).await?)
        }
    }
}

/// The response for a service result.
#[must_use]
pub fn respond(result: Result<serde_json::Value, ServiceError>) -> AdminResponse {
    match result {
        Ok(v) => AdminResponse::Ok(v),
        Err(e) => {
            let kind = match &e {
                ServiceError::Invalid(_) => "invalid",
                ServiceError::NotFound(_) => "not_found",
                ServiceError::Conflict(_) => "conflict",
                ServiceError::Forbidden(_) => "forbidden",
                ServiceError::StepUpRequired(_) => "step_up",
                ServiceError::Unauthenticated(_) => "unauthenticated",
                ServiceError::InvalidCode(_) => "invalid_code",
                ServiceError::Throttled { .. } => "throttled",
                ServiceError::WithdrawalHeld(_) => "held",
                ServiceError::Exchange(crate::engine::EngineError::Rejected(_)) => "invalid",
                ServiceError::Store(_) | ServiceError::Internal(_) | ServiceError::Exchange(_) => "internal",
            };
            AdminResponse::Error { kind: kind.into(), message: e.to_string() }
        }
    }
}

/// Binds the admin socket at `path` (mode 0600), replacing a stale socket file.
///
/// # Errors
/// I/O errors binding or setting permissions.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    // The data directory lock is held by now, so a socket file here is a leftover of a killed
    // server, never a live one.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin connections until the listener is dropped. Each connection may send several
/// request lines; each gets one response line.
pub async fn serve(listener: UnixListener, service: Service) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed; pausing");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = service.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &service).await {
                tracing::warn!(error = %e, "admin connection failed");
            }
        });
    }
}

async fn handle(stream: UnixStream, service: &Service) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let actor = Actor::Operator { via: "admin-socket".into() };
    loop {
        let mut line = Zeroizing::new(String::new());
        let n = (&mut lines).take(MAX_LINE as u64).read_line(&mut line).await?;
        if n == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<AdminRequest>(&line) {
            Ok(req) => respond(execute(service, &actor, req).await),
            Err(e) => AdminResponse::Error { kind: "invalid".into(), message: format!("malformed admin request: {e}") },
        };
        let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        out.push(b'\n');
        write.write_all(&out).await?;
    }
}

/// Sends one command to the server listening on `path`.
///
/// # Errors
/// I/O errors connecting or talking, or an unreadable answer.
pub async fn call(path: &PathBuf, req: &AdminRequest) -> std::io::Result<AdminResponse> {
    let stream = UnixStream::connect(path).await?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    let mut answer = String::new();
    BufReader::new(read).take(64 << 20).read_line(&mut answer).await?;
    serde_json::from_str(&answer).map_err(std::io::Error::other)
}
