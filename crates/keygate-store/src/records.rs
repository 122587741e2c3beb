//! The records the store keeps, as the service layer sees them.

use keygate_auth::{AccountId, ApiKeyId, HmacSecret, KeyStatus, KeyType, Permissions, PublicKey, Restrictions};
use keygate_proto::UnixMillis;
use serde::{Deserialize, Serialize};

/// Whether an account may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountStatus {
    /// Usable.
    Active,
    /// Locked by an operator.
    Disabled,
}

impl AccountStatus {
    /// Lower-case name, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// An account to create.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Unique login name.
    pub name: String,
    /// argon2id PHC string; never the password.
    pub password_hash: String,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRecord {
    /// Store-assigned id.
    pub id: AccountId,
    /// Unique login name.
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Usable or locked.
    pub status: AccountStatus,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Withdrawals are refused until then (set after a password change or 2FA removal, so a
    /// thief who took over the login cannot empty the account at once).
    pub withdrawals_locked_until: Option<UnixMillis>,
    /// Withdrawals of every key are held until then because 2FA was turned on (issue #19: a
    /// thief with the password alone could otherwise enroll their own 2FA and withdraw at once).
    /// Set only by [`crate::Store::enable_two_factor`]; [`crate::Store::update_account`] and
    /// [`crate::Store::update_account_ending_sessions`] leave it as it is, so a writer holding an
    /// older copy of the account can never clear it.
    pub withdrawals_held_until: Option<UnixMillis>,
}

/// A console session. The store never sees the session id, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 of the session id.
    pub id_hash: [u8; 32],
    /// Whose session.
    pub account_id: AccountId,
    /// When the login happened (the absolute timeout counts from here; kept across rotations).
    pub created_at: UnixMillis,
    /// Last request seen (the idle timeout counts from here).
    pub last_seen_at: UnixMillis,
    /// Password accepted, TOTP not given yet.
    pub two_factor_pending: bool,
    /// End of the step-up window, if one is open.
    pub stepped_up_until: Option<UnixMillis>,
    /// Client address at login.
    pub source: Option<String>,
}

/// An account's TOTP state: the seed (sealed at rest, bound to the account), whether enrollment
/// was confirmed, the last accepted time step (so no code works twice) and the failure counter.
#[derive(Clone, PartialEq, Eq)]
pub struct TwoFactorRecord {
    /// Whose.
    pub account_id: AccountId,
    /// The raw TOTP seed (decrypted by the store; zeroized on drop).
    pub seed: zeroize::Zeroizing<Vec<u8>>,
    /// Confirmed with a code: 2FA is on.
    pub enabled: bool,
    /// When enrollment began.
    pub created_at: UnixMillis,
    /// When it was confirmed.
    pub confirmed_at: Option<UnixMillis>,
    /// The last RFC 6238 time step accepted.
    pub last_step: Option<u64>,
    /// Failed codes in the current window.
    pub failures: u32,
    /// Start of the current failure window.
    pub failure_window_start: Option<UnixMillis>,
}

/// Which failure counter of an account's second factor an attempt counts against (issue #18).
///
/// Codes typed to finish a password login (a session that has only the password) and codes
/// typed in an established session (step-up, disabling 2FA, new recovery codes) are counted
/// apart, so whoever has only the password cannot use up the owner's attempts and lock the
/// owner's own session out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCounter {
    /// Codes from sessions past their login's second factor: the owner's.
    Established,
    /// Codes finishing a password login: anyone who has the password.
    Login,
}

impl TotpCounter {
    /// The counter's `(failures, window start)` columns in `two_factor`.
    #[must_use]
    pub const fn columns(self) -> (&'static str, &'static str) {
        match self {
            Self::Established => ("failures", "failure_window_start"),
            Self::Login => ("login_failures", "login_window_start"),
        }
    }
}

/// The outcome of [`crate::Store::reserve_totp_attempt`]: a code check may go ahead (its attempt
/// already counted), or the account's failure window is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpAttempt {
    /// The attempt is counted: `failures` (this one included) in the window starting at
    /// `window_start`. Give it back with [`crate::Store::release_totp_attempt`] if the code is
    /// good and nothing else clears the counter.
    Reserved {
        /// Attempts in the window, this one included.
        failures: u32,
        /// Start of the window.
        window_start: UnixMillis,
    },
    /// The window is full: no check until `window_start` + the window length.
    Refused {
        /// Start of the full window.
        window_start: UnixMillis,
        /// The first refusal of this window (the one to audit); later ones wrote nothing.
        first: bool,
    },
}

impl std::fmt::Debug for TwoFactorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwoFactorRecord")
            .field("account_id", &self.account_id)
            .field("seed", &"<hidden>")
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .field("failures", &self.failures)
            .field("failure_window_start", &self.failure_window_start)
            .finish()
    }
}

/// The signing material of a key: the HMAC secret (encrypted at rest by the store) or the
/// registered public key (the server keeps no secret at all).
#[derive(Debug, Clone)]
pub enum KeyMaterial {
    /// Server-generated shared secret.
    Hmac(HmacSecret),
    /// User-registered Ed25519 or RSA public key.
    Public(PublicKey),
}

impl KeyMaterial {
    /// The key type this material belongs to.
    #[must_use]
    pub fn key_type(&self) -> KeyType {
        match self {
            Self::Hmac(_) => KeyType::Hmac,
            Self::Public(p) => p.key_type(),
        }
    }
}

/// A stored API key.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    /// The public key id.
    pub id: ApiKeyId,
    /// The owning account.
    pub account_id: AccountId,
    /// The owner's name for it.
    pub label: String,
    /// Secret or public key.
    pub material: KeyMaterial,
    /// What it may do.
    pub permissions: Permissions,
    /// Where and how it may be used.
    pub restrictions: Restrictions,
    /// Lifecycle state.
    pub status: KeyStatus,
    /// Why the key is not active, when something other than a plain edit made it so
    /// (`2fa_disabled`, `password_changed`, `policy:unused`, ...; issue #17), for the owner to
    /// read on the key. Cleared when the key is active again.
    pub status_reason: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Who created it: `owner`, `operator` or `system` (DESIGN.md: operator and system actions are
    /// marked on the key).
    pub created_by: String,
    /// Last change time.
    pub updated_at: UnixMillis,
    /// Who made the last change.
    pub updated_by: String,
    /// When a request last verified with it.
    pub last_used_at: Option<UnixMillis>,
    /// From where.
    pub last_used_ip: Option<String>,
    /// How many requests verified with it.
    pub use_count: u64,
    /// Withdrawals this key may not make yet (issue #19), stored with the key so they are
    /// written in the same transaction as the change that started them.
    pub withdrawal_holds: WithdrawalHolds,
    /// The connected app (client id) the key was issued to through the OAuth token endpoint
    /// (issue #15), so it is marked as the app's everywhere and revoked with the app; `None` for
    /// keys made by hand. Set at creation, never changed.
    pub app_id: Option<String>,
}

/// A waiting period: started at `since`, over at `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldPeriod {
    /// When the change that started it was made.
    pub since: UnixMillis,
    /// When withdrawals may begin.
    pub until: UnixMillis,
}

impl HoldPeriod {
    /// True if and only if the hold still applies at `now`.
    #[must_use]
    pub fn active(&self, now: UnixMillis) -> bool {
        now < self.until
    }
}

/// A new withdrawal address and its waiting period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressHold {
    /// The address, exactly as on the key's allowlist.
    pub address: String,
    /// Its waiting period.
    #[serde(flatten)]
    pub period: HoldPeriod,
}

/// The withdrawal holds of one key (issue #19): after the key was given the `withdraw`
/// permission it may not withdraw at all until `key` passes; after an address was added, it may
/// not withdraw to that address until its hold passes. Stored as JSON text beside the key's
/// restrictions; an empty value (every key from before holds existed) holds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalHolds {
    /// The whole key is held (it was given `withdraw`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<HoldPeriod>,
    /// Addresses held on this key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<AddressHold>,
}

impl WithdrawalHolds {
    /// True if and only if nothing is held at `now`.
    #[must_use]
    pub fn is_clear(&self, now: UnixMillis) -> bool {
        self.key.is_none_or(|k| !k.active(now)) && self.addresses.iter().all(|a| !a.period.active(now))
    }
}

/// Usage to add to a key, batched off the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    /// The key.
    pub key_id: ApiKeyId,
    /// Requests since the last flush.
    pub count: u64,
    /// Time of the latest of them.
    pub last_used_at: UnixMillis,
    /// Address of the latest of them.
    pub last_used_ip: String,
}

/// An audit event before the store numbers and chains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditDraft {
    /// When it happened.
    pub at: UnixMillis,
    /// Who: `owner:alice`, `operator:cli`, `system:expiry`, `api:kg_…`.
    pub actor: String,
    /// What, as `noun.verb`: `key.create`, `key.revoke`, `account.create`, `api.denied`.
    pub action: String,
    /// What it was done to: a key id, `account:NAME`.
    pub target: String,
    /// The account concerned, for per-account audit views.
    pub account_id: Option<AccountId>,
    /// Network source, when there is one (`127.0.0.1`, `unix-socket`).
    pub source: Option<String>,
    /// Action-specific details; never a secret.
    pub details: serde_json::Value,
}

/// An audit record as stored: numbered and hash-chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event.
    pub draft: AuditDraft,
    /// Hash of the previous record (all zeros for the first).
    pub prev_hash: [u8; 32],
    /// Hash of this record, see [`crate::audit::chain_hash`].
    pub hash: [u8; 32],
}

/// One accepted exchange command, as the engine journals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// Position in the journal, from 1, without gaps.
    pub seq: i64,
    /// When the engine applied it (the exchange replays it with this time).
    pub at: UnixMillis,
    /// The serialised command; opaque to the store.
    pub command: Vec<u8>,
}

/// What a committed change touched, as the change feed reports it: enough for a node to drop
/// what it cached about it and read it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An account's own fields (created, password, status, withdrawal locks), and with them its
    /// sessions when a password change or 2FA reset ended them.
    Account(AccountId),
    /// One API key (created, edited, revoked, held).
    Key {
        /// The key's account.
        account: AccountId,
        /// The key.
        key: ApiKeyId,
    },
    /// An account's second factor (enrolled, enabled, removed, recovery codes replaced).
    TwoFactor(AccountId),
    /// A console session of the account ended (logout).
    Session(AccountId),
}

impl Change {
    /// The kind's name, as stored.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Account(_) => "account",
            Self::Key { .. } => "key",
            Self::TwoFactor(_) => "two_factor",
            Self::Session(_) => "session",
        }
    }

    /// The account concerned.
    #[must_use]
    pub const fn account(&self) -> AccountId {
        match self {
            Self::Account(a) | Self::TwoFactor(a) | Self::Session(a) | Self::Key { account: a, .. } => *a,
        }
    }
}

/// One entry of the change feed: a [`Change`] numbered by the audit record committed with it.
///
/// The audit chain is appended under one lock on every backend, so sequence numbers grow in
/// commit order: a reader that has seen every change up to `seq` and asks for those after it
/// misses none (numbers without a change are audit records that changed nothing cached).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    /// The sequence number of the audit record that describes the change.
    pub seq: i64,
    /// When it happened.
    pub at: UnixMillis,
    /// What changed.
    pub change: Change,
}

/// The outcome of [`crate::FaucetStore::take_faucet_grant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaucetGrant {
    /// Granted: the `grants`-th of the window that began at `window_start` (this one counted).
    /// Give it back with [`crate::FaucetStore::return_faucet_grant`] if the deposit then fails.
    Granted {
        /// Grants in the window, this one included.
        grants: u32,
        /// Start of the window.
        window_start: UnixMillis,
    },
    /// The window already holds the limit: the next grant is possible at `next_at`.
    Refused {
        /// When the full window ends.
        next_at: UnixMillis,
    },
}

/// An invite code to store (`serve --signup invite`, issue #18): the code itself never reaches
/// the store, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInvite {
    /// SHA-256 of the code (see `keygate_auth::invite`).
    pub code_hash: [u8; 32],
    /// The operator's note (whom it is for); never a secret.
    pub note: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Who made it (the audit actor label, e.g. `operator:cli`).
    pub created_by: String,
    /// The code is refused from this time on.
    pub expires_at: UnixMillis,
}

/// A stored invite, without its code (which only its holder knows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRecord {
    /// Store-assigned id, for listing and revoking.
    pub id: i64,
    /// The operator's note.
    pub note: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Who made it.
    pub created_by: String,
    /// The code is refused from this time on.
    pub expires_at: UnixMillis,
    /// When an operator revoked it, if one did.
    pub revoked_at: Option<UnixMillis>,
    /// When it was redeemed, if it was.
    pub used_at: Option<UnixMillis>,
    /// The account created with it.
    pub used_by: Option<AccountId>,
    /// That account's name.
    pub used_by_name: Option<String>,
}

impl InviteRecord {
    /// Why the invite cannot be redeemed at `at`, or `None` if it can: used first, then revoked,
    /// then expired, so the answer names what happened last to a code that is several of these.
    #[must_use]
    pub fn refusal(&self, at: UnixMillis) -> Option<InviteRefusal> {
        if self.used_at.is_some() {
            Some(InviteRefusal::Used)
        } else if self.revoked_at.is_some() {
            Some(InviteRefusal::Revoked)
        } else if at >= self.expires_at {
            Some(InviteRefusal::Expired)
        } else {
            None
        }
    }
}

/// Why an invite code was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteRefusal {
    /// No invite has this code.
    Unknown,
    /// It was already used (by another sign-up, perhaps a concurrent one).
    Used,
    /// An operator revoked it.
    Revoked,
    /// Its expiry has passed.
    Expired,
}
