//! What the service shows of its records: serialisable, secret-free views for the CLI, the admin
//! channel and (later) the console's JSON API.

use keygate_auth::{HmacSecret, IpAllowlist, KeyStatus, KeyType, Permissions, WithdrawLimit};
use keygate_proto::{Symbol, UnixMillis};
use keygate_store::{AccountRecord, AuditRecord, KeyMaterial, KeyRecord};
use serde::{Deserialize, Serialize};

/// An account, without its password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Account id.
    pub id: i64,
    /// Login name.
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    /// Creation time, ms.
    pub created_at: u64,
}

impl From<&AccountRecord> for AccountView {
    fn from(a: &AccountRecord) -> Self {
        Self { id: a.id.0, name: a.name.clone(), status: a.status.as_str().to_owned(), created_at: a.created_at.0 }
    }
}

/// A key as its owner may see it: everything but secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The API key id (public, sent as `X-MBX-APIKEY`).
    pub api_key: String,
    /// Owning account id.
    pub account_id: i64,
    /// Owning account name.
    pub account: String,
    /// The owner's label.
    pub label: String,
    /// `hmac`, `ed25519` or `rsa`.
    #[serde(rename = "type")]
    pub key_type: KeyType,
    /// Granted permissions.
    pub permissions: Permissions,
    /// IP allowlist (empty: any address).
    pub ip_allowlist: IpAllowlist,
    /// Expiry, ms.
    pub expires_at: Option<UnixMillis>,
    /// Symbols it may trade (empty: all).
    pub symbols: Vec<Symbol>,
    /// Addresses it may withdraw to (empty: none).
    pub withdraw_addresses: Vec<String>,
    /// Withdrawal ceiling per 24 h.
    pub withdraw_limit_24h: Option<WithdrawLimit>,
    /// Lifecycle state.
    pub status: KeyStatus,
    /// Why it is not active, when a policy or a security change made it so: `2fa_disabled`,
    /// `2fa_reset`, `password_changed`, `policy:unused`, `policy:unrestricted_idle`, `expired`.
    #[serde(default)]
    pub status_reason: Option<String>,
    /// What a key policy will do to it next, and when (see [`crate::policy`]).
    #[serde(default)]
    pub policy_deadline: Option<crate::policy::PolicyDeadline>,
    /// Creation time, ms.
    pub created_at: UnixMillis,
    /// `owner`, `operator` or `system`.
    pub created_by: String,
    /// Last change time, ms.
    pub updated_at: UnixMillis,
    /// Who made the last change.
    pub updated_by: String,
    /// Last verified request, ms.
    pub last_used_at: Option<UnixMillis>,
    /// Its address.
    pub last_used_ip: Option<String>,
    /// Verified requests so far (flushed about once a second).
    pub use_count: u64,
    /// The registered public key (Ed25519, RSA), PEM.
    pub public_key: Option<String>,
    /// The connected app (client id) holding the key, when it was issued to one through the
    /// OAuth token endpoint (issue #15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
}

impl KeyView {
    /// The view of `k`, owned by `account`.
    #[must_use]
    pub fn new(k: &KeyRecord, account: &str) -> Self {
        Self {
            api_key: k.id.to_string(),
            account_id: k.account_id.0,
            account: account.to_owned(),
            label: k.label.clone(),
            key_type: k.material.key_type(),
            permissions: k.permissions,
            ip_allowlist: k.restrictions.ip_allowlist.clone(),
            expires_at: k.restrictions.expires_at,
            symbols: k.restrictions.symbols.clone(),
            withdraw_addresses: k.restrictions.withdraw_addresses.clone(),
            withdraw_limit_24h: k.restrictions.withdraw_limit_24h.clone(),
            status: k.status,
            status_reason: k.status_reason.clone(),
            policy_deadline: None,
            created_at: k.created_at,
            created_by: k.created_by.clone(),
            updated_at: k.updated_at,
            updated_by: k.updated_by.clone(),
            last_used_at: k.last_used_at,
            last_used_ip: k.last_used_ip.clone(),
            use_count: k.use_count,
            public_key: match &k.material {
                KeyMaterial::Public(p) => Some(p.pem().to_owned()),
                KeyMaterial::Hmac(_) => None,
            },
            app: k.app_id.clone(),
        }
    }
}

/// A newly created key: its view and, for HMAC keys, the secret, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    /// The key.
    #[serde(flatten)]
    pub key: KeyView,
    /// The HMAC secret; `None` for public-key types.
    #[serde(serialize_with = "expose_secret")]
    pub secret: Option<HmacSecret>,
}

// Serialising a CreatedKey is the one sanctioned way the secret leaves the service: to the
// creator, once.
fn expose_secret<S: serde::Serializer>(s: &Option<HmacSecret>, ser: S) -> Result<S::Ok, S::Error> {
    match s {
        Some(secret) => ser.serialize_some(secret.expose()),
        None => ser.serialize_none(),
    }
}

/// An audit record for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditView {
    /// Position in the chain.
    pub seq: i64,
    /// Time, ms.
    pub at: u64,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// To what.
    pub target: String,
    /// From where.
    pub source: Option<String>,
    /// Details.
    pub details: serde_json::Value,
    /// This record's hash, hex.
    pub hash: String,
}

impl From<&AuditRecord> for AuditView {
    fn from(r: &AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: r.draft.at.0,
            actor: r.draft.actor.clone(),
            action: r.draft.action.clone(),
            target: r.draft.target.clone(),
            source: r.draft.source.clone(),
            details: r.draft.details.clone(),
            hash: hex_encode(&r.hash),
        }
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
