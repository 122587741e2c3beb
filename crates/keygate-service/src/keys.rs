//! API key operations and DESIGN.md section 3's rules on who may do what.
//!
//! * Owners act only on their own account's keys; another account's key is "not found".
//! * Owners need a step-up (fresh TOTP) to create a key with `trade` or `withdraw`, to widen a key
//!   (a permission, an IP range, a withdrawal address, a later expiry, more symbols, a higher
//!   limit) and to revoke all keys. Narrowing and revoking one key never need it: making a key
//!   safer must always be easy.
//! * Two changes need more than the step-up window (issue #18): giving a key `withdraw` (creating
//!   a withdraw key, widening a key to it, re-enabling a withdraw key) and adding a withdrawal
//!   address need a 2FA code typed with the same request ([`Actor::has_fresh_code`]). A session
//!   left open for five minutes after a step-up is not enough to send money out.
//! * An IP range wider than /16 (IPv4) or /48 (IPv6) on an owner's trade or withdraw key needs the
//!   owner's explicit confirmation ([`NewKey::confirm_wide_ip`], [`KeyEdit::confirm_wide_ip`]):
//!   such a range lets in a large part of the internet (issue #18).
//! * Operators and the system skip the step-up; their changes are audited and marked on the key.
//! * `withdraw` always needs an IP allowlist, for every actor.
//! * A revoked key never changes again.
//! * An owner giving a key `withdraw`, or adding a withdrawal address, starts a withdrawal hold on
//!   that key or address (see `holds.rs`); narrowing or revoking ends the holds it makes moot.

use crate::holds::HoldChange;
use crate::view::{CreatedKey, KeyView};
use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult};
use keygate_auth::{
    ApiKeyId, HmacSecret, IpAllowlist, KeyStatus, Permission, Permissions, PublicKey, Restrictions, WithdrawLimit,
};
use keygate_proto::{Symbol, UnixMillis};
use keygate_store::{AuditDraft, KeyMaterial, KeyRecord, StoreError};
use sha2::Digest as _;

/// How many of an account's newest audit records [`Service::create_key_once`] looks through for
/// a form token already used: a form refreshed after this many other recorded actions of the
/// account would create its key again.
pub const FORM_TOKEN_LOOKBACK: u32 = 1_000;

/// What [`Service::create_key_once`] did.
#[derive(Debug)]
pub enum CreatedOnce {
    /// A new key (with its secret, for HMAC keys: shown once).
    Created(CreatedKey),
    /// The form token had already created this key: nothing new, and no secret.
    AlreadyCreated(KeyView),
}

/// Most keys one account may hold (revoked ones excluded).
pub const MAX_KEYS_PER_ACCOUNT: usize = 100;

/// The signing material for a new key.
#[derive(Debug, Clone)]
pub enum NewKeyMaterial {
    /// Generate an HMAC secret (returned once).
    Hmac,
    /// Register an Ed25519 public key (PEM or base64).
    Ed25519(String),
    /// Register an RSA public key (PEM).
    Rsa(String),
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The owning account's name.
    pub account: String,
    /// A label for the owner.
    pub label: String,
    /// Signing material.
    pub material: NewKeyMaterial,
    /// Permissions (`read` implied).
    pub permissions: Permissions,
    /// Restrictions.
    pub restrictions: Restrictions,
    /// The owner confirmed IP ranges wider than /16 (IPv4) or /48 (IPv6) on a key that can trade
    /// or withdraw (see [`wide_ip_ranges`]); without it such a key is refused for owners.
    pub confirm_wide_ip: bool,
}

/// Widest IPv4 range an owner's trade or withdraw key takes without a confirmation.
pub const WIDE_IPV4_PREFIX: u8 = 16;
/// Widest IPv6 range an owner's trade or withdraw key takes without a confirmation.
pub const WIDE_IPV6_PREFIX: u8 = 48;

/// The entries of `list` wider than /16 (IPv4) or /48 (IPv6): each lets in more than 65,536
/// addresses (a /48 is one site), which is rarely what a key for one bot or server means.
#[must_use]
pub fn wide_ip_ranges(list: &IpAllowlist) -> Vec<ipnet::IpNet> {
    list.nets()
        .iter()
        .filter(|n| match n {
            ipnet::IpNet::V4(v4) => v4.prefix_len() < WIDE_IPV4_PREFIX,
            ipnet::IpNet::V6(v6) => v6.prefix_len() < WIDE_IPV6_PREFIX,
        })
        .copied()
        .collect()
}

/// Refuses an owner's trade or withdraw key with wide IP ranges the owner did not confirm. Only
/// what the change brings needs the confirmation: a wide range not on the key `before`, or a key
/// with wide ranges that starts to trade or withdraw; a confirmed range stays without asking again.
fn check_wide_ranges(
    actor: &Actor,
    before: Option<(Permissions, &IpAllowlist)>,
    permissions: Permissions,
    list: &IpAllowlist,
    confirmed: bool,
) -> ServiceResult<()> {
    let money = |p: Permissions| p.contains(Permission::Trade) || p.contains(Permission::Withdraw);
    if !matches!(actor, Actor::Owner { .. }) || !money(permissions) || confirmed {
        return Ok(());
    }
    let new: Vec<ipnet::IpNet> = match before {
        Some((p, old)) if money(p) => wide_ip_ranges(list).into_iter().filter(|n| !old.nets().contains(n)).collect(),
        _ => wide_ip_ranges(list),
    };
    if new.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = new.iter().map(ToString::to_string).collect();
    Err(ServiceError::Invalid(format!(
        "{} {} more than a /{WIDE_IPV4_PREFIX} (IPv4) or /{WIDE_IPV6_PREFIX} (IPv6) of addresses use a key that can \
         trade or withdraw; tick the confirmation to keep {}, or narrow {} to the addresses your bot uses",
        names.join(", "),
        if names.len() == 1 { "lets" } else { "let" },
        if names.len() == 1 { "it" } else { "them" },
        if names.len() == 1 { "it" } else { "them" },
    )))
}

/// How often a key write is tried again after another request changed the key between the
/// read and the write (several nodes; see [`keygate_store::KeyStore::update_key_if`]).
const STALE_RETRIES: usize = 5;

/// Changes to a key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KeyEdit {
    /// New label.
    pub label: Option<String>,
    /// New permission set.
    pub permissions: Option<Permissions>,
    /// New IP allowlist (empty: any address).
    pub ip_allowlist: Option<IpAllowlist>,
    /// New expiry (`Some(None)` removes it).
    pub expires_at: Option<Option<UnixMillis>>,
    /// New symbol allowlist (empty: all).
    pub symbols: Option<Vec<Symbol>>,
    /// New withdrawal addresses (empty: none).
    pub withdraw_addresses: Option<Vec<String>>,
    /// New withdrawal limit (`Some(None)` removes it).
    pub withdraw_limit_24h: Option<Option<WithdrawLimit>>,
    /// Enable (`Active`) or disable (`Disabled`); use revoke to revoke.
    pub status: Option<KeyStatus>,
    /// The owner confirmed IP ranges wider than /16 or /48 on a key that can trade or withdraw
    /// (see [`NewKey::confirm_wide_ip`]); needed when the edit adds such a range, or gives a key
    /// that has one `trade` or `withdraw`.
    pub confirm_wide_ip: bool,
}

/// The notice a key's re-confirmation after the change at `since` is recorded under.
fn reconfirm_notice(since: UnixMillis) -> String {
    format!("reconfirmed:{}", since.0)
}

/// The withdraw-key expiry policy ([`crate::policy::KeyPolicy::withdraw_max_days`]): a key that
/// can withdraw must expire within that many days. A key given `withdraw` (created, or widened
/// from a key that could not) without an expiry gets the longest allowed, shown on the key; an
/// expiry set or moved later than that is refused. A key that could already withdraw keeps the
/// expiry it has while other things about it change.
fn withdraw_expiry(
    policy: &crate::policy::KeyPolicy,
    permissions: Permissions,
    r: &mut Restrictions,
    before: Option<&KeyRecord>,
    now: UnixMillis,
) -> ServiceResult<()> {
    let Some(days) = policy.withdraw_max_days else { return Ok(()) };
    if !permissions.contains(Permission::Withdraw) {
        return Ok(());
    }
    let latest = now.plus_millis(u64::from(days) * crate::policy::DAY_MS);
    let could = before.is_some_and(|b| b.permissions.contains(Permission::Withdraw));
    let unchanged = before.is_some_and(|b| b.restrictions.expires_at == r.expires_at);
    match r.expires_at {
        None if could && unchanged => Ok(()),
        None => {
            r.expires_at = Some(latest);
            Ok(())
        }
        Some(at) if at > latest && !(could && unchanged) => Err(ServiceError::Invalid(format!(
            "a key that can withdraw must expire within {days} days (the key policy); choose an earlier expiry"
        ))),
        Some(_) => Ok(()),
    }
}

pub(crate) fn check_label(label: &str) -> ServiceResult<()> {
    if label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(ServiceError::Invalid("the label must be at most 64 printable characters".into()));
    }
    Ok(())
}

/// The rules every key must satisfy, whoever changes it.
pub(crate) fn check_key_rules(permissions: Permissions, r: &Restrictions, now: UnixMillis) -> ServiceResult<()> {
    r.validate().map_err(|e| ServiceError::Invalid(e.to_string()))?;
    if permissions.contains(Permission::Withdraw) && r.ip_allowlist.is_empty() {
        return Err(ServiceError::Invalid(
            "the withdraw permission needs an IP allowlist: add --ip with the addresses that may withdraw".into(),
        ));
    }
    if permissions.contains(Permission::Withdraw) && r.withdraw_addresses.is_empty() {
        // No address on the allowlist allows no withdrawal: refused at once rather than at the
        // first withdrawal, as the console's form says.
        return Err(ServiceError::Invalid(
            "the withdraw permission needs at least one withdrawal address: add --withdraw-address".into(),
        ));
    }
    if r.expires_at.is_some_and(|e| e <= now) {
        return Err(ServiceError::Invalid("the expiry must be in the future".into()));
    }
    Ok(())
}

/// The refusal of a change that needs a 2FA code typed with it (issue #18).
fn fresh_code_required(what: &str) -> ServiceError {
    ServiceError::StepUpRequired(format!(
        "{what} needs the 2FA code from your authenticator app typed with this change; \
         a step-up a few minutes ago is not enough for it"
    ))
}

/// Adds `withdrawal_holds: {started, cancelled}` to an audit record's details when the change
/// started or ended a withdrawal hold, so every hold's start and end is in the audit log, in the
/// record of the change that caused it.
fn with_holds(details: &mut serde_json::Value, holds: &HoldChange) {
    if !holds.is_empty()
        && let Some(map) = details.as_object_mut()
    {
        map.insert("withdrawal_holds".into(), serde_json::json!(holds));
    }
}

impl Service {
    /// The policy of issue #6: an owner without 2FA cannot hold a key that trades or withdraws
    /// (creating one, or adding either permission to a key). Operators and the system are
    /// unaffected; [`crate::ServiceConfig::require_2fa_for_trading_keys`] switches it off.
    async fn check_trading_needs_2fa(
        &self,
        actor: &Actor,
        account: keygate_auth::AccountId,
        after: Permissions,
        before: Permissions,
    ) -> ServiceResult<()> {
        let adds_money_moving =
            [Permission::Trade, Permission::Withdraw].into_iter().any(|p| after.contains(p) && !before.contains(p));
        if matches!(actor, Actor::Owner { .. })
            && self.inner.config.require_2fa_for_trading_keys
            && adds_money_moving
            && !self.two_factor_enabled(account).await?
        {
            return Err(ServiceError::Forbidden(
                "keys that can trade or withdraw need 2FA on the account: enable it first".into(),
            ));
        }
        Ok(())
    }

    pub(crate) fn key_audit(
        &self,
        actor: &Actor,
        action: &str,
        key: &KeyRecord,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target: key.id.to_string(),
            account_id: Some(key.account_id),
            source: actor.source(),
            details,
        }
    }

    /// Creates a key. For HMAC keys the secret is in the result, and nowhere else, ever again.
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`] for an owner granting trade/withdraw without step-up;
    /// [`ServiceError::Invalid`] for unreadable public keys, withdraw without IP allowlist, a past
    /// expiry or bad restrictions; [`ServiceError::NotFound`] for an unknown account.
    pub async fn create_key(&self, actor: &Actor, new: NewKey) -> ServiceResult<CreatedKey> {
        match self.create_key_with(actor, new, None).await? {
            CreatedOnce::Created(created) => Ok(created),
            CreatedOnce::AlreadyCreated(view) => Err(ServiceError::Internal(format!(
                "key {} reported as created before without a form token",
                view.api_key
            ))),
        }
    }

    /// [`Service::create_key`] for a form that carries a one-time `form_token` (issue #18): the
    /// first request with the token creates the key and records the token's hash in the
    /// `key.create` audit record; any later request with it (a refresh of the answer, a second
    /// click) creates nothing and gets [`CreatedOnce::AlreadyCreated`] with that key, never its
    /// secret again. The token is looked for among the account's newest
    /// [`FORM_TOKEN_LOOKBACK`] audit records, in the store, so the answer holds on every node.
    ///
    /// # Errors
    /// As [`Service::create_key`]; [`ServiceError::Invalid`] for a token that is not 16 to 128
    /// characters of `A-Z a-z 0-9 - _`.
    pub async fn create_key_once(&self, actor: &Actor, new: NewKey, form_token: &str) -> ServiceResult<CreatedOnce> {
        let ok = (16..=128).contains(&form_token.len())
            && form_token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(ServiceError::Invalid("the form's one-time token is malformed; reload the page".into()));
        }
        let hash = hex::encode(&sha2::Sha256::digest(form_token.as_bytes())[..16]);
        self.create_key_with(actor, new, Some(hash)).await
    }

    /// The key an earlier send of the create form with `form_token` made on the actor's own
    /// account, if any: a read, for the console to say "already created" to a browser that
    /// re-sends a form whose session has rotated since (a step-up renews the session, and with it
    /// the form's CSRF token).
    ///
    /// # Errors
    /// [`ServiceError::Store`] when the audit log cannot be read.
    pub async fn key_created_by_form(&self, actor: &Actor, form_token: &str) -> ServiceResult<Option<KeyView>> {
        let Actor::Owner { account_id, .. } = actor else {
            return Ok(None);
        };
        let hash = hex::encode(&sha2::Sha256::digest(form_token.as_bytes())[..16]);
        let records = self.inner.store.audit_records_newest(i64::MAX, FORM_TOKEN_LOOKBACK, Some(*account_id)).await?;
        match records
            .iter()
            .find(|r| r.draft.action == "key.create" && r.draft.details["form_token"].as_str() == Some(&hash))
        {
            Some(r) => Ok(self.key(actor, &r.draft.target).await.ok()),
            None => Ok(None),
        }
    }

    async fn create_key_with(
        &self,
        actor: &Actor,
        mut new: NewKey,
        form_token: Option<String>,
    ) -> ServiceResult<CreatedOnce> {
        new.restrictions.dedup();
        let _writing = self.inner.key_writes.lock().await;
        let account = self.account_record(actor, &new.account).await?;
        if let Some(token) = &form_token {
            let records =
                self.inner.store.audit_records_newest(i64::MAX, FORM_TOKEN_LOOKBACK, Some(account.id)).await?;
            let made = records
                .iter()
                .find(|r| r.draft.action == "key.create" && r.draft.details["form_token"].as_str() == Some(token));
            if let Some(r) = made {
                return Ok(CreatedOnce::AlreadyCreated(self.key(actor, &r.draft.target).await?));
            }
        }
        let now = self.now_ms();
        check_label(&new.label)?;
        check_key_rules(new.permissions, &new.restrictions, now)?;
        check_wide_ranges(actor, None, new.permissions, &new.restrictions.ip_allowlist, new.confirm_wide_ip)?;
        self.check_trading_needs_2fa(actor, account.id, new.permissions, Permissions::READ_ONLY).await?;
        if new.permissions.contains(Permission::Withdraw) && !actor.has_fresh_code(now) {
            return Err(fresh_code_required("creating a key that can withdraw"));
        }
        if !new.restrictions.withdraw_addresses.is_empty() && !actor.has_fresh_code(now) {
            return Err(fresh_code_required("a key with withdrawal addresses"));
        }
        if new.permissions.widens(Permissions::READ_ONLY) && !actor.stepped_up(now) {
            return Err(ServiceError::StepUpRequired("creating a key that can trade or withdraw".into()));
        }
        let policy = self.check_key_room(account.id, &account.name).await?;
        withdraw_expiry(&policy, new.permissions, &mut new.restrictions, None, now)?;
        let (material, secret) = match &new.material {
            NewKeyMaterial::Hmac => {
                let secret = HmacSecret::generate(&mut OsEntropy)?;
                (KeyMaterial::Hmac(secret.clone()), Some(secret))
            }
            NewKeyMaterial::Ed25519(text) => (
                KeyMaterial::Public(PublicKey::parse_ed25519(text).map_err(|e| ServiceError::Invalid(e.to_string()))?),
                None,
            ),
            NewKeyMaterial::Rsa(text) => (
                KeyMaterial::Public(PublicKey::parse_rsa(text).map_err(|e| ServiceError::Invalid(e.to_string()))?),
                None,
            ),
        };
        let mut record = KeyRecord {
            id: ApiKeyId::generate(&mut OsEntropy)?,
            account_id: account.id,
            label: new.label.clone(),
            material,
            permissions: new.permissions,
            restrictions: new.restrictions.clone(),
            status: KeyStatus::Active,
            status_reason: None,
            created_at: now,
            created_by: actor.kind().into(),
            updated_at: now,
            updated_by: actor.kind().into(),
            last_used_at: None,
            last_used_ip: None,
            use_count: 0,
            withdrawal_holds: keygate_store::WithdrawalHolds::default(),
            app_id: None,
        };
        let holds = self.apply_holds(actor, None, &mut record, now);
        let mut details = serde_json::json!({
            "label": record.label,
            "type": record.material.key_type(),
            "permissions": record.permissions,
            "restrictions": record.restrictions,
        });
        with_holds(&mut details, &holds);
        if let (Some(token), Some(map)) = (form_token, details.as_object_mut()) {
            map.insert("form_token".into(), serde_json::Value::String(token));
        }
        let audit = self.key_audit(actor, "key.create", &record, details);
        self.inner.store.insert_key(&record, audit).await?;
        self.inner.cache.upsert(&record)?;
        Ok(CreatedOnce::Created(CreatedKey { key: KeyView::new(&record, &account.name), secret }))
    }

    /// Refuses a new key for the account once it holds as many live keys as its key policy
    /// allows (at most [`MAX_KEYS_PER_ACCOUNT`]), whoever asks: the owner, the operator, or an
    /// app the owner connects. Returns the account's effective policy.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming the limit; store failures.
    pub(crate) async fn check_key_room(
        &self,
        account: keygate_auth::AccountId,
        name: &str,
    ) -> ServiceResult<crate::policy::KeyPolicy> {
        let live =
            self.inner.store.list_keys(Some(account)).await?.iter().filter(|k| k.status != KeyStatus::Revoked).count();
        let policy = self.effective_key_policy(account).await?;
        let max = usize::try_from(policy.max_keys).unwrap_or(usize::MAX).min(MAX_KEYS_PER_ACCOUNT);
        if live >= max {
            let keys = if max == 1 { "key" } else { "keys" };
            return Err(ServiceError::Invalid(format!(
                "account {name} already has {max} {keys}, the most its key policy allows; revoke unused ones first"
            )));
        }
        Ok(policy)
    }

    async fn key_record(&self, actor: &Actor, id: &str) -> ServiceResult<KeyRecord> {
        let not_found = || ServiceError::NotFound(format!("key {id}"));
        let id = ApiKeyId::parse(id).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let rec = self.inner.store.get_key(&id).await?.ok_or_else(not_found)?;
        if let Actor::Owner { account_id, .. } = actor
            && *account_id != rec.account_id
        {
            return Err(not_found());
        }
        Ok(rec)
    }

    /// When a key was last used, as last recorded (usage is written in batches, every few
    /// seconds), for the key itself to report in `apiRestrictions`: a key holder's check flags
    /// keys never or long unused. Only the key's own signed request reaches this, so it needs no
    /// actor.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown key; store failures.
    pub async fn key_last_used(&self, id: &ApiKeyId) -> ServiceResult<Option<UnixMillis>> {
        let rec = self.inner.store.get_key(id).await?.ok_or_else(|| ServiceError::NotFound(format!("key {id}")))?;
        Ok(rec.last_used_at)
    }

    /// One key.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when missing or not `actor`'s.
    pub async fn key(&self, actor: &Actor, id: &str) -> ServiceResult<KeyView> {
        let rec = self.key_record(actor, id).await?;
        let policy = self.effective_key_policy(rec.account_id).await?;
        let pending = self.pending_reconfirmation(rec.account_id).await?;
        let mut view = KeyView::new(&rec, &self.account_name(rec.account_id).await?);
        view.policy_deadline = self.key_deadline(&rec, &policy, pending.as_ref()).await?;
        Ok(view)
    }

    /// Keys of one account (by name), or of every account for operators when `account` is None.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn list_keys(&self, actor: &Actor, account: Option<&str>) -> ServiceResult<Vec<KeyView>> {
        let filter = match (actor, account) {
            (_, Some(name)) => Some(self.account_record(actor, name).await?.id),
            (Actor::Owner { account_id, .. }, None) => Some(*account_id),
            (_, None) => None,
        };
        let accounts = self.inner.store.list_accounts().await?;
        let name_of = |id| accounts.iter().find(|a| a.id == id).map_or_else(|| format!("#{id}"), |a| a.name.clone());
        let mut policies = rustc_hash::FxHashMap::default();
        let mut views = Vec::new();
        for k in self.inner.store.list_keys(filter).await? {
            let (policy, pending) = match policies.get(&k.account_id) {
                Some(p) => p,
                None => {
                    let p = (
                        self.effective_key_policy(k.account_id).await?,
                        self.pending_reconfirmation(k.account_id).await?,
                    );
                    policies.entry(k.account_id).or_insert(p)
                }
            };
            let mut view = KeyView::new(&k, &name_of(k.account_id));
            view.policy_deadline = self.key_deadline(&k, policy, pending.as_ref()).await?;
            views.push(view);
        }
        Ok(views)
    }

    /// Changes a key.
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`] when an owner widens the key without step-up;
    /// [`ServiceError::Invalid`] for a revoked key, bad values or a rule violation.
    pub async fn edit_key(&self, actor: &Actor, id: &str, edit: KeyEdit) -> ServiceResult<KeyView> {
        let _writing = self.inner.key_writes.lock().await;
        // Another node may change the key between our read and our write: the write is then
        // refused (compare-and-swap) and the edit applied again to what is stored now.
        for _ in 0..STALE_RETRIES {
            if let Some(view) = self.edit_key_once(actor, id, edit.clone()).await? {
                return Ok(view);
            }
        }
        Err(ServiceError::Conflict(format!("key {id} kept changing while it was edited; try again")))
    }

    /// One attempt of [`Service::edit_key`]; `None` when the key changed meanwhile.
    async fn edit_key_once(&self, actor: &Actor, id: &str, edit: KeyEdit) -> ServiceResult<Option<KeyView>> {
        let before = self.key_record(actor, id).await?;
        if before.status == KeyStatus::Revoked {
            return Err(ServiceError::Invalid(format!("key {id} is revoked; revoked keys cannot be changed")));
        }
        let now = self.now_ms();
        let mut after = before.clone();
        if let Some(label) = edit.label {
            check_label(&label)?;
            after.label = label;
        }
        if let Some(p) = edit.permissions {
            after.permissions = p;
        }
        let r = &mut after.restrictions;
        if let Some(v) = edit.ip_allowlist {
            r.ip_allowlist = v;
        }
        if let Some(v) = edit.expires_at {
            r.expires_at = v;
        }
        if let Some(v) = edit.symbols {
            r.symbols = v;
        }
        if let Some(v) = edit.withdraw_addresses {
            r.withdraw_addresses = v;
        }
        if let Some(v) = edit.withdraw_limit_24h {
            r.withdraw_limit_24h = v;
        }
        match edit.status {
            None => {}
            Some(s @ (KeyStatus::Active | KeyStatus::Disabled)) => after.status = s,
            Some(other) => {
                return Err(ServiceError::Invalid(format!("a key cannot be set to {}; use revoke", other.as_str())));
            }
        }
        after.restrictions.dedup();
        let policy = self.effective_key_policy(after.account_id).await?;
        // A key held by a connected app never goes beyond what the app was registered for, and
        // never withdraws: widening it is what a fake app would ask its victim to do.
        if let Some(client_id) = &before.app_id
            && after.permissions != before.permissions
        {
            let ceiling = self.inner.store.get_app(client_id).await?.map(|a| a.max_permissions);
            let beyond = after.permissions.contains(Permission::Withdraw)
                || ceiling.is_none_or(|c| after.permissions.iter().any(|p| !c.contains(p)));
            if beyond {
                return Err(ServiceError::Invalid(format!(
                    "key {id} is held by the app {client_id}: it cannot be given more than the app may ask for, \
                     and never withdraw; make a key of your own for that"
                )));
            }
        }
        withdraw_expiry(&policy, after.permissions, &mut after.restrictions, Some(&before), now)?;
        check_key_rules(after.permissions, &after.restrictions, now)?;
        let was = (before.permissions, &before.restrictions.ip_allowlist);
        check_wide_ranges(actor, Some(was), after.permissions, &after.restrictions.ip_allowlist, edit.confirm_wide_ip)?;
        let re_enabled = before.status != KeyStatus::Active && after.status == KeyStatus::Active;
        let withdraw_enabled = after.permissions.contains(Permission::Withdraw)
            && after.status == KeyStatus::Active
            && (!before.permissions.contains(Permission::Withdraw) || re_enabled);
        if withdraw_enabled && !actor.has_fresh_code(now) {
            return Err(fresh_code_required("enabling withdraw on a key"));
        }
        let address_added =
            after.restrictions.withdraw_addresses.iter().any(|a| !before.restrictions.withdraw_addresses.contains(a));
        if address_added && !actor.has_fresh_code(now) {
            return Err(fresh_code_required("adding a withdrawal address"));
        }
        let widened = after.permissions.widens(before.permissions)
            || after.restrictions.widens(&before.restrictions)
            || re_enabled;
        // A disabled key moves nothing: re-enabling one that trades or withdraws needs 2FA as
        // creating it would (keys suspended when 2FA went away stay so until it is back).
        let moved_before = if re_enabled { Permissions::READ_ONLY } else { before.permissions };
        self.check_trading_needs_2fa(actor, after.account_id, after.permissions, moved_before).await?;
        if widened && !actor.stepped_up(now) {
            return Err(ServiceError::StepUpRequired("widening a key's permissions or restrictions".into()));
        }
        after.updated_at = now;
        after.updated_by = actor.kind().into();
        let holds = self.apply_holds(actor, Some(&before), &mut after, now);
        let mut details = serde_json::json!({
            "widened": widened,
            "before": { "label": before.label, "permissions": before.permissions, "restrictions": before.restrictions, "status": before.status },
            "after": { "label": after.label, "permissions": after.permissions, "restrictions": after.restrictions, "status": after.status },
        });
        with_holds(&mut details, &holds);
        let audit = self.key_audit(actor, "key.edit", &after, details);
        match self.inner.store.update_key_if(&after, &before, audit).await {
            Err(StoreError::Stale(_)) => return Ok(None),
            other => other?,
        }
        self.inner.cache.upsert(&after)?;
        Ok(Some(KeyView::new(&after, &self.account_name(after.account_id).await?)))
    }

    /// Revokes a key: the next request signed with it fails. Never needs a step-up.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when missing or not `actor`'s.
    pub async fn revoke_key(&self, actor: &Actor, id: &str) -> ServiceResult<KeyView> {
        let _writing = self.inner.key_writes.lock().await;
        self.revoke_locked(actor, id).await
    }

    /// Revokes with the key-write lock already held.
    async fn revoke_locked(&self, actor: &Actor, id: &str) -> ServiceResult<KeyView> {
        self.revoke_as(actor, id, "key.revoke", serde_json::Map::new()).await.map(|(view, _)| view)
    }

    /// Revokes a key reported leaked (issue #17): audited as [`crate::webhooks::LEAKED_ACTION`]
    /// with `details` (where it was found), which the owner is told about. Returns the key and
    /// whether this call revoked it (false: it was revoked already; nothing is written then).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown key.
    pub(crate) async fn revoke_leaked(
        &self,
        actor: &Actor,
        id: &str,
        details: serde_json::Map<String, serde_json::Value>,
    ) -> ServiceResult<(KeyView, bool)> {
        let _writing = self.inner.key_writes.lock().await;
        self.revoke_as(actor, id, crate::webhooks::LEAKED_ACTION, details).await
    }

    /// Revokes `id` with an audit record of `action` carrying `extra` details besides the label.
    pub(crate) async fn revoke_as(
        &self,
        actor: &Actor,
        id: &str,
        action: &str,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> ServiceResult<(KeyView, bool)> {
        // A revocation always wins: when the key changed meanwhile (another node), read it again
        // and revoke what is stored now.
        for _ in 0..STALE_RETRIES {
            let before = self.key_record(actor, id).await?;
            let mut rec = before.clone();
            if rec.status != KeyStatus::Revoked {
                rec.status = KeyStatus::Revoked;
                rec.updated_at = self.now_ms();
                rec.updated_by = actor.kind().into();
                let holds = Self::holds_ended_by_revocation(&rec, rec.updated_at);
                let mut details = serde_json::json!({ "label": rec.label });
                if let Some(map) = details.as_object_mut() {
                    map.extend(extra.clone());
                }
                with_holds(&mut details, &holds);
                let audit = self.key_audit(actor, action, &rec, details);
                match self.inner.store.update_key_if(&rec, &before, audit).await {
                    Err(StoreError::Stale(_)) => continue,
                    // Revoked meanwhile by someone else: what was asked is done.
                    Err(StoreError::Conflict(_)) => continue,
                    other => other?,
                }
                self.inner.cache.upsert(&rec)?;
                return Ok((KeyView::new(&rec, &self.account_name(rec.account_id).await?), true));
            }
            return Ok((KeyView::new(&rec, &self.account_name(rec.account_id).await?), false));
        }
        Err(ServiceError::Conflict(format!("key {id} kept changing while it was revoked; try again")))
    }

    /// Revokes every key of an account; an owner needs a step-up (DESIGN.md section 3).
    ///
    /// # Errors
    /// [`ServiceError::StepUpRequired`], [`ServiceError::NotFound`].
    pub async fn revoke_all_keys(&self, actor: &Actor, account: &str) -> ServiceResult<usize> {
        let acc = self.account_record(actor, account).await?;
        if !actor.stepped_up(self.now_ms()) {
            return Err(ServiceError::StepUpRequired("revoking all keys".into()));
        }
        let _writing = self.inner.key_writes.lock().await;
        let mut n = 0;
        for k in self.inner.store.list_keys(Some(acc.id)).await? {
            if k.status != KeyStatus::Revoked {
                self.revoke_locked(actor, k.id.as_str()).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Suspends (disables) every active key of `account` that may trade or withdraw, each with a
    /// `key.suspend` audit record naming `reason`: with 2FA gone, a stolen password alone must
    /// not be enough to keep using or re-enable them. An owner re-enables a key by editing its
    /// status back to active, which needs a step-up, hence 2FA again. Returns how many.
    ///
    /// Called before the change that causes it is written, so a crash in between leaves keys
    /// suspended with 2FA still on (the safe side), never 2FA off with the keys live.
    ///
    /// With `not_confirmed_since`, only keys not changed by anyone since then are suspended:
    /// the ones the owner did not re-confirm after a password change (see
    /// [`Service::reconfirm_keys`]).
    pub(crate) async fn suspend_trading_keys(
        &self,
        actor: &Actor,
        account: keygate_auth::AccountId,
        reason: &str,
        not_confirmed_since: Option<UnixMillis>,
    ) -> ServiceResult<usize> {
        let _writing = self.inner.key_writes.lock().await;
        let mut n = 0;
        for listed in self.inner.store.list_keys(Some(account)).await? {
            // Suspension must win over a concurrent edit on another node: re-read and retry.
            let mut before = listed;
            for attempt in 0..=STALE_RETRIES {
                let trading =
                    before.permissions.contains(Permission::Trade) || before.permissions.contains(Permission::Withdraw);
                let confirmed = match not_confirmed_since {
                    Some(since) => self.reconfirmed_since(&before, since).await?,
                    None => false,
                };
                if before.status != KeyStatus::Active || !trading || confirmed {
                    break;
                }
                if attempt == STALE_RETRIES {
                    return Err(ServiceError::Conflict(format!("key {} kept changing; try again", before.id)));
                }
                let mut rec = before.clone();
                rec.status = KeyStatus::Disabled;
                rec.status_reason = Some(reason.into());
                rec.updated_at = self.now_ms();
                rec.updated_by = actor.kind().into();
                let audit = self.key_audit(
                    actor,
                    "key.suspend",
                    &rec,
                    serde_json::json!({ "label": rec.label, "reason": reason }),
                );
                match self.inner.store.update_key_if(&rec, &before, audit).await {
                    Err(StoreError::Stale(_) | StoreError::Conflict(_)) => {
                        match self.inner.store.get_key(&before.id).await? {
                            Some(fresh) => before = fresh,
                            None => break,
                        }
                    }
                    other => {
                        other?;
                        self.inner.cache.upsert(&rec)?;
                        n += 1;
                        break;
                    }
                }
            }
        }
        Ok(n)
    }

    /// Records `actor`'s re-confirmation, after the change at `since`, of every active trade and
    /// withdraw key of `account` created before it (`key.reconfirm`, once per key and change).
    /// Only this counts: another edit of the key, which may need no step-up, does not. Returns
    /// how many keys.
    pub(crate) async fn reconfirm_trading_keys(
        &self,
        actor: &Actor,
        account: keygate_auth::AccountId,
        since: UnixMillis,
    ) -> ServiceResult<usize> {
        let mut n = 0;
        for k in self.inner.store.list_keys(Some(account)).await? {
            let trading = k.permissions.contains(Permission::Trade) || k.permissions.contains(Permission::Withdraw);
            if k.status != KeyStatus::Active || !trading || k.created_at >= since {
                continue;
            }
            let audit =
                self.key_audit(actor, "key.reconfirm", &k, serde_json::json!({ "label": k.label, "since": since }));
            if self.inner.store.record_key_notice(&k.id, &reconfirm_notice(since), self.now_ms(), audit).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Whether `key` needs no re-confirmation for the change at `since`: created after it, or
    /// re-confirmed by its owner since.
    pub(crate) async fn reconfirmed_since(&self, key: &KeyRecord, since: UnixMillis) -> ServiceResult<bool> {
        Ok(key.created_at >= since || self.inner.store.key_notice_recorded(&key.id, &reconfirm_notice(since)).await?)
    }

    /// Counts one verified request, verified at `at`, for usage bookkeeping (in memory; see
    /// [`Service::flush`]). The caller passes the time it verified the request with, read from
    /// this service's clock, so a request reads the clock once.
    pub fn record_use(&self, key: &ApiKeyId, ip: std::net::IpAddr, at: UnixMillis) {
        self.inner.usage.record(key, at, ip);
    }

    /// Counts one denied request for the aggregated audit record.
    pub fn record_denial(&self, rejection: &keygate_auth::Rejection, ip: std::net::IpAddr) {
        self.inner.denials.record(rejection, self.now_ms(), ip);
    }

    /// Writes pending usage counters and closed denial aggregates to the store (`all`: also the
    /// current minute's, at shutdown), and at most once a minute deletes ended console sessions.
    ///
    /// # Errors
    /// Storage errors; pending usage is kept for the next flush.
    pub async fn flush(&self, all: bool) -> ServiceResult<()> {
        self.purge_sessions_now_and_then().await?;
        let (deltas, addresses) = self.inner.usage.drain_with_addresses();
        if !deltas.is_empty()
            && let Err(e) = self.inner.store.record_usage(&deltas).await
        {
            self.inner.usage.restore(deltas);
            return Err(e.into());
        }
        if let Err(e) = self.record_key_addresses(addresses).await {
            tracing::warn!(error = %e, "recording the addresses keys were used from failed; the next use retries");
        }
        let mut drafts = self.inner.denials.drain(self.now_ms(), all).into_iter();
        while let Some(draft) = drafts.next() {
            if let Err(e) = self.inner.store.append_audit(draft.clone()).await {
                // Keep what was not written for the next flush: denials are evidence.
                self.inner.denials.restore(std::iter::once(draft).chain(drafts));
                return Err(e.into());
            }
        }
        Ok(())
    }
}
