//! Invite codes for `serve --signup invite` (issue #18): the operator makes single-use codes and
//! hands them out; with sign-up by invitation, a person creates an account only with an unused,
//! unrevoked, unexpired code, and that code is spent in the same transaction that creates the
//! account.
//!
//! Codes carry 160 random bits and are shown once, to the operator who made them; the store
//! keeps their SHA-256 only (see `keygate_auth::invite`). Every sign-up attempt, with a wrong code
//! too, counts against the per-address sign-up throttle before any store work, so codes cannot be
//! tried in bulk (not that 160 bits could be guessed).

use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult};
use keygate_auth::invite::{generate_invite_code, hash_invite_code};
use keygate_proto::UnixMillis;
use keygate_store::{AuditDraft, InviteRecord, InviteRefusal, NewInvite};
use serde::Serialize;
use std::fmt;

/// How long an invite is valid when the operator names no expiry: 7 days.
pub const DEFAULT_INVITE_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// The longest an invite may stay valid: a year.
pub const MAX_INVITE_MS: u64 = 365 * 24 * 60 * 60 * 1000;
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 200;

/// An invite as the operator sees it: never its code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InviteView {
    /// Id, for `keygate invites revoke ID`.
    pub id: i64,
    /// The operator's note.
    pub note: String,
    /// `unused`, `used`, `revoked` or `expired`, at the time of the answer.
    pub status: &'static str,
    /// Creation time, ms.
    pub created_at: u64,
    /// Who made it (`operator:cli`, ...).
    pub created_by: String,
    /// Refused from this time on, ms.
    pub expires_at: u64,
    /// The account created with it.
    pub used_by: Option<String>,
    /// When it was used, ms.
    pub used_at: Option<u64>,
    /// When it was revoked, ms.
    pub revoked_at: Option<u64>,
}

impl InviteView {
    fn of(r: &InviteRecord, now: UnixMillis) -> Self {
        let status = match r.refusal(now) {
            None => "unused",
            Some(InviteRefusal::Used) => "used",
            Some(InviteRefusal::Revoked) => "revoked",
            Some(InviteRefusal::Expired | InviteRefusal::Unknown) => "expired",
        };
        Self {
            id: r.id,
            note: r.note.clone(),
            status,
            created_at: r.created_at.0,
            created_by: r.created_by.clone(),
            expires_at: r.expires_at.0,
            used_by: r.used_by_name.clone().or_else(|| r.used_by.map(|a| format!("#{a}"))),
            used_at: r.used_at.map(|t| t.0),
            revoked_at: r.revoked_at.map(|t| t.0),
        }
    }
}

/// A new invite and its code, shown this once.
#[derive(Serialize)]
pub struct CreatedInvite {
    /// The invite.
    #[serde(flatten)]
    pub invite: InviteView,
    /// The code to hand to the person invited; only its hash is stored.
    #[serde(serialize_with = "expose_code")]
    code: zeroize::Zeroizing<String>,
}

// Serialising a CreatedInvite is the one sanctioned way the code leaves the service: to the
// operator who made it, once.
fn expose_code<S: serde::Serializer>(code: &zeroize::Zeroizing<String>, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(code)
}

impl CreatedInvite {
    /// The code: the one way it leaves the service besides serialising this value.
    #[must_use]
    pub fn code(&self) -> &str {
        &self.code
    }
}

impl fmt::Debug for CreatedInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedInvite").field("invite", &self.invite).field("code", &"<hidden>").finish()
    }
}

/// The sentence a person reads when their code is refused.
pub(crate) fn refusal_message(r: InviteRefusal) -> String {
    match r {
        InviteRefusal::Unknown => {
            "this invite code is not valid: check that it was copied whole, or ask the operator for a new one"
        }
        InviteRefusal::Used => "this invite code has already been used: ask the operator for a new one",
        InviteRefusal::Revoked => "this invite code was withdrawn by the operator: ask them for a new one",
        InviteRefusal::Expired => "this invite code has expired: ask the operator for a new one",
    }
    .into()
}

/// The hash of a typed code, or the refusal a person reads: none given, or not a code at all.
pub(crate) fn typed_code_hash(typed: Option<&str>) -> ServiceResult<[u8; 32]> {
    let typed = typed.map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
        ServiceError::Forbidden(
            "this server takes new accounts by invitation only: enter the invite code its operator gave you".into(),
        )
    })?;
    hash_invite_code(typed).ok_or_else(|| {
        ServiceError::Forbidden(
            "that is not an invite code: codes start with kginv_ and are 33 characters long; check that it was \
             copied whole"
                .into(),
        )
    })
}

fn operator_only(actor: &Actor) -> ServiceResult<()> {
    if matches!(actor, Actor::Owner { .. }) {
        Err(ServiceError::Forbidden("only the operator manages invites".into()))
    } else {
        Ok(())
    }
}

impl Service {
    /// Makes a single-use invite code valid for `valid_ms` (1 ms to [`MAX_INVITE_MS`]), with a
    /// note for the operator's own records (at most [`MAX_NOTE_CHARS`] characters, no control
    /// characters). Audited as `invite.create`. The code is in the answer only.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for owners, [`ServiceError::Invalid`] for a bad note or
    /// validity; storage errors.
    pub async fn create_invite(&self, actor: &Actor, note: &str, valid_ms: u64) -> ServiceResult<CreatedInvite> {
        operator_only(actor)?;
        let note = note.trim();
        if note.chars().count() > MAX_NOTE_CHARS || note.chars().any(char::is_control) {
            return Err(ServiceError::Invalid(format!(
                "an invite's note is at most {MAX_NOTE_CHARS} characters on one line"
            )));
        }
        if valid_ms == 0 || valid_ms > MAX_INVITE_MS {
            return Err(ServiceError::Invalid("an invite is valid for at least a second and at most a year".into()));
        }
        let now = self.now_ms();
        let code = generate_invite_code(&mut OsEntropy)?;
        let code_hash = hash_invite_code(&code)
            .ok_or_else(|| ServiceError::Internal("a generated invite code does not parse".into()))?;
        let expires_at = UnixMillis(now.0.saturating_add(valid_ms));
        let new =
            NewInvite { code_hash, note: note.to_owned(), created_at: now, created_by: actor.label(), expires_at };
        let audit = AuditDraft {
            at: now,
            actor: actor.label(),
            action: "invite.create".into(),
            target: String::new(),
            account_id: None,
            source: actor.source(),
            details: serde_json::json!({ "note": note, "expires_at": expires_at.0 }),
        };
        let rec = self.inner.store.create_invite(new, audit).await?;
        Ok(CreatedInvite { invite: InviteView::of(&rec, now), code })
    }

    /// Every invite, oldest first, without codes.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for owners; storage errors.
    pub async fn list_invites(&self, actor: &Actor) -> ServiceResult<Vec<InviteView>> {
        operator_only(actor)?;
        let now = self.now_ms();
        Ok(self.inner.store.list_invites().await?.iter().map(|r| InviteView::of(r, now)).collect())
    }

    /// Revokes an unused invite: its code is refused from now on. Audited as `invite.revoke`.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown id, [`ServiceError::Conflict`] for an invite
    /// already used or revoked, [`ServiceError::Forbidden`] for owners.
    pub async fn revoke_invite(&self, actor: &Actor, id: i64) -> ServiceResult<InviteView> {
        operator_only(actor)?;
        let now = self.now_ms();
        let audit = AuditDraft {
            at: now,
            actor: actor.label(),
            action: "invite.revoke".into(),
            target: String::new(),
            account_id: None,
            source: actor.source(),
            details: serde_json::json!({ "invite": id }),
        };
        let rec = self.inner.store.revoke_invite(id, now, audit).await.map_err(|e| match ServiceError::from(e) {
            ServiceError::NotFound(_) => ServiceError::NotFound(format!("invite {id}")),
            other => other,
        })?;
        Ok(InviteView::of(&rec, now))
    }
}
