//! TOTP two-factor authentication (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps, one step of
//! clock skew either way), recovery codes and the withdrawal lock.
//!
//! * Seeds are 160 random bits (RFC 4226 section 4's recommendation), sealed by the store under
//!   the master key with associated data binding them to the account.
//! * A code is accepted at most once: the store keeps the last accepted time step per account
//!   and accepts a step only if it is later, in one guarded statement (so two nodes cannot both
//!   accept one code; RFC 6238 section 5.2).
//! * Every code check is throttled per account in the store (default 5 failures per 5 minutes,
//!   then refused until the window passes, whichever node is asked). The attempt is reserved
//!   (counted in one locked store transaction) *before* the code is checked, and given back
//!   when the code is good, so concurrent guesses cannot all read a count below the limit.
//!   Every failure is audited (`totp.failed`), as is the first refusal.
//! * Recovery codes (10, 80 bits each) are shown once at confirmation and stored as SHA-256
//!   hashes; each works once, wherever a TOTP code is asked for.
//! * Disabling 2FA (owner, with a code) or resetting it (operator, lost device) locks
//!   withdrawals for 24 h, as a password change does: a thief who got in cannot weaken the
//!   account and withdraw at once.

use crate::{Actor, OsEntropy, Service, ServiceError, ServiceResult};
use keygate_auth::session::{
    generate_recovery_code, hash_recovery_code, normalize_legacy_recovery_code, normalize_recovery_code,
};
use keygate_auth::{AccountId, Entropy as _};
use keygate_proto::UnixMillis;
use keygate_store::{AccountRecord, TotpAttempt, TotpCounter};

/// Wrong codes typed to finish password logins of an account lately: someone else may have the
/// password (issue #18). Shown to the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLoginCodes {
    /// How many in the period.
    pub count: u32,
    /// The latest one's time.
    pub last_at: UnixMillis,
    /// The latest one's client address, if known.
    pub last_source: Option<String>,
}

/// Who types a code: the two are counted apart (see [`Service::reserve_totp_attempt`]).
#[derive(Debug, Clone)]
pub(crate) enum CodeCaller {
    /// The code that finishes a password login, in the login's pending session.
    Login {
        /// The pending session's id hash.
        session: [u8; 32],
        /// The browser's known-device token, if it sent one (checked here, not trusted).
        device: Option<String>,
    },
    /// A code typed in a session past its login's second factor.
    Established,
}

/// In-memory attempts reserved for a login code.
#[derive(Debug)]
struct LocalTickets {
    session_key: String,
    session: crate::throttle::Ticket,
    /// The client address's key and attempt; none for a known device.
    ip: Option<(String, crate::throttle::Ticket)>,
    /// The known device's id and its attempt, when the code came from one.
    device: Option<(String, crate::throttle::Ticket)>,
}

/// One reserved code check: what to give back if the code was good.
#[derive(Debug)]
struct Reserved {
    /// The store's counter and window the attempt was counted in; none for a login code from a
    /// known device, which counts only on its device's counter.
    stored: Option<(TotpCounter, UnixMillis)>,
    local: Option<LocalTickets>,
}
use serde::Serialize;
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The issuer shown in authenticator apps.
pub const TOTP_ISSUER: &str = "keygate";
/// Seed length: 160 bits.
pub const SEED_BYTES: usize = 20;
/// Recovery codes issued at confirmation.
pub const RECOVERY_CODES: usize = 10;
/// How long a started enrollment waits for its confirming code: wrong codes within it keep the
/// same secret (issue #18: one typo no longer means scanning a new QR code), and the console can
/// show the secret again from the store, where it is sealed like every other secret.
pub const ENROLLMENT_TTL_MS: u64 = 10 * 60 * 1000;

/// What an authenticator app needs for `seed`: the URI, its QR code and the base32 text.
fn enrollment_of(seed: &[u8], account: &str) -> ServiceResult<TotpEnrollment> {
    let totp = totp_for(seed, account)?;
    let otpauth_uri = totp.to_url().map_err(|e| ServiceError::Internal(format!("otpauth URI: {e}")))?;
    Ok(TotpEnrollment { qr_svg: qr_svg(&otpauth_uri)?, otpauth_uri, secret_base32: totp.secret().to_base32() })
}

/// What the owner needs to add the account to an authenticator app; shown once.
#[derive(Clone, Serialize, Zeroize, ZeroizeOnDrop)]
pub struct TotpEnrollment {
    /// `otpauth://totp/keygate:NAME?secret=..&issuer=keygate&...`
    pub otpauth_uri: String,
    /// The same URI as a QR code, an SVG document (no external resources).
    pub qr_svg: String,
    /// The seed in base32, for typing it in by hand.
    pub secret_base32: String,
}

impl fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpEnrollment(<hidden>)")
    }
}

/// One-time recovery codes, `xxxx-xxxx-xxxx-xxxx`; shown once, stored only hashed.
#[derive(Clone, Serialize, Zeroize, ZeroizeOnDrop)]
pub struct RecoveryCodes {
    /// The codes.
    pub codes: Vec<String>,
}

impl fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecoveryCodes({} codes, <hidden>)", self.codes.len())
    }
}

/// An account's 2FA state, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TwoFactorView {
    /// 2FA is on.
    pub enabled: bool,
    /// An enrollment was started and awaits its confirming code.
    pub pending_enrollment: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
    /// Withdrawals are refused until then.
    pub withdrawals_locked_until: Option<UnixMillis>,
}

/// Which second factor a check accepted (recorded in audit details).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecondFactor {
    Totp,
    RecoveryCode,
}

fn totp_for(seed: &[u8], account: &str) -> ServiceResult<totp_rs::Totp> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(seed)
        .with_issuer(Some(TOTP_ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| ServiceError::Internal(format!("TOTP parameters: {e}")))
}

/// The time step a TOTP `code` matches at `now` (within one step either way), if any.
fn totp_step(seed: &[u8], account: &str, code: &str, now: UnixMillis) -> ServiceResult<Option<u64>> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp_for(seed, account)?.check(code, now.0 / 1000))
}

fn qr_svg(uri: &str) -> ServiceResult<String> {
    let code = qrcode::QrCode::with_error_correction_level(uri.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| ServiceError::Internal(format!("QR code: {e}")))?;
    Ok(code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
}

/// A fresh set of recovery codes and their hashes.
fn new_recovery_codes() -> ServiceResult<(RecoveryCodes, Vec<[u8; 32]>)> {
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let c = generate_recovery_code(&mut OsEntropy)?;
        let canonical = normalize_recovery_code(&c)
            .ok_or_else(|| ServiceError::Internal("a generated recovery code does not parse".into()))?;
        hashes.push(hash_recovery_code(&canonical));
        codes.push(c.to_string());
    }
    Ok((RecoveryCodes { codes }, hashes))
}

fn owner_only(actor: &Actor) -> ServiceResult<AccountId> {
    match actor {
        Actor::Owner { account_id, .. } => Ok(*account_id),
        Actor::Operator { .. } | Actor::System { .. } => {
            Err(ServiceError::Forbidden("2FA enrollment is the account owner's own action".into()))
        }
    }
}

impl Service {
    async fn own_account(&self, actor: &Actor) -> ServiceResult<AccountRecord> {
        self.account_by_id(owner_only(actor)?).await
    }

    /// The account with id `id`, which must exist.
    pub(crate) async fn account_by_id(&self, id: AccountId) -> ServiceResult<AccountRecord> {
        self.inner.store.account_by_id(id).await?.ok_or_else(|| ServiceError::NotFound(format!("account #{id}")))
    }

    /// True if and only if the account has confirmed 2FA.
    pub(crate) async fn two_factor_enabled(&self, account: AccountId) -> ServiceResult<bool> {
        Ok(self.inner.store.two_factor(account).await?.is_some_and(|t| t.enabled))
    }

    /// Reserves one code check of `account` before the code is looked at, so concurrent checks
    /// (in this process or on other nodes) cannot all pass a count read before any failure was
    /// written. A code finishing a password login counts per login session and per client
    /// address (in memory, or in the counters every node shares), then either on its known
    /// device's own counter (see [`crate::devices`]) or against the account's login counter in
    /// the store, whose ceiling is far higher; a code from an established session counts against
    /// the account's other counter, which login attempts never touch (issue #18). Refuses when a
    /// window is full, auditing the first refusal of the store's windows. On success, the caller
    /// gives the attempt back (or the store clears it).
    async fn reserve_totp_attempt(
        &self,
        account: &AccountRecord,
        purpose: &str,
        source: Option<String>,
        caller: &CodeCaller,
    ) -> ServiceResult<Reserved> {
        let now = self.now_ms();
        let t = &self.inner.config.throttle;
        let throttled = |retry_after_ms| ServiceError::Throttled { what: "2FA code".into(), retry_after_ms };
        let (counter, limit, local) = match caller {
            CodeCaller::Established => (TotpCounter::Established, t.totp_failures, None),
            CodeCaller::Login { session, device } => {
                let session_key = hex::encode(session);
                let s = self.inner.totp_by_session.try_consume(&session_key, now, t.totp_failures).await;
                let s = s.map_err(|r| throttled(r.retry_after_ms))?;
                let mut local = LocalTickets { session_key, session: s, ip: None, device: None };
                let known =
                    device.as_deref().and_then(|d| crate::devices::check(&self.inner.device_key, account, d, now));
                // A known device counts on its own counter only: not on the client address's,
                // which anyone behind the same address (a shared NAT, an unconfigured proxy)
                // could fill with wrong codes for an account of their own (outside review).
                if let Some(id) = known {
                    return match self.inner.totp_by_device.try_consume(&id, now, t.totp_failures).await {
                        Ok(d) => {
                            local.device = Some((id, d));
                            Ok(Reserved { stored: None, local: Some(local) })
                        }
                        Err(r) => {
                            self.refund_local(local).await;
                            Err(throttled(r.retry_after_ms))
                        }
                    };
                }
                let ip = crate::throttle::ip_key(source.as_deref());
                match self.inner.totp_by_ip.try_consume(&ip, now, t.totp_login_per_ip).await {
                    Ok(i) => local.ip = Some((ip, i)),
                    Err(r) => {
                        self.refund_local(local).await;
                        return Err(throttled(r.retry_after_ms));
                    }
                }
                (TotpCounter::Login, t.totp_login_per_account, Some(local))
            }
        };
        let attempt = self.inner.store.reserve_totp_attempt(account.id, counter, now, t.totp_window_ms, limit).await;
        let attempt = match attempt {
            Ok(a) => a,
            Err(e) => {
                if let Some(l) = local {
                    self.refund_local(l).await;
                }
                return Err(e.into());
            }
        };
        match attempt {
            TotpAttempt::Reserved { window_start, .. } => Ok(Reserved { stored: Some((counter, window_start)), local }),
            TotpAttempt::Refused { window_start, first } => {
                // Only the first refusal of a window is audited, so a flood of attempts cannot
                // flood the audit log; the window's start never moves, so this never extends
                // the lockout.
                if first {
                    let audit = self.owner_draft(
                        account,
                        "totp.failed",
                        source,
                        serde_json::json!({ "purpose": purpose, "reason": "throttled" }),
                    );
                    self.inner.store.append_audit(audit).await?;
                }
                if let Some(l) = local {
                    self.refund_local(l).await;
                }
                let end = window_start.plus_millis(t.totp_window_ms);
                let retry_after_ms = end.0.saturating_sub(now.0);
                if counter == TotpCounter::Login {
                    // The account-wide ceiling: say what it means and what still works.
                    return Err(ServiceError::Throttled {
                        what: "2FA codes for this account from browsers it has not seen; someone may be trying codes \
                               with your password, and a browser you have logged in with before still gets in"
                            .into(),
                        retry_after_ms,
                    });
                }
                Err(throttled(retry_after_ms))
            }
        }
    }

    /// Wrong 2FA codes typed to finish password logins of the owner's account in the last
    /// `period_ms`, if any: whoever typed them had the password. Read from the account's audit
    /// records (the newest 1,000 at most), for the console to warn the owner.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for anyone but an owner; storage errors.
    pub async fn failed_login_codes(&self, actor: &Actor, period_ms: u64) -> ServiceResult<Option<FailedLoginCodes>> {
        let account = owner_only(actor)?;
        let since = self.now_ms().0.saturating_sub(period_ms);
        let records = self.inner.store.audit_records_newest(i64::MAX, 1_000, Some(account)).await?;
        let mut found: Option<FailedLoginCodes> = None;
        for r in records.iter().take_while(|r| r.draft.at.0 >= since) {
            // Only codes that were wrong: a refusal (throttled) is not a code typed, and a code
            // used twice is the owner's own browser far more often than anyone else.
            if r.draft.action == "totp.failed"
                && r.draft.details["purpose"] == "login"
                && r.draft.details["reason"] == "wrong"
            {
                match &mut found {
                    Some(f) => f.count += 1,
                    None => {
                        found = Some(FailedLoginCodes {
                            count: 1,
                            last_at: r.draft.at,
                            last_source: r.draft.source.clone(),
                        });
                    }
                }
            }
        }
        Ok(found)
    }

    /// Gives back the in-memory attempts of a login code that did not count.
    async fn refund_local(&self, l: LocalTickets) {
        self.inner.totp_by_session.refund(&l.session_key, l.session).await;
        if let Some((ip, ticket)) = l.ip {
            self.inner.totp_by_ip.refund(&ip, ticket).await;
        }
        if let Some((id, ticket)) = l.device {
            self.inner.totp_by_device.refund(&id, ticket).await;
        }
    }

    /// A good code: none of its reserved attempts count.
    async fn release(&self, account: &AccountRecord, reserved: Reserved) -> ServiceResult<()> {
        if let Some(l) = reserved.local {
            self.refund_local(l).await;
        }
        if let Some((counter, window_start)) = reserved.stored {
            self.inner.store.release_totp_attempt(account.id, counter, window_start).await?;
        }
        Ok(())
    }

    async fn totp_failure(
        &self,
        account: &AccountRecord,
        purpose: &str,
        reason: &str,
        source: Option<String>,
    ) -> ServiceResult<ServiceError> {
        let audit = self.owner_draft(
            account,
            "totp.failed",
            source,
            serde_json::json!({ "purpose": purpose, "reason": reason }),
        );
        // The attempt was counted when it was reserved; only the audit record is left to write.
        self.inner.store.append_audit(audit).await?;
        Ok(ServiceError::InvalidCode(match reason {
            "reused" => "this 2FA code was already used; wait for the next one".into(),
            _ => "wrong 2FA code".into(),
        }))
    }

    /// Checks a TOTP code or recovery code of an account with 2FA enabled, consuming it.
    pub(crate) async fn verify_second_factor(
        &self,
        account: &AccountRecord,
        code: &str,
        purpose: &str,
        source: Option<String>,
        caller: &CodeCaller,
    ) -> ServiceResult<SecondFactor> {
        let tf = match self.inner.store.two_factor(account.id).await? {
            Some(tf) if tf.enabled => tf,
            _ => return Err(ServiceError::Forbidden("2FA is not enabled for this account".into())),
        };
        let reserved = self.reserve_totp_attempt(account, purpose, source.clone(), caller).await?;
        let now = self.now_ms();
        if let Some(step) = totp_step(&tf.seed, &account.name, code, now)? {
            // Accepting a step clears the established sessions' counter; the login counter
            // keeps its failures (whoever made them may still be trying), so the attempt is
            // given back.
            if self.inner.store.accept_totp_step(account.id, step, None).await? {
                if !matches!(reserved.stored, Some((TotpCounter::Established, _))) {
                    self.release(account, reserved).await?;
                }
                return Ok(SecondFactor::Totp);
            }
            return Err(self.totp_failure(account, purpose, "reused", source).await?);
        }
        // Codes issued before issue #18 use another alphabet: a typed code is tried in both
        // readings (at most two lookups, and the same one reserved attempt).
        let readings = [normalize_recovery_code(code), normalize_legacy_recovery_code(code)];
        let mut tried: Vec<[u8; 32]> = Vec::with_capacity(2);
        for canonical in readings.into_iter().flatten() {
            let hash = hash_recovery_code(&canonical);
            if tried.contains(&hash) {
                continue;
            }
            tried.push(hash);
            let audit = self.owner_draft(
                account,
                "auth.recovery_code_used",
                source.clone(),
                serde_json::json!({ "purpose": purpose }),
            );
            if self.inner.store.use_recovery_code(account.id, &hash, now, Some(audit)).await? {
                self.release(account, reserved).await?;
                return Ok(SecondFactor::RecoveryCode);
            }
        }
        Err(self.totp_failure(account, purpose, "wrong", source).await?)
    }

    /// The owner's enrollment waiting for its confirming code, started less than
    /// [`ENROLLMENT_TTL_MS`] ago, with the time it lapses; `None` when there is none (or 2FA is
    /// already on). Read from the store (where the seed is sealed), so a wrong code, a reload or
    /// another node shows the same secret.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for operators and the system; storage errors.
    pub async fn totp_pending(&self, actor: &Actor) -> ServiceResult<Option<(TotpEnrollment, UnixMillis)>> {
        let account = self.own_account(actor).await?;
        let Some(tf) = self.inner.store.two_factor(account.id).await? else { return Ok(None) };
        let lapses = tf.created_at.plus_millis(ENROLLMENT_TTL_MS);
        if tf.enabled || self.now_ms() >= lapses {
            return Ok(None);
        }
        Ok(Some((enrollment_of(&tf.seed, &account.name)?, lapses)))
    }

    /// Starts (or restarts) TOTP enrollment for the owner's account: a new seed, sealed in the
    /// store, not active until [`Service::totp_confirm`] (within [`ENROLLMENT_TTL_MS`]).
    /// Audited as `totp.enroll`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for operators and the system; [`ServiceError::Conflict`] when
    /// 2FA is already enabled (disable it first).
    pub async fn totp_enroll(&self, actor: &Actor) -> ServiceResult<TotpEnrollment> {
        let account = self.own_account(actor).await?;
        let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
        OsEntropy.fill(seed.as_mut_slice())?;
        let enrollment = enrollment_of(seed.as_slice(), &account.name)?;
        let audit = self.owner_draft(&account, "totp.enroll", actor.source(), serde_json::json!({}));
        self.inner.store.begin_two_factor(account.id, seed.as_slice(), self.now_ms(), audit).await.map_err(|e| {
            match ServiceError::from(e) {
                ServiceError::Conflict(_) => {
                    ServiceError::Conflict("2FA is already enabled; disable it before enrolling again".into())
                }
                other => other,
            }
        })?;
        Ok(enrollment)
    }

    /// Confirms a pending enrollment (started less than [`ENROLLMENT_TTL_MS`] ago; a wrong code
    /// keeps it) with a code from the app: 2FA is on from now, and the recovery codes are
    /// returned, once; withdrawals of the whole account are held for
    /// [`crate::ServiceConfig::withdrawal_hold_ms`] (issue #19). Audited as `totp.confirm`
    /// (with `withdrawals_held_until`); wrong codes as `totp.failed` (and throttled).
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] with no pending enrollment, [`ServiceError::InvalidCode`],
    /// [`ServiceError::Throttled`], [`ServiceError::Forbidden`] for non-owners.
    pub async fn totp_confirm(&self, actor: &Actor, code: &str) -> ServiceResult<RecoveryCodes> {
        let account = self.own_account(actor).await?;
        let tf = match self.inner.store.two_factor(account.id).await? {
            Some(tf) if !tf.enabled => tf,
            Some(_) => return Err(ServiceError::Conflict("2FA is already enabled".into())),
            None => return Err(ServiceError::Conflict("no 2FA enrollment to confirm; start one first".into())),
        };
        if self.now_ms() >= tf.created_at.plus_millis(ENROLLMENT_TTL_MS) {
            return Err(ServiceError::Conflict(
                "this 2FA setup was started more than 10 minutes ago; start it again for a new QR code".into(),
            ));
        }
        // Enabling clears the counter, the reserved attempt included.
        self.reserve_totp_attempt(&account, "confirm", actor.source(), &CodeCaller::Established).await?;
        let Some(step) = totp_step(&tf.seed, &account.name, code, self.now_ms())? else {
            return Err(self.totp_failure(&account, "confirm", "wrong", actor.source()).await?);
        };
        let (codes, hashes) = new_recovery_codes()?;
        let now = self.now_ms();
        // Issue #19: 2FA turned on holds every withdrawal of the account (see holds.rs).
        let held_until = self.hold_period(actor, now).map(|p| p.until);
        let audit = self.owner_draft(
            &account,
            "totp.confirm",
            actor.source(),
            serde_json::json!({ "recovery_codes": RECOVERY_CODES, "withdrawals_held_until": held_until }),
        );
        self.inner.store.enable_two_factor(account.id, step, &hashes, now, held_until, audit).await?;
        Ok(codes)
    }

    /// Replaces the owner's recovery codes by a new set (the old ones, used or not, stop
    /// working), given a current TOTP code or a recovery code. Audited as
    /// `totp.recovery_codes_regenerated`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] when 2FA is not on or for non-owners,
    /// [`ServiceError::InvalidCode`], [`ServiceError::Throttled`].
    pub async fn regenerate_recovery_codes(&self, actor: &Actor, code: &str) -> ServiceResult<RecoveryCodes> {
        let account = self.own_account(actor).await?;
        let method = self
            .verify_second_factor(&account, code, "recovery_codes", actor.source(), &CodeCaller::Established)
            .await?;
        let (codes, hashes) = new_recovery_codes()?;
        let audit = self.owner_draft(
            &account,
            "totp.recovery_codes_regenerated",
            actor.source(),
            serde_json::json!({ "method": method, "recovery_codes": RECOVERY_CODES }),
        );
        self.inner.store.replace_recovery_codes(account.id, &hashes, audit).await?;
        Ok(codes)
    }

    /// Turns 2FA off, given a current TOTP code or a recovery code; withdrawals are locked for
    /// [`crate::ServiceConfig::withdrawal_lock_ms`], and every trade and withdraw key is suspended
    /// until 2FA is back and the owner re-enables it (see `suspend_trading_keys`). Audited as
    /// `totp.disable`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] when 2FA is not on or for non-owners,
    /// [`ServiceError::InvalidCode`], [`ServiceError::Throttled`].
    pub async fn totp_disable(&self, actor: &Actor, code: &str) -> ServiceResult<()> {
        let account = self.own_account(actor).await?;
        let method =
            self.verify_second_factor(&account, code, "disable", actor.source(), &CodeCaller::Established).await?;
        let suspended = self.suspend_trading_keys(actor, account.id, "2fa_disabled", None).await?;
        let until = self.lock_until(&account, self.now_ms());
        let audit = self.owner_draft(
            &account,
            "totp.disable",
            actor.source(),
            serde_json::json!({ "method": method, "withdrawals_locked_until": until, "keys_suspended": suspended }),
        );
        self.inner.store.disable_two_factor(account.id, Some(until), audit).await?;
        Ok(())
    }

    /// The 2FA state of `account` (owners: their own only).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account.
    pub async fn two_factor_status(&self, actor: &Actor, account: &str) -> ServiceResult<TwoFactorView> {
        let rec = self.account_record(actor, account).await?;
        let tf = self.inner.store.two_factor(rec.id).await?;
        let now = self.now_ms();
        Ok(TwoFactorView {
            enabled: tf.as_ref().is_some_and(|t| t.enabled),
            pending_enrollment: tf.as_ref().is_some_and(|t| !t.enabled),
            recovery_codes_left: self.inner.store.recovery_codes_left(rec.id).await?,
            withdrawals_locked_until: rec.withdrawals_locked_until.filter(|u| *u > now),
        })
    }

    /// Operator only: removes an account's 2FA (its owner lost the device), suspends its trade and
    /// withdraw keys, ends all its sessions and locks withdrawals. Audited as `totp.reset`.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for owners, [`ServiceError::NotFound`].
    pub async fn totp_reset(&self, actor: &Actor, account: &str) -> ServiceResult<()> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden(
                "only the operator can reset 2FA; owners disable it with a code".into(),
            ));
        }
        let mut rec = self.account_record(actor, account).await?;
        let suspended = self.suspend_trading_keys(actor, rec.id, "2fa_reset", None).await?;
        let until = self.lock_until(&rec, self.now_ms());
        let audit = self.draft(
            actor.label(),
            "totp.reset",
            format!("account:{}", rec.name),
            Some(rec.id),
            actor.source(),
            serde_json::json!({ "withdrawals_locked_until": until, "keys_suspended": suspended }),
        );
        self.inner.store.disable_two_factor(rec.id, Some(until), audit).await?;
        rec.withdrawals_locked_until = Some(until);
        let audit = self.draft(
            actor.label(),
            "auth.sessions_ended",
            format!("account:{}", rec.name),
            Some(rec.id),
            actor.source(),
            serde_json::json!({ "reason": "totp.reset" }),
        );
        self.inner.store.update_account_ending_sessions(&rec, None, audit).await?;
        Ok(())
    }

    /// When withdrawals of `account` are locked at `now`, the end of the lock.
    ///
    /// # Errors
    /// Storage errors; [`ServiceError::NotFound`] for an unknown account.
    pub async fn withdrawals_locked_until(
        &self,
        account: AccountId,
        now: UnixMillis,
    ) -> ServiceResult<Option<UnixMillis>> {
        let rec = self.account_by_id(account).await?;
        Ok(rec.withdrawals_locked_until.filter(|u| *u > now))
    }

    /// `Ok` unless withdrawals of `account` are locked at `now` (24 h after a password change or
    /// 2FA removal).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] saying until when; storage errors.
    pub async fn check_withdrawals_allowed(&self, account: AccountId, now: UnixMillis) -> ServiceResult<()> {
        match self.withdrawals_locked_until(account, now).await? {
            None => Ok(()),
            Some(until) => Err(ServiceError::Forbidden(format!(
                "withdrawals are locked for {} more minutes after a recent password or 2FA change (until {} ms)",
                (until.0 - now.0).div_ceil(60_000),
                until.0
            ))),
        }
    }
}
