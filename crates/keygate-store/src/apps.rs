//! Connected apps (issue #15): the registry of OAuth clients, their single-use authorization
//! codes, and the accounts the operator allows to register apps from the console.
//!
//! Codes are kept as their SHA-256 only and taken with one conditional `UPDATE` (unused), so of
//! two exchanges of one code on any backend, or on two nodes, exactly one wins; the key the
//! winner is about to create is named in that same statement, so a later reuse of the code finds
//! what to revoke. Each change is written with its audit record in one transaction.

use crate::audit_log::append;
use crate::dialect::Dialect;
use crate::records::AuditDraft;
use crate::rows::{Columns, from_db_time, hash32, name_violation, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use crate::{StoreError, StoreResult};
use async_trait::async_trait;
use keygate_auth::oauth::ClientKind;
use keygate_auth::{AccountId, ApiKeyId, Permissions};
use keygate_proto::UnixMillis;

/// Whether an app may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStatus {
    /// Owners may connect it; its keys work.
    Active,
    /// The operator's kill switch: no new consent or code exchange; its keys were revoked.
    Suspended,
    /// Removed: as suspended, and no longer listed by default.
    Deleted,
}

impl AppStatus {
    /// Lower-case name, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "suspended" => Some(Self::Suspended),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// A registered app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The public client id (`kgapp_...`).
    pub client_id: String,
    /// Display name on the consent page.
    pub name: String,
    /// The app's home page (https).
    pub homepage: String,
    /// The domain its publisher claims (shown with the verified flag).
    pub publisher_domain: String,
    /// Exact redirect URIs.
    pub redirect_uris: Vec<String>,
    /// The most it may ask for (`read`, perhaps `trade`; never `withdraw`).
    pub max_permissions: Permissions,
    /// Confidential (has a secret) or public.
    pub client_kind: ClientKind,
    /// SHA-256 of the client secret, for confidential clients.
    pub secret_sha256: Option<[u8; 32]>,
    /// Set by the operator only.
    pub verified: bool,
    /// Optional logo (https URL).
    pub logo_url: Option<String>,
    /// Active, suspended or deleted.
    pub status: AppStatus,
    /// The account that registered it from the console, if an owner did.
    pub registered_by_account: Option<AccountId>,
    /// Registration time.
    pub created_at: UnixMillis,
    /// Who registered it (audit actor label).
    pub created_by: String,
    /// Last change.
    pub updated_at: UnixMillis,
}

/// An authorization code as stored (without the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// SHA-256 of the code.
    pub code_hash: [u8; 32],
    /// The app it was issued to.
    pub client_id: String,
    /// The account that consented.
    pub account_id: AccountId,
    /// The redirect URI of the request (the token request must name it again).
    pub redirect_uri: String,
    /// The PKCE S256 challenge.
    pub code_challenge: String,
    /// What the owner granted (JSON of `keygate_auth::oauth::Grant`).
    pub grant_json: String,
    /// Issue time.
    pub created_at: UnixMillis,
    /// Refused from this time on.
    pub expires_at: UnixMillis,
    /// When it was exchanged, if it was.
    pub used_at: Option<UnixMillis>,
    /// The key the exchange created (or was about to).
    pub key_id: Option<ApiKeyId>,
}

/// Apps, their codes and the owners allowed to register apps.
#[async_trait]
pub trait AppStore: Send + Sync {
    /// Registers an app; [`StoreError::Conflict`] if the client id exists.
    async fn insert_app(&self, app: &AppRecord, audit: AuditDraft) -> StoreResult<()>;

    /// The app with `client_id`, whatever its status.
    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>>;

    /// Every app, oldest first.
    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>>;

    /// Rewrites an app's mutable fields (name, homepage, domain, redirect URIs, ceiling,
    /// verified, logo, status, updated_at); [`StoreError::NotFound`] for an unknown app.
    async fn update_app(&self, app: &AppRecord, audit: AuditDraft) -> StoreResult<()>;

    /// Stores a new code with the consent's audit record.
    async fn insert_code(&self, code: &CodeRecord, audit: AuditDraft) -> StoreResult<()>;

    /// The code with this hash, used or not.
    async fn get_code(&self, code_hash: &[u8; 32]) -> StoreResult<Option<CodeRecord>>;

    /// Takes an unused code at `at` for `key_id` (the key about to be created): true if this
    /// call took it, false if it was already used (by any node), or is unknown.
    async fn redeem_code(&self, code_hash: &[u8; 32], at: UnixMillis, key_id: &ApiKeyId) -> StoreResult<bool>;

    /// Ends, at `at`, the live codes of app `client_id` (only `account`'s when given): a
    /// disconnect or a suspension must not leave a code that still makes a key. Codes already
    /// taken by an exchange still in progress are ended too, so that the exchange, reading its
    /// code again once it has stored its key, sees the end and revokes that key. Returns how many.
    async fn expire_codes(&self, client_id: &str, account: Option<AccountId>, at: UnixMillis) -> StoreResult<u64>;

    /// Deletes every code that expired before `expired_before` (housekeeping: a code is refused
    /// once it has expired, so without this the table only grows, one row per consent). The
    /// caller keeps a margin past expiry, so a code's reuse within its lifetime still finds the
    /// key its first use made. Returns how many were deleted.
    async fn purge_codes(&self, expired_before: UnixMillis) -> StoreResult<u64>;

    /// Ids of every key issued to the app (revoked ones included).
    async fn app_key_ids(&self, client_id: &str) -> StoreResult<Vec<ApiKeyId>>;

    /// Allows (or stops allowing) an account to register apps from the console, with its audit
    /// record.
    async fn set_app_developer(
        &self,
        account: AccountId,
        allowed: bool,
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<()>;

    /// Whether the account may register apps from the console.
    async fn is_app_developer(&self, account: AccountId) -> StoreResult<bool>;
}

const APP_COLUMNS: &str = "client_id, name, homepage, publisher_domain, redirect_uris, max_permissions, client_kind, \
     secret_sha256, verified, logo_url, status, registered_by_account, created_at, created_by, updated_at";
const CODE_COLUMNS: &str = "code_hash, client_id, account_id, redirect_uri, code_challenge, grant_json, created_at, expires_at, used_at, key_id";

fn corrupt(what: &str, why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {why}"))
}

fn app_from_row(row: &impl Columns) -> StoreResult<AppRecord> {
    let client_id: String = row.get("client_id", "app row")?;
    let what = client_id.as_str();
    let redirect_uris: Vec<String> =
        serde_json::from_str(&row.get::<String>("redirect_uris", what)?).map_err(|e| corrupt(what, e))?;
    let max_permissions =
        Permissions::parse_list(&row.get::<String>("max_permissions", what)?).map_err(|e| corrupt(what, e))?;
    let client_kind = ClientKind::parse(&row.get::<String>("client_kind", what)?).map_err(|e| corrupt(what, e))?;
    let secret_sha256 = row.get::<Option<Vec<u8>>>("secret_sha256", what)?.map(|b| hash32(b, what)).transpose()?;
    let status =
        AppStatus::parse(&row.get::<String>("status", what)?).ok_or_else(|| corrupt(what, "unknown status"))?;
    Ok(AppRecord {
        name: row.get("name", what)?,
        homepage: row.get("homepage", what)?,
        publisher_domain: row.get("publisher_domain", what)?,
        redirect_uris,
        max_permissions,
        client_kind,
        secret_sha256,
        verified: row.get::<i64>("verified", what)? == 1,
        logo_url: row.get("logo_url", what)?,
        status,
        registered_by_account: row.get::<Option<i64>>("registered_by_account", what)?.map(AccountId),
        created_at: from_db_time(row.get("created_at", what)?, what)?,
        created_by: row.get("created_by", what)?,
        updated_at: from_db_time(row.get("updated_at", what)?, what)?,
        client_id,
    })
}

fn code_from_row(row: &impl Columns) -> StoreResult<CodeRecord> {
    const WHAT: &str = "authorization code";
    let key_id = row
        .get::<Option<String>>("key_id", WHAT)?
        .map(|k| ApiKeyId::parse(&k).map_err(|e| corrupt(WHAT, e)))
        .transpose()?;
    Ok(CodeRecord {
        code_hash: hash32(row.get("code_hash", WHAT)?, WHAT)?,
        client_id: row.get("client_id", WHAT)?,
        account_id: AccountId(row.get("account_id", WHAT)?),
        redirect_uri: row.get("redirect_uri", WHAT)?,
        code_challenge: row.get("code_challenge", WHAT)?,
        grant_json: row.get("grant_json", WHAT)?,
        created_at: from_db_time(row.get("created_at", WHAT)?, WHAT)?,
        expires_at: from_db_time(row.get("expires_at", WHAT)?, WHAT)?,
        used_at: row.get::<Option<i64>>("used_at", WHAT)?.map(|t| from_db_time(t, WHAT)).transpose()?,
        key_id,
    })
}

fn uris_text(app: &AppRecord) -> StoreResult<String> {
    serde_json::to_string(&app.redirect_uris).map_err(|e| corrupt(&app.client_id, e))
}

#[async_trait]
impl<D: Dialect> AppStore for SqlStore<D> {
    async fn insert_app(&self, app: &AppRecord, audit: AuditDraft) -> StoreResult<()> {
        let what = app.client_id.as_str();
        let (uris, perms) = (uris_text(app)?, app.max_permissions.to_string());
        let mut tx = self.begin().await?;
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO apps (client_id, name, homepage, publisher_domain, redirect_uris, max_permissions, \
                 client_kind, secret_sha256, verified, logo_url, status, registered_by_account, created_at, \
                 created_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .arg(what)
            .arg(&app.name)
            .arg(&app.homepage)
            .arg(&app.publisher_domain)
            .arg(&uris)
            .arg(&perms)
            .arg(app.client_kind.as_str())
            .arg(app.secret_sha256.as_ref().map(|h| &h[..]))
            .arg(i64::from(app.verified))
            .arg(app.logo_url.as_deref())
            .arg(app.status.as_str())
            .arg(app.registered_by_account.map(|a| a.0))
            .arg(to_db_time(app.created_at, what)?)
            .arg(&app.created_by)
            .arg(to_db_time(app.updated_at, what)?),
        )
        .await
        .map_err(|e| name_violation(e, &format_args!("app {what}"), &"registering account"))?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_app(&self, client_id: &str) -> StoreResult<Option<AppRecord>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps WHERE client_id = $1");
        self.read_optional(stmt(sql).arg(client_id)).await?.as_ref().map(app_from_row).transpose()
    }

    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
        let sql = format!("SELECT {APP_COLUMNS} FROM apps ORDER BY created_at, client_id");
        self.read_all(stmt(sql)).await?.iter().map(app_from_row).collect()
    }

    async fn update_app(&self, app: &AppRecord, audit: AuditDraft) -> StoreResult<()> {
        let what = app.client_id.as_str();
        let (uris, perms) = (uris_text(app)?, app.max_permissions.to_string());
        let mut tx = self.begin().await?;
        let done = D::Db::run(
            &mut tx,
            stmt(
                "UPDATE apps SET name = $1, homepage = $2, publisher_domain = $3, redirect_uris = $4, \
                 max_permissions = $5, verified = $6, logo_url = $7, status = $8, updated_at = $9 \
                 WHERE client_id = $10",
            )
            .arg(&app.name)
            .arg(&app.homepage)
            .arg(&app.publisher_domain)
            .arg(&uris)
            .arg(&perms)
            .arg(i64::from(app.verified))
            .arg(app.logo_url.as_deref())
            .arg(app.status.as_str())
            .arg(to_db_time(app.updated_at, what)?)
            .arg(what),
        )
        .await?;
        if done == 0 {
            return Err(StoreError::NotFound(format!("app {what}")));
        }
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_code(&self, code: &CodeRecord, audit: AuditDraft) -> StoreResult<()> {
        const WHAT: &str = "authorization code";
        let mut tx = self.begin().await?;
        D::Db::run(
            &mut tx,
            stmt(
                "INSERT INTO oauth_codes (code_hash, client_id, account_id, redirect_uri, code_challenge, grant_json, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .arg(&code.code_hash[..])
            .arg(&code.client_id)
            .arg(code.account_id.0)
            .arg(&code.redirect_uri)
            .arg(&code.code_challenge)
            .arg(&code.grant_json)
            .arg(to_db_time(code.created_at, WHAT)?)
            .arg(to_db_time(code.expires_at, WHAT)?),
        )
        .await
        .map_err(|e| name_violation(e, &"authorization code", &format_args!("app {}", code.client_id)))?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_code(&self, code_hash: &[u8; 32]) -> StoreResult<Option<CodeRecord>> {
        let sql = format!("SELECT {CODE_COLUMNS} FROM oauth_codes WHERE code_hash = $1");
        self.read_optional(stmt(sql).arg(&code_hash[..])).await?.as_ref().map(code_from_row).transpose()
    }

    async fn redeem_code(&self, code_hash: &[u8; 32], at: UnixMillis, key_id: &ApiKeyId) -> StoreResult<bool> {
        let done = self
            .write_one(
                stmt("UPDATE oauth_codes SET used_at = $1, key_id = $2 WHERE code_hash = $3 AND used_at IS NULL")
                    .arg(to_db_time(at, "authorization code")?)
                    .arg(key_id.as_str())
                    .arg(&code_hash[..]),
            )
            .await?;
        Ok(done == 1)
    }

    async fn expire_codes(&self, client_id: &str, account: Option<AccountId>, at: UnixMillis) -> StoreResult<u64> {
        let at = to_db_time(at, "authorization code")?;
        let q = match account {
            Some(a) => stmt(
                "UPDATE oauth_codes SET expires_at = $1 WHERE client_id = $2 AND account_id = $3 AND expires_at > $1",
            )
            .arg(at)
            .arg(client_id)
            .arg(a.0),
            None => stmt("UPDATE oauth_codes SET expires_at = $1 WHERE client_id = $2 AND expires_at > $1")
                .arg(at)
                .arg(client_id),
        };
        self.write_one(q).await
    }

    async fn purge_codes(&self, expired_before: UnixMillis) -> StoreResult<u64> {
        let before = to_db_time(expired_before, "authorization code")?;
        self.write_one(stmt("DELETE FROM oauth_codes WHERE expires_at < $1").arg(before)).await
    }

    async fn app_key_ids(&self, client_id: &str) -> StoreResult<Vec<ApiKeyId>> {
        let rows = self.read_all(stmt("SELECT id FROM api_keys WHERE app_id = $1 ORDER BY id").arg(client_id)).await?;
        rows.iter()
            .map(|r| {
                let id: String = r.get("id", "app key")?;
                ApiKeyId::parse(&id).map_err(|e| corrupt(&id, e))
            })
            .collect()
    }

    async fn set_app_developer(
        &self,
        account: AccountId,
        allowed: bool,
        at: UnixMillis,
        audit: AuditDraft,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let s = if allowed {
            stmt(
                "INSERT INTO app_developers (account_id, allowed_at) VALUES ($1, $2) \
                 ON CONFLICT (account_id) DO NOTHING",
            )
            .arg(account.0)
            .arg(to_db_time(at, "app developer")?)
        } else {
            stmt("DELETE FROM app_developers WHERE account_id = $1").arg(account.0)
        };
        D::Db::run(&mut tx, s)
            .await
            .map_err(|e| name_violation(e, &"app developer", &format_args!("account {account}")))?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn is_app_developer(&self, account: AccountId) -> StoreResult<bool> {
        let row = self
            .read_optional(stmt("SELECT 1 AS one FROM app_developers WHERE account_id = $1").arg(account.0))
            .await?;
        Ok(row.is_some())
    }
}
