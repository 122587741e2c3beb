//! Owner sign-up, password login and server-side console sessions.
//!
//! * A session id is 256 random bits ([`SessionToken`]); the browser holds it, the store holds
//!   only its SHA-256. Every lookup goes through [`Service::session`], which enforces the idle
//!   timeout (from the last request), the absolute timeout (from the login) and, for a session
//!   whose password was accepted but whose TOTP code is still due, a short pending timeout.
//! * The id is rotated (a new one issued, the old one deleted in the same transaction) when the
//!   second factor completes a login and at every step-up, so an id seen before a privilege
//!   change is useless after it.
//! * The CSRF token is derived from the id ([`SessionToken::csrf_token`]): nothing more to store.
//! * [`Service::session_actor`] is the one way the console turns a session into an
//!   [`Actor::Owner`]: step-up window included, 2FA-pending sessions refused.
//! * Password logins are throttled in memory, or in the counters every node shares when there
//!   are some (see `throttle.rs` for why), per client address, per (account, address) pair, and per account
//!   across addresses (past that, only addresses with no failure on the account are heard).
//!   The attempt is reserved before argon2 runs and given back on success, so concurrent
//!   guesses cannot all pass; every failure is audited. Sign-ups count every attempt per
//!   address. argon2 runs are capped process-wide; past a short wait the attempt is refused.

use crate::throttle::{Refusal, Ticket, ip_key};
use crate::totp::CodeCaller;
use crate::view::AccountView;
use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult, SignUpMode, accounts, invites, password};
use keygate_auth::{AccountId, SessionToken};
use keygate_proto::UnixMillis;
use keygate_store::{AccountRecord, AccountStatus, AuditDraft, InviteRefusal, NewAccount, SessionRecord};
use serde::Serialize;
use zeroize::Zeroizing;

/// Session lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// A session unused this long ends (default 30 min).
    pub idle_timeout_ms: u64,
    /// A session ends this long after its login, used or not (default 12 h).
    pub absolute_timeout_ms: u64,
    /// A step-up (fresh TOTP code) opens an elevated window this long (default 5 min).
    pub step_up_ms: u64,
    /// A login waiting for its TOTP code ends after this long (default 5 min).
    pub pending_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30 * 60 * 1000,
            absolute_timeout_ms: 12 * 60 * 60 * 1000,
            step_up_ms: 5 * 60 * 1000,
            pending_ms: 5 * 60 * 1000,
        }
    }
}

/// Failure limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failed logins per (account name, client address) pair per window (default 5): the hard
    /// per-account lock. Keyed by address too, so guesses from elsewhere cannot lock the owner out.
    pub login_per_account: u32,
    /// Failed logins per account name from all addresses per window (default 50). Past it the
    /// account is under a spread-out attack: only addresses with no failure of their own on the
    /// account in the window are still heard (one guess each), so the owner, who has none, can
    /// still log in while the attack is slowed to one guess per address per window.
    pub login_per_account_global: u32,
    /// Failed logins per client address (IPv6: per /64) per window (default 20).
    pub login_per_ip: u32,
    /// The login window (default 15 min).
    pub login_window_ms: u64,
    /// Failed TOTP or recovery codes per window (default 5): per account from established
    /// sessions (step-up, disabling 2FA, new recovery codes), and per login session for the
    /// code that finishes a password login.
    pub totp_failures: u32,
    /// Failed codes finishing password logins per client address (IPv6: per /64) per window
    /// (default 10).
    pub totp_login_per_ip: u32,
    /// Failed codes finishing password logins per account per window, from every session and
    /// address (default 50): a ceiling well above the others, counted apart from the owner's
    /// established sessions, so whoever has only the password cannot lock the owner out
    /// (issue #18).
    pub totp_login_per_account: u32,
    /// The TOTP window (default 5 min).
    pub totp_window_ms: u64,
    /// Self sign-ups per client address (IPv6: per /64) per hour (default 10), so one client
    /// cannot fill the store with accounts.
    pub sign_ups_per_ip_per_hour: u32,
    /// argon2 runs (hashing or verifying a password) at once, process-wide (default 2), so a
    /// flood of logins or sign-ups cannot take every core from the matching engine.
    pub password_hashing_concurrency: usize,
    /// How long a password check waits for a free slot before it is refused as
    /// [`crate::ServiceError::Throttled`] (default 200 ms) instead of queueing without bound.
    pub password_hashing_wait_ms: u64,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            login_per_account: 5,
            login_per_account_global: 50,
            login_per_ip: 20,
            login_window_ms: 15 * 60 * 1000,
            totp_failures: 5,
            totp_login_per_ip: 10,
            totp_login_per_account: 50,
            totp_window_ms: 5 * 60 * 1000,
            sign_ups_per_ip_per_hour: 10,
            password_hashing_concurrency: 2,
            password_hashing_wait_ms: 200,
        }
    }
}

/// What the console may show of a session: no secret but the CSRF token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// The account.
    pub account_id: AccountId,
    /// Its name.
    pub account: String,
    /// Password accepted, TOTP code still due: only [`Service::login_second_factor`] and
    /// [`Service::logout`] accept this session.
    pub two_factor_pending: bool,
    /// Whether the account has 2FA enabled.
    pub two_factor_enabled: bool,
    /// Login time.
    pub created_at: UnixMillis,
    /// Last request.
    pub last_seen_at: UnixMillis,
    /// When the session ends if unused.
    pub idle_expires_at: UnixMillis,
    /// When the session ends regardless.
    pub absolute_expires_at: UnixMillis,
    /// End of the elevated window, if one is open now.
    pub stepped_up_until: Option<UnixMillis>,
    /// Withdrawals are refused until then (after a password change or 2FA removal).
    pub withdrawals_locked_until: Option<UnixMillis>,
    /// The CSRF token to embed in forms / send back in a header.
    pub csrf_token: String,
}

/// A freshly issued or rotated session: set `token` as the cookie; any previous id is dead.
#[derive(Debug)]
pub struct NewSession {
    /// The session id for the cookie (Debug prints `<hidden>`).
    pub token: SessionToken,
    /// Its state.
    pub info: SessionInfo,
    /// Set by [`Service::step_up`]: the code typed with this request, for the changes that need
    /// one in the same request (pass it on with [`Actor::with_fresh_code`]).
    pub fresh_code: Option<crate::FreshCode>,
    /// Set by [`Service::login_second_factor`]: a new known-device token for the browser that
    /// finished the login (see [`crate::devices`]); keep it in a long-lived cookie and pass it
    /// back with the next login's code, so wrong codes typed elsewhere cannot lock it out.
    pub device_token: Option<String>,
}

/// The attempts one password check reserved (see [`Service::reserve_login`]).
#[derive(Debug)]
struct LoginTickets {
    ip: Ticket,
    pair_key: String,
    pair: Ticket,
    account: Option<Ticket>,
}

/// Touching a session's last-seen time costs a write; within this much of the last one it is
/// skipped, so the idle timeout is exact to within this margin.
const TOUCH_GRANULARITY_MS: u64 = 5_000;

fn expired() -> ServiceError {
    ServiceError::Unauthenticated("the session has ended; log in again".into())
}

fn login_failed() -> ServiceError {
    ServiceError::Unauthenticated("wrong account name or password".into())
}

impl Service {
    pub(crate) fn draft(
        &self,
        actor: String,
        action: &str,
        target: String,
        account: Option<AccountId>,
        source: Option<String>,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft { at: self.now_ms(), actor, action: action.into(), target, account_id: account, source, details }
    }

    pub(crate) fn owner_draft(
        &self,
        account: &AccountRecord,
        action: &str,
        source: Option<String>,
        details: serde_json::Value,
    ) -> AuditDraft {
        self.draft(
            format!("owner:{}", account.name),
            action,
            format!("account:{}", account.name),
            Some(account.id),
            source,
            details,
        )
    }

    /// Creates an account for its future owner (self sign-up): the same rules as
    /// [`Service::create_account`], audited as `account.sign_up` from `source`. Does not log in.
    /// With sign-up by invitation this needs a code: see [`Service::sign_up_with_invite`].
    ///
    /// # Errors
    /// As [`Service::sign_up_with_invite`] without a code.
    pub async fn sign_up(
        &self,
        name: &str,
        password: Zeroizing<String>,
        source: Option<String>,
    ) -> ServiceResult<AccountView> {
        self.sign_up_with_invite(name, password, None, source).await
    }

    /// [`Service::sign_up`] presenting an invite code. With [`SignUpMode::Invite`] the code must
    /// be unused, unrevoked and unexpired; it is spent in the transaction that creates the
    /// account (also audited as `invite.redeem`), so it creates one account at most, and a
    /// sign-up that fails leaves it usable. With [`SignUpMode::Open`] the code is not needed and
    /// not looked at.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] when sign-up is switched off, or by invitation and the code is
    /// missing, malformed, unknown, used, revoked or expired (the message says which, for a
    /// person); [`ServiceError::Invalid`] for a bad name or weak password,
    /// [`ServiceError::Conflict`] if the name is taken, [`ServiceError::Throttled`] after
    /// [`ThrottleConfig::sign_ups_per_ip_per_hour`] attempts from one address.
    pub async fn sign_up_with_invite(
        &self,
        name: &str,
        password: Zeroizing<String>,
        invite: Option<&str>,
        source: Option<String>,
    ) -> ServiceResult<AccountView> {
        let mode = self.inner.config.sign_up;
        if mode == SignUpMode::Closed {
            return Err(ServiceError::Forbidden("this server does not take sign-ups: ask its operator for an account (they create it with `keygate accounts create`)".into()));
        }
        accounts::check_name(name)?;
        password::check_strength(&password, &[name])?;
        let now = self.now_ms();
        let ip = ip_key(source.as_deref());
        // Every attempt counts, a taken name or a wrong code included, and before any store or
        // argon2 work: a refused sign-up is no cheaper for us than an accepted one.
        if let Err(refusal) = self.inner.sign_ups_by_ip.consume(&ip, now).await {
            return Err(ServiceError::Throttled { what: "sign-up".into(), retry_after_ms: refusal.retry_after_ms });
        }
        // The code is checked before the password is hashed (a spent code costs no argon2 run);
        // the transaction below decides.
        let code_hash = match mode {
            SignUpMode::Invite => {
                let hash = invites::typed_code_hash(invite)?;
                let found = self.inner.store.invite_by_code(&hash).await?;
                let refusal = found.as_ref().map_or(Some(InviteRefusal::Unknown), |i| i.refusal(now));
                if let Some(r) = refusal {
                    return Err(ServiceError::Forbidden(invites::refusal_message(r)));
                }
                Some((hash, found.map(|i| i.id)))
            }
            SignUpMode::Open | SignUpMode::Closed => None,
        };
        // A taken name is refused without hashing (the message says the name exists anyway; the
        // insert below still catches a race).
        if self.inner.store.account_by_name(name).await?.is_some() {
            return Err(ServiceError::Conflict(format!("account {name:?} already exists")));
        }
        let hash = self.hash_password(password).await?;
        let details = match &code_hash {
            Some((_, id)) => serde_json::json!({ "name": name, "invite": id }),
            None => serde_json::json!({ "name": name }),
        };
        let audit = self.draft(
            format!("owner:{name}"),
            "account.sign_up",
            format!("account:{name}"),
            None,
            source.clone(),
            details,
        );
        let new = NewAccount { name: name.to_owned(), password_hash: hash, created_at: now };
        let taken = |e: keygate_store::StoreError| match ServiceError::from(e) {
            ServiceError::Conflict(_) => ServiceError::Conflict(format!("account {name:?} already exists")),
            other => other,
        };
        let rec = match code_hash {
            None => self.inner.store.create_account(new, audit).await.map_err(taken)?,
            Some((code_hash, _)) => {
                let redeem = self.draft(
                    format!("owner:{name}"),
                    "invite.redeem",
                    String::new(),
                    None,
                    source,
                    serde_json::json!({ "account": name }),
                );
                self.inner
                    .store
                    .create_account_with_invite(&code_hash, new, audit, redeem)
                    .await
                    .map_err(taken)?
                    .map_err(|r| ServiceError::Forbidden(invites::refusal_message(r)))?
            }
        };
        Ok(AccountView::from(&rec))
    }

    /// Runs argon2 work `f` on the blocking pool once one of the
    /// [`ThrottleConfig::password_hashing_concurrency`] slots is free; refuses with
    /// [`ServiceError::Throttled`] when none frees up within
    /// [`ThrottleConfig::password_hashing_wait_ms`]. The slot is held by the blocking task
    /// itself, so a caller that gives up cannot free it while the hash still runs.
    async fn password_work<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> ServiceResult<T> {
        let wait = std::time::Duration::from_millis(self.inner.config.throttle.password_hashing_wait_ms);
        let busy = || ServiceError::Throttled {
            what: "password check (server busy)".into(),
            retry_after_ms: self.inner.config.throttle.password_hashing_wait_ms.max(1000),
        };
        let Ok(Ok(permit)) = tokio::time::timeout(wait, self.inner.password_work.clone().acquire_owned()).await else {
            return Err(busy());
        };
        // argon2 is deliberately slow: keep it off the async executor's threads.
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))
    }

    pub(crate) async fn hash_password(&self, password: Zeroizing<String>) -> ServiceResult<String> {
        let params = self.inner.config.password;
        self.password_work(move || password::hash(params, &password)).await?
    }

    /// The active account `name` if `password` is its password; `None` otherwise, in about the
    /// same time whether or not the name exists.
    pub(crate) async fn password_matches(
        &self,
        name: &str,
        password: Zeroizing<String>,
    ) -> ServiceResult<(Option<AccountRecord>, bool)> {
        // A name that cannot exist is not looked up, and an overlong password is not hashed:
        // neither can match, and neither should cost more than a normal attempt.
        let rec = match accounts::check_name(name) {
            Ok(()) => self.inner.store.account_by_name(name).await?,
            Err(_) => None,
        };
        if password.len() > password::MAX_PASSWORD_BYTES {
            return Ok((rec, false));
        }
        // An account without a console password is treated like an unknown name: hashed anyway,
        // so the answer takes as long and says as little.
        let stored = rec.as_ref().map(|r| r.password_hash.clone()).filter(|h| !password::is_unset(h));
        let params = self.inner.config.password;
        let ok = self
            .password_work(move || match stored {
                Some(hash) => password::verify(&hash, &password),
                // Hash anyway for unknown names, so timing does not reveal which names exist.
                None => {
                    let _ = password::hash(params, &password);
                    false
                }
            })
            .await?;
        let ok = ok && rec.as_ref().is_some_and(|r| r.status == AccountStatus::Active);
        Ok((rec, ok))
    }

    /// Reserves one password attempt on `account_key` from client address key `ip`, counted
    /// before the argon2 work so concurrent attempts cannot all pass (each counter checks and
    /// counts in one step under its lock): per address, per (account, address) pair (down to one
    /// attempt when the account's global count is past
    /// [`ThrottleConfig::login_per_account_global`]), and per account.
    async fn reserve_login(&self, account_key: &str, ip: &str, now: UnixMillis) -> Result<LoginTickets, Refusal> {
        let c = &self.inner.config.throttle;
        let ip_ticket = self.inner.login_by_ip.consume(ip, now).await?;
        let pair_key = format!("{account_key} {ip}");
        let under_attack = self.inner.login_by_account.count(account_key, now).await >= c.login_per_account_global;
        let pair_limit = if under_attack { c.login_per_account.min(1) } else { c.login_per_account };
        let pair_ticket = match self.inner.login_by_pair.try_consume(&pair_key, now, pair_limit).await {
            Ok(t) => t,
            Err(refusal) => {
                self.inner.login_by_ip.refund(ip, ip_ticket).await;
                return Err(refusal);
            }
        };
        // Never refused by itself: the global count only lowers the pair limit above.
        let account_ticket = self.inner.login_by_account.try_consume(account_key, now, u32::MAX).await.ok();
        Ok(LoginTickets { ip: ip_ticket, pair_key, pair: pair_ticket, account: account_ticket })
    }

    /// A password attempt reserved by [`Service::reserve_login`] succeeded: it does not count,
    /// and the pair's earlier failures are forgiven.
    async fn login_succeeded(&self, account_key: &str, ip: &str, tickets: LoginTickets) {
        self.inner.login_by_ip.refund(ip, tickets.ip).await;
        let _ = tickets.pair;
        self.inner.login_by_pair.clear(&tickets.pair_key).await;
        if let Some(t) = tickets.account {
            self.inner.login_by_account.refund(account_key, t).await;
        }
    }

    fn throttled(refusal: Refusal) -> ServiceError {
        ServiceError::Throttled { what: "login".into(), retry_after_ms: refusal.retry_after_ms }
    }

    /// Logs in with a password. Throttled per account name and per client address; each
    /// failure is audited (`auth.login_failed`), the first refusal of a throttled window too.
    /// With 2FA enabled, the session returned is `two_factor_pending`: pass the code to
    /// [`Service::login_second_factor`].
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] (one message for an unknown name, a wrong password and
    /// a disabled account), [`ServiceError::Throttled`].
    pub async fn login(
        &self,
        name: &str,
        password: Zeroizing<String>,
        source: Option<String>,
    ) -> ServiceResult<NewSession> {
        let now = self.now_ms();
        // Audit records and throttle keys carry the name as typed only when it could be an
        // account name: an attacker's megabyte of junk is recorded as `<invalid>`.
        let name_shown = if accounts::check_name(name).is_ok() { name } else { "<invalid>" };
        let account_key = name_shown.to_owned();
        let ip = ip_key(source.as_deref());
        let tickets = match self.reserve_login(&account_key, &ip, now).await {
            Ok(t) => t,
            Err(refusal) => {
                if refusal.first {
                    let account = self.inner.store.account_by_name(name_shown).await?.map(|a| a.id);
                    let draft = self.draft(
                        format!("owner:{name_shown}"),
                        "auth.login_failed",
                        format!("account:{name_shown}"),
                        account,
                        source,
                        serde_json::json!({ "reason": "throttled", "retry_after_ms": refusal.retry_after_ms }),
                    );
                    self.inner.store.append_audit(draft).await?;
                }
                return Err(Self::throttled(refusal));
            }
        };
        let (found, ok) = self.password_matches(name, password).await?;
        let account_id = found.as_ref().map(|r| r.id);
        // A failure (or a busy refusal, an error) keeps the reserved attempt counted.
        let Some(rec) = found.filter(|_| ok) else {
            let draft = self.draft(
                format!("owner:{name_shown}"),
                "auth.login_failed",
                format!("account:{name_shown}"),
                account_id,
                source,
                serde_json::json!({ "reason": "password" }),
            );
            self.inner.store.append_audit(draft).await?;
            return Err(login_failed());
        };
        self.login_succeeded(&account_key, &ip, tickets).await;
        let two_factor = self.two_factor_enabled(rec.id).await?;
        let token = SessionToken::generate(&mut OsEntropy)?;
        let session = SessionRecord {
            id_hash: token.hash(),
            account_id: rec.id,
            created_at: now,
            last_seen_at: now,
            two_factor_pending: two_factor,
            stepped_up_until: None,
            source: source.clone(),
        };
        let audit =
            self.owner_draft(&rec, "auth.login", source, serde_json::json!({ "two_factor_pending": two_factor }));
        self.inner.store.insert_session(&session, Some(audit)).await?;
        let info = self.session_info(&token, &session, &rec, two_factor);
        Ok(NewSession { token, info, fresh_code: None, device_token: None })
    }

    /// Completes a 2FA-pending login with a TOTP code or a recovery code; the session id is
    /// rotated (the old one no longer works). Audited as `auth.second_factor`. `device` is the
    /// browser's known-device token, if it has one: a code typed there counts on the device's
    /// own counter instead of the account-wide ceiling that someone with only the password can
    /// spend (see [`crate::devices`]). The answer carries a fresh token for the device.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for an unknown or ended session,
    /// [`ServiceError::Conflict`] when the session is not waiting for a code,
    /// [`ServiceError::InvalidCode`], [`ServiceError::Throttled`].
    pub async fn login_second_factor(
        &self,
        token: &SessionToken,
        code: &str,
        source: Option<String>,
        device: Option<&str>,
    ) -> ServiceResult<NewSession> {
        let (session, account) = self.live_session(token).await?;
        if !session.two_factor_pending {
            return Err(ServiceError::Conflict("this session is already logged in".into()));
        }
        let caller = CodeCaller::Login { session: token.hash(), device: device.map(str::to_owned) };
        let method = self.verify_second_factor(&account, code, "login", source.clone(), &caller).await?;
        let now = self.now_ms();
        let known = device.is_some_and(|d| crate::devices::check(&self.inner.device_key, &account, d, now).is_some());
        let new = SessionRecord { two_factor_pending: false, last_seen_at: now, ..session.clone() };
        let audit = self.owner_draft(
            &account,
            "auth.second_factor",
            source,
            serde_json::json!({ "method": method, "known_device": known }),
        );
        let mut fresh = self.rotate(token, new, &account, audit).await?;
        fresh.device_token = Some(crate::devices::issue(&self.inner.device_key, &account, now));
        Ok(fresh)
    }

    async fn rotate(
        &self,
        old: &SessionToken,
        mut new: SessionRecord,
        account: &AccountRecord,
        audit: AuditDraft,
    ) -> ServiceResult<NewSession> {
        let token = SessionToken::generate(&mut OsEntropy)?;
        new.id_hash = token.hash();
        self.inner.store.rotate_session(&old.hash(), &new, audit).await.map_err(|e| match e {
            keygate_store::StoreError::NotFound(_) => expired(),
            other => other.into(),
        })?;
        let enabled = self.two_factor_enabled(account.id).await?;
        let info = self.session_info(&token, &new, account, enabled);
        Ok(NewSession { token, info, fresh_code: None, device_token: None })
    }

    /// The session and its account, if the session exists and has not ended; an ended one is
    /// deleted (not audited: expiry is not an action). Refreshes the idle timer.
    async fn live_session(&self, token: &SessionToken) -> ServiceResult<(SessionRecord, AccountRecord)> {
        let hash = token.hash();
        let s = self.inner.store.session(&hash).await?.ok_or_else(expired)?;
        let now = self.now_ms();
        let c = &self.inner.config.sessions;
        let idle_end = s.last_seen_at.plus_millis(c.idle_timeout_ms);
        let absolute_end = s.created_at.plus_millis(c.absolute_timeout_ms);
        let pending_end = s.created_at.plus_millis(c.pending_ms);
        let account = self.inner.store.account_by_id(s.account_id).await?;
        let ended = now >= idle_end || now >= absolute_end || (s.two_factor_pending && now >= pending_end);
        let account = match account {
            Some(a) if !ended && a.status == AccountStatus::Active => a,
            _ => {
                self.inner.store.delete_session(&hash, None).await?;
                return Err(expired());
            }
        };
        let mut s = s;
        if now.0 >= s.last_seen_at.0 + TOUCH_GRANULARITY_MS {
            self.inner.store.touch_session(&hash, now).await?;
            s.last_seen_at = now;
        }
        Ok((s, account))
    }

    fn session_info(
        &self,
        token: &SessionToken,
        s: &SessionRecord,
        account: &AccountRecord,
        two_factor_enabled: bool,
    ) -> SessionInfo {
        let c = &self.inner.config.sessions;
        let now = self.now_ms();
        SessionInfo {
            account_id: account.id,
            account: account.name.clone(),
            two_factor_pending: s.two_factor_pending,
            two_factor_enabled,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            idle_expires_at: s.last_seen_at.plus_millis(c.idle_timeout_ms),
            absolute_expires_at: s.created_at.plus_millis(c.absolute_timeout_ms),
            stepped_up_until: s.stepped_up_until.filter(|u| *u > now),
            withdrawals_locked_until: account.withdrawals_locked_until.filter(|u| *u > now),
            csrf_token: token.csrf_token(),
        }
    }

    /// The session for `token` (2FA-pending ones included), refreshing its idle timer.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] if it is unknown or has ended (idle, absolute or
    /// pending timeout, account disabled).
    pub async fn session(&self, token: &SessionToken, _source: Option<String>) -> ServiceResult<SessionInfo> {
        let (s, account) = self.live_session(token).await?;
        let enabled = self.two_factor_enabled(account.id).await?;
        Ok(self.session_info(token, &s, &account, enabled))
    }

    /// The [`Actor::Owner`] of a fully logged-in session, with its step-up window, refreshing
    /// the idle timer. `source` is the address of the current request.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] if the session is unknown, ended, or still waiting for
    /// its TOTP code.
    pub async fn session_actor(&self, token: &SessionToken, source: Option<String>) -> ServiceResult<Actor> {
        let (s, account) = self.live_session(token).await?;
        if s.two_factor_pending {
            return Err(ServiceError::Unauthenticated("the 2FA code of this login is still due".into()));
        }
        Ok(Actor::Owner {
            account_id: account.id,
            name: account.name,
            stepped_up_until: s.stepped_up_until.filter(|u| *u > self.now_ms()),
            source,
            fresh_code: None,
        })
    }

    /// Step-up: a fresh TOTP code (or a recovery code) opens the elevated window
    /// ([`SessionConfig::step_up_ms`]) on the session and rotates its id. Audited as
    /// `auth.step_up`; a wrong code as `totp.failed`. The answer carries a
    /// [`crate::FreshCode`] for the change that came with the code (enabling withdraw, adding a
    /// withdrawal address), which the window alone does not cover.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for an unknown, ended or pending session;
    /// [`ServiceError::Forbidden`] when the account has no 2FA; [`ServiceError::InvalidCode`];
    /// [`ServiceError::Throttled`].
    pub async fn step_up(&self, token: &SessionToken, code: &str, source: Option<String>) -> ServiceResult<NewSession> {
        let (session, account) = self.live_session(token).await?;
        if session.two_factor_pending {
            return Err(ServiceError::Unauthenticated("the 2FA code of this login is still due".into()));
        }
        if !self.two_factor_enabled(account.id).await? {
            return Err(ServiceError::Forbidden("step-up needs 2FA: enable it first".into()));
        }
        let method =
            self.verify_second_factor(&account, code, "step_up", source.clone(), &CodeCaller::Established).await?;
        let now = self.now_ms();
        let until = now.plus_millis(self.inner.config.sessions.step_up_ms);
        let new = SessionRecord { stepped_up_until: Some(until), last_seen_at: now, ..session.clone() };
        let audit =
            self.owner_draft(&account, "auth.step_up", source, serde_json::json!({ "method": method, "until": until }));
        let mut session = self.rotate(token, new, &account, audit).await?;
        session.fresh_code = Some(crate::FreshCode::accepted_at(now));
        Ok(session)
    }

    /// Ends the session (audited as `auth.logout`). An unknown or already ended session is not
    /// an error: the outcome the caller wants holds.
    ///
    /// # Errors
    /// Storage errors only.
    pub async fn logout(&self, token: &SessionToken, source: Option<String>) -> ServiceResult<()> {
        let hash = token.hash();
        let Some(s) = self.inner.store.session(&hash).await? else { return Ok(()) };
        let name = self.account_name(s.account_id).await?;
        let audit = self.draft(
            format!("owner:{name}"),
            "auth.logout",
            format!("account:{name}"),
            Some(s.account_id),
            source,
            serde_json::json!({}),
        );
        self.inner.store.delete_session(&hash, Some(audit)).await?;
        Ok(())
    }

    /// Changes the password of the session's account, given the current one and, when the
    /// account has 2FA, a 2FA code typed with this request (issue #18: the step-up window does
    /// not cover it, so a stolen session cannot take the account over). Ends every session of the
    /// account, locks withdrawals for [`crate::ServiceConfig::withdrawal_lock_ms`] and returns a
    /// new session for the caller. Audited as `account.password`; a wrong current password counts
    /// as a failed login, a wrong code as a `totp.failed` of the established sessions' counter.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] (no session, or wrong current password),
    /// [`ServiceError::Invalid`] for a weak new password, [`ServiceError::StepUpRequired`]
    /// without the code, [`ServiceError::InvalidCode`], [`ServiceError::Throttled`].
    pub async fn change_password(
        &self,
        token: &SessionToken,
        current: Zeroizing<String>,
        new: Zeroizing<String>,
        code: Option<&str>,
        source: Option<String>,
    ) -> ServiceResult<NewSession> {
        let (session, account) = self.live_session(token).await?;
        if session.two_factor_pending {
            return Err(ServiceError::Unauthenticated("the 2FA code of this login is still due".into()));
        }
        let now = self.now_ms();
        let account_key = account.name.clone();
        password::check_strength(&new, &[account.name.as_str()])?;
        let two_factor = self.two_factor_enabled(account.id).await?;
        let code = code.map(str::trim).filter(|c| !c.is_empty());
        if two_factor && code.is_none() {
            return Err(ServiceError::StepUpRequired(
                "changing the password needs the 2FA code from your authenticator app, typed with the change".into(),
            ));
        }
        let ip = ip_key(source.as_deref());
        let tickets = self.reserve_login(&account_key, &ip, now).await.map_err(Self::throttled)?;
        let (_, ok) = self.password_matches(&account.name, current).await?;
        if !ok {
            let draft = self.owner_draft(
                &account,
                "auth.login_failed",
                source,
                serde_json::json!({ "reason": "password_change" }),
            );
            self.inner.store.append_audit(draft).await?;
            return Err(ServiceError::Unauthenticated("the current password is wrong".into()));
        }
        self.login_succeeded(&account_key, &ip, tickets).await;
        if let (true, Some(code)) = (two_factor, code) {
            self.verify_second_factor(&account, code, "password", source.clone(), &CodeCaller::Established).await?;
        }
        let mut rec = account.clone();
        rec.password_hash = self.hash_password(new).await?;
        rec.withdrawals_locked_until = Some(self.lock_until(&account, now));
        // Trade and withdraw keys are re-confirmed within the grace period or suspended (issue
        // #17); asked before the change is written, so a crash in between leaves the safe side.
        let owner = crate::Actor::Owner {
            account_id: account.id,
            name: account.name.clone(),
            stepped_up_until: None,
            source: source.clone(),
            fresh_code: None,
        };
        self.ask_reconfirmation(&owner, account.id, &account.name, "password_changed").await?;
        let fresh = SessionToken::generate(&mut OsEntropy)?;
        let new_session = SessionRecord {
            id_hash: fresh.hash(),
            account_id: account.id,
            created_at: now,
            last_seen_at: now,
            two_factor_pending: false,
            stepped_up_until: None,
            source: source.clone(),
        };
        let audit = self.owner_draft(
            &rec,
            "account.password",
            source,
            serde_json::json!({ "by": "owner", "sessions_ended": true, "withdrawals_locked_until": rec.withdrawals_locked_until }),
        );
        self.inner.store.update_account_ending_sessions(&rec, Some(&new_session), audit).await?;
        let enabled = self.two_factor_enabled(rec.id).await?;
        let info = self.session_info(&fresh, &new_session, &rec, enabled);
        // The new password forgets every known device; the browser that changed it stays one.
        let device_token = enabled.then(|| crate::devices::issue(&self.inner.device_key, &rec, now));
        Ok(NewSession { token: fresh, info, fresh_code: None, device_token })
    }

    /// The later of the account's current withdrawal lock and `now` + the configured lock.
    pub(crate) fn lock_until(&self, account: &AccountRecord, now: UnixMillis) -> UnixMillis {
        let fresh = now.plus_millis(self.inner.config.withdrawal_lock_ms);
        account.withdrawals_locked_until.map_or(fresh, |u| u.max(fresh))
    }

    /// [`Service::purge_sessions`] and [`Service::purge_codes`] if the last purge was a minute
    /// ago or more (called from [`Service::flush`], which the server runs every second or so).
    pub(crate) async fn purge_sessions_now_and_then(&self) -> ServiceResult<()> {
        let now = self.now_ms().0;
        let last = self.inner.last_session_purge.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(last) < 60_000 {
            return Ok(());
        }
        self.inner.last_session_purge.store(now, std::sync::atomic::Ordering::Relaxed);
        // Each runs whatever the other did: a failed session purge does not hold back the codes'.
        let sessions = self.purge_sessions().await;
        let codes = self.purge_codes().await;
        sessions.and(codes).map(|_| ())
    }

    /// Deletes sessions that have passed their idle or absolute timeout (housekeeping; a
    /// lookup refuses them anyway). Returns how many were deleted.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn purge_sessions(&self) -> ServiceResult<u64> {
        let now = self.now_ms().0;
        let c = &self.inner.config.sessions;
        Ok(self
            .inner
            .store
            .purge_sessions(
                UnixMillis(now.saturating_sub(c.idle_timeout_ms)),
                UnixMillis(now.saturating_sub(c.absolute_timeout_ms)),
            )
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ManualClock, PasswordParams, ServiceConfig};
    use keygate_proto::UnixMicros;
    use keygate_store::crypto::{MasterKey, SecretCipher};
    use keygate_store::sqlite::{SqliteStore, SyncMode};
    use std::sync::Arc;

    #[tokio::test]
    async fn password_work_is_refused_when_every_slot_stays_busy() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
        let store = SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
        let clock = Arc::new(ManualClock::new(UnixMicros(1_767_225_600_000_000)));
        let mut config = ServiceConfig { password: PasswordParams::insecure_for_tests(), ..ServiceConfig::default() };
        config.throttle.password_hashing_concurrency = 2;
        config.throttle.password_hashing_wait_ms = 20;
        let svc = Service::start(Arc::new(store), clock, config).await.unwrap();
        let pw = |s: &str| Zeroizing::new(s.to_owned());
        svc.sign_up("alice", pw("correct horse battery"), None).await.unwrap();

        // Every slot held (as by two long argon2 runs): logins, sign-ups and password checks
        // are refused as Throttled after the short wait rather than queued.
        let held = svc.inner.password_work.clone().acquire_many_owned(2).await.unwrap();
        let login = svc.login("alice", pw("correct horse battery"), Some("192.0.2.1".into())).await;
        assert!(matches!(login, Err(ServiceError::Throttled { .. })), "{login:?}");
        let sign_up = svc.sign_up("bob", pw("correct horse battery"), Some("192.0.2.2".into())).await;
        assert!(matches!(sign_up, Err(ServiceError::Throttled { .. })), "{sign_up:?}");
        assert!(matches!(svc.check_password("alice", pw("x")).await, Err(ServiceError::Throttled { .. })));

        // One slot free again: the work runs.
        drop(held);
        svc.login("alice", pw("correct horse battery"), Some("192.0.2.1".into())).await.unwrap();
        svc.sign_up("bob", pw("correct horse battery"), Some("192.0.2.2".into())).await.unwrap();
    }
}
