//! Account operations.

use crate::view::{AccountView, AuditView};
use crate::{Actor, Service, ServiceError, ServiceResult, password};
use keygate_auth::AccountId;
use keygate_store::{AccountRecord, AuditDraft, NewAccount};
use zeroize::Zeroizing;

/// Checks an account name: 2 to 32 of `a-z 0-9 _ . -`, starting with a letter or digit.
///
/// # Errors
/// [`ServiceError::Invalid`] saying what is allowed.
pub fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = (2..=32).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "account name {name:?} must be 2 to 32 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"
        )))
    }
}

impl Service {
    /// Creates an account with a password. Operators and the system may create accounts;
    /// owners cannot create other accounts (sign-up is its own path).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a bad name or weak password, [`ServiceError::Conflict`] if the
    /// name is taken, [`ServiceError::Forbidden`] for owners.
    pub async fn create_account(
        &self,
        actor: &Actor,
        name: &str,
        password: Zeroizing<String>,
    ) -> ServiceResult<AccountView> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("owners cannot create other accounts".into()));
        }
        check_name(name)?;
        password::check_strength(&password, &[name])?;
        let params = self.inner.config.password;
        // argon2 is deliberately slow: keep it off the async executor's threads.
        let hash = tokio::task::spawn_blocking(move || password::hash(params, &password))
            .await
            .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))??;
        self.insert_account(actor, name, hash, serde_json::json!({ "name": name })).await
    }

    /// Stores a new account with `password_hash`, audited as `account.create` with `details`.
    async fn insert_account(
        &self,
        actor: &Actor,
        name: &str,
        password_hash: String,
        details: serde_json::Value,
    ) -> ServiceResult<AccountView> {
        let now = self.now_ms();
        let audit = AuditDraft {
            at: now,
            actor: actor.label(),
            action: "account.create".into(),
            target: format!("account:{name}"),
            account_id: None,
            source: actor.source(),
            details,
        };
        let new = NewAccount { name: name.to_owned(), password_hash, created_at: now };
        let rec = self.inner.store.create_account(new, audit).await.map_err(|e| match ServiceError::from(e) {
            ServiceError::Conflict(_) => ServiceError::Conflict(format!("account {name:?} already exists")),
            other => other,
        })?;
        Ok(AccountView::from(&rec))
    }

    /// Creates an account without a console password, for the operator or the system (the demo,
    /// the market maker): nobody can log in to the console until [`Service::set_password`] sets
    /// the first one, and that first password is not a change (it locks no withdrawals). Audited
    /// as `account.create` with `console_password: false`.
    ///
    /// # Errors
    /// As [`Service::create_account`], without the password rules.
    pub async fn create_account_without_password(&self, actor: &Actor, name: &str) -> ServiceResult<AccountView> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("owners cannot create other accounts".into()));
        }
        check_name(name)?;
        let details = serde_json::json!({ "name": name, "console_password": false });
        self.insert_account(actor, name, password::NO_PASSWORD.to_owned(), details).await
    }

    /// All accounts (operator view).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for owners; storage errors.
    pub async fn list_accounts(&self, actor: &Actor) -> ServiceResult<Vec<AccountView>> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("only the operator can list accounts".into()));
        }
        Ok(self.inner.store.list_accounts().await?.iter().map(AccountView::from).collect())
    }

    /// One account by name; owners see only their own.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when missing or not visible to `actor`.
    pub async fn account(&self, actor: &Actor, name: &str) -> ServiceResult<AccountView> {
        Ok(AccountView::from(&self.account_record(actor, name).await?))
    }

    pub(crate) async fn account_record(&self, actor: &Actor, name: &str) -> ServiceResult<AccountRecord> {
        let rec = self
            .inner
            .store
            .account_by_name(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("account {name:?}")))?;
        if let Actor::Owner { account_id, .. } = actor
            && *account_id != rec.id
        {
            return Err(ServiceError::NotFound(format!("account {name:?}")));
        }
        Ok(rec)
    }

    pub(crate) async fn account_name(&self, id: AccountId) -> ServiceResult<String> {
        Ok(self.inner.store.account_by_id(id).await?.map_or_else(|| format!("#{id}"), |a| a.name))
    }

    /// Checks a login; returns the account when name and password match and it is active.
    /// The same answer (`None`) for an unknown name and a wrong password.
    ///
    /// # Errors
    /// Storage errors only.
    pub async fn check_password(&self, name: &str, password: Zeroizing<String>) -> ServiceResult<Option<AccountView>> {
        let (rec, ok) = self.password_matches(name, password).await?;
        Ok(rec.filter(|_| ok).as_ref().map(AccountView::from))
    }

    /// Sets a new password without the current one (the operator resetting it; an owner in the
    /// console should use [`Service::change_password`], which asks for the current one). Like
    /// every password change it ends all sessions of the account and locks withdrawals for
    /// [`crate::ServiceConfig::withdrawal_lock_ms`]; the first password of an account that had
    /// none ([`Service::create_account_without_password`]) is not a change and locks nothing
    /// (issue #19: the demo's console password locked every demo withdrawal for a day).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`], [`ServiceError::Invalid`] for a weak password.
    pub async fn set_password(&self, actor: &Actor, name: &str, password: Zeroizing<String>) -> ServiceResult<()> {
        let mut rec = self.account_record(actor, name).await?;
        password::check_strength(&password, &[name])?;
        let first = password::is_unset(&rec.password_hash);
        rec.password_hash = self.hash_password(password).await?;
        let now = self.now_ms();
        if !first {
            rec.withdrawals_locked_until = Some(self.lock_until(&rec, now));
            // Before the change, so a crash in between leaves the safe side (issue #17).
            self.ask_reconfirmation(actor, rec.id, name, "password_changed").await?;
        }
        let audit = AuditDraft {
            at: now,
            actor: actor.label(),
            action: "account.password".into(),
            target: format!("account:{name}"),
            account_id: Some(rec.id),
            source: actor.source(),
            details: serde_json::json!({
                "by": actor.kind(),
                "first": first,
                "sessions_ended": true,
                "withdrawals_locked_until": rec.withdrawals_locked_until,
            }),
        };
        self.inner.store.update_account_ending_sessions(&rec, None, audit).await?;
        Ok(())
    }

    /// Records an audited event that changes no key or account (an operator deposit, say).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn record_event(
        &self,
        actor: &Actor,
        action: &str,
        target: &str,
        account: Option<AccountId>,
        details: serde_json::Value,
    ) -> ServiceResult<()> {
        let draft = AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target: target.into(),
            account_id: account,
            source: actor.source(),
            details,
        };
        self.inner.store.append_audit(draft).await?;
        Ok(())
    }

    /// Audit records after `after`: all for the operator, the account's own for an owner.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn audit_log(&self, actor: &Actor, after: i64, limit: u32) -> ServiceResult<Vec<AuditView>> {
        let filter = match actor {
            Actor::Owner { account_id, .. } => Some(*account_id),
            Actor::Operator { .. } | Actor::System { .. } => None,
        };
        Ok(self
            .inner
            .store
            .audit_records(after, limit.min(10_000), filter)
            .await?
            .iter()
            .map(AuditView::from)
            .collect())
    }

    /// Audit records with `seq < before`, newest first, at most `limit` (capped at 10,000): the
    /// owner's own only, everything for the operator, as [`Self::audit_log`]. Lets views of the
    /// latest records read only those.
    ///
    /// # Errors
    /// Store failures.
    pub async fn audit_log_newest(&self, actor: &Actor, before: i64, limit: u32) -> ServiceResult<Vec<AuditView>> {
        let filter = match actor {
            Actor::Owner { account_id, .. } => Some(*account_id),
            Actor::Operator { .. } | Actor::System { .. } => None,
        };
        Ok(self
            .inner
            .store
            .audit_records_newest(before, limit.min(10_000), filter)
            .await?
            .iter()
            .map(AuditView::from)
            .collect())
    }

    /// Walks the whole audit chain and checks every link; returns the number of records.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming the first broken record; [`ServiceError::Forbidden`] for
    /// owners (the chain spans all accounts).
    pub async fn verify_audit_chain(&self, actor: &Actor) -> ServiceResult<i64> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("only the operator can verify the whole chain".into()));
        }
        let (mut prev, mut seq) = ([0u8; 32], 0i64);
        loop {
            let batch = self.inner.store.audit_records(seq, 1000, None).await?;
            if batch.is_empty() {
                return Ok(seq);
            }
            (prev, seq) = keygate_store::audit::verify_chain(prev, seq, &batch)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
    }
}
