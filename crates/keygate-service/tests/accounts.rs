//! Issue #6 through the service on a real SQLite store and a manual clock: sign-up, login and
//! its throttles, sessions (timeouts, rotation, CSRF), TOTP 2FA with recovery codes, step-up,
//! the 2FA requirement for trading keys and the withdrawal lock. Every refusal is checked to
//! leave the state as it was.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_auth::{IpAllowlist, KeyLookup as _, KeyStatus, Permission, Permissions, Restrictions};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::{
    Actor, ManualClock, NewKey, NewKeyMaterial, NewSession, PasswordParams, RecoveryCodes, Service, ServiceConfig,
    ServiceError, SessionToken, TotpEnrollment,
};
use keygate_store::Store;
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

/// A multiple of 30 s, so TOTP steps start on it.
const NOW: UnixMillis = UnixMillis(1_767_225_600_000);
const PASSWORD: &str = "correct horse battery";
const IP: &str = "192.0.2.1";
const MINUTE: u64 = 60_000;

struct Env {
    service: Service,
    /// The service's store, to look behind it.
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
}

async fn env_with(tune: impl FnOnce(&mut ServiceConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap());
    let clock = Arc::new(ManualClock::new(UnixMicros(NOW.as_micros())));
    let mut config = ServiceConfig { password: PasswordParams::insecure_for_tests(), ..ServiceConfig::default() };
    tune(&mut config);
    let sign_up = config.sign_up == keygate_service::SignUpMode::Open;
    let service = Service::start(Arc::clone(&store), clock.clone(), config).await.unwrap();
    for name in ["alice", "bob"] {
        if sign_up {
            service.sign_up(name, pw(PASSWORD), Some(IP.into())).await.unwrap();
        } else {
            service.create_account(&Actor::operator_cli(), name, pw(PASSWORD)).await.unwrap();
        }
    }
    Env { service, store, clock, dir }
}

async fn env() -> Env {
    env_with(|_| {}).await
}

fn pw(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_owned())
}

fn src() -> Option<String> {
    Some(IP.into())
}

impl Env {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.clock.now_ms())
    }

    async fn login(&self, name: &str) -> NewSession {
        self.service.login(name, pw(PASSWORD), src()).await.unwrap()
    }

    async fn actor(&self, token: &SessionToken) -> Actor {
        self.service.session_actor(token, src()).await.unwrap()
    }

    /// Logs alice in, enrolls and confirms TOTP; returns her session, the TOTP generator and
    /// her recovery codes. The clock moves to the next TOTP step after each code used.
    async fn alice_with_2fa(&self) -> (NewSession, totp_rs::Totp, RecoveryCodes) {
        let s = self.login("alice").await;
        let actor = self.actor(&s.token).await;
        let enrollment = self.service.totp_enroll(&actor).await.unwrap();
        let totp = totp_of(&enrollment);
        let codes = self.service.totp_confirm(&actor, &self.code(&totp)).await.unwrap();
        self.clock.advance_ms(30_000);
        (s, totp, codes)
    }

    fn code(&self, totp: &totp_rs::Totp) -> String {
        totp.generate(self.now().0 / 1000).to_string()
    }

    async fn audit_actions(&self) -> Vec<String> {
        self.service.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap().into_iter().map(|a| a.action).collect()
    }

    async fn audit_len(&self) -> usize {
        self.audit_actions().await.len()
    }
}

trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        keygate_service::Clock::now(self).as_millis().0
    }
}

fn totp_of(e: &TotpEnrollment) -> totp_rs::Totp {
    totp_rs::Totp::from_url(&e.otpauth_uri).expect("a valid otpauth URI")
}

fn trade_key(account: &str) -> NewKey {
    NewKey {
        account: account.into(),
        label: "bot".into(),
        material: NewKeyMaterial::Hmac,
        permissions: Permissions::with(&[Permission::Trade]),
        restrictions: Restrictions::default(),
        confirm_wide_ip: false,
    }
}

fn unauthenticated<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> bool {
    matches!(r, Err(ServiceError::Unauthenticated(_)))
}

#[tokio::test]
async fn sign_up_and_login_give_an_owner_session_with_a_csrf_token_all_audited() {
    let e = env().await;
    let s = e.login("alice").await;
    assert!(!s.info.two_factor_pending);
    assert_eq!(s.info.account, "alice");
    assert!(s.token.check_csrf(&s.info.csrf_token));
    match e.actor(&s.token).await {
        Actor::Owner { name, stepped_up_until, source, .. } => {
            assert_eq!((name.as_str(), stepped_up_until, source.as_deref()), ("alice", None, Some(IP)));
        }
        other => panic!("{other:?}"),
    }
    let actions = e.audit_actions().await;
    assert_eq!(actions, ["account.sign_up", "account.sign_up", "auth.login"]);
    let alice = e.actor(&s.token).await;
    let own = e.service.audit_log(&alice, 0, 100).await.unwrap();
    assert_eq!(own.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["account.sign_up", "auth.login"]);
    assert!(own.iter().all(|a| a.target == "account:alice"), "an owner saw another account's events");
    // Sign-up refusals.
    assert!(matches!(e.service.sign_up("alice", pw(PASSWORD), src()).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(e.service.sign_up("carol", pw("short"), src()).await, Err(ServiceError::Invalid(_))));
    // Ten sign-up attempts per address per hour: alice, bob and the taken name above came from
    // IP already (a taken name counts; invalid input, refused before any work, does not).
    for i in 0..7 {
        e.service.sign_up(&format!("user{i}"), pw(PASSWORD), src()).await.unwrap();
    }
    let err = e.service.sign_up("user8", pw(PASSWORD), src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Throttled { .. }), "{err}");
    assert!(matches!(e.service.account(&Actor::operator_cli(), "user8").await, Err(ServiceError::NotFound(_))));
    e.service.sign_up("user8", pw(PASSWORD), Some("198.51.100.3".into())).await.unwrap();
    e.clock.advance_ms(60 * MINUTE);
    e.service.sign_up("user9", pw(PASSWORD), src()).await.unwrap();
    let closed = env_with(|c| c.sign_up = keygate_service::SignUpMode::Closed).await;
    assert!(matches!(closed.service.sign_up("carol", pw(PASSWORD), src()).await, Err(ServiceError::Forbidden(_))));
}

#[tokio::test]
async fn wrong_password_and_unknown_name_get_one_answer_are_audited_and_open_no_session() {
    let e = env().await;
    let before = e.audit_len().await;
    let wrong = e.service.login("alice", pw("correct horse batterx"), src()).await.unwrap_err();
    let unknown = e.service.login("mallory", pw(PASSWORD), src()).await.unwrap_err();
    assert!(matches!(wrong, ServiceError::Unauthenticated(_)), "{wrong}");
    assert_eq!(wrong.to_string(), unknown.to_string(), "the answer tells names apart");
    let log = e.service.audit_log(&Actor::operator_cli(), 0, 100).await.unwrap();
    let failures: Vec<_> = log.iter().filter(|a| a.action == "auth.login_failed").collect();
    assert_eq!(failures.len(), 2);
    assert_eq!(e.audit_len().await, before + 2, "a failure wrote more than its audit record");
    assert_eq!(failures[0].details["reason"], "password");
    assert_eq!(failures[0].source.as_deref(), Some(IP));
}

#[tokio::test]
async fn logins_are_throttled_per_account_and_per_address_until_the_window_passes() {
    let e = env().await;
    let guesser = || Some("198.51.100.1".to_owned());
    for _ in 0..5 {
        assert!(unauthenticated(e.service.login("alice", pw("wrong password!"), guesser()).await));
    }
    // Even the right password is refused now from the guessing address: the (account, address)
    // pair is throttled.
    let err = e.service.login("alice", pw(PASSWORD), guesser()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Throttled { retry_after_ms, .. } if retry_after_ms == 15 * MINUTE), "{err}");
    let throttled_audits = e
        .service
        .audit_log(&Actor::operator_cli(), 0, 100)
        .await
        .unwrap()
        .iter()
        .filter(|a| a.details["reason"] == "throttled")
        .count();
    let _ = e.service.login("alice", pw(PASSWORD), guesser()).await.unwrap_err();
    assert_eq!(throttled_audits, 1);
    assert_eq!(
        e.service
            .audit_log(&Actor::operator_cli(), 0, 100)
            .await
            .unwrap()
            .iter()
            .filter(|a| a.details["reason"] == "throttled")
            .count(),
        1,
        "a flood of refused attempts writes one audit record per window"
    );
    // The owner, from an address with no failures, is not locked out (review finding 6).
    e.login("alice").await;
    // Bob is not affected.
    e.login("bob").await;
    e.clock.advance_ms(15 * MINUTE);
    e.service.login("alice", pw(PASSWORD), guesser()).await.unwrap();

    // Per address: 20 failures over many names from one address block it for every name.
    let e = env().await;
    for i in 0..20 {
        let _ = e.service.login(&format!("user{i}"), pw("wrong password!"), Some("2001:db8::1".into())).await;
    }
    let err = e.service.login("bob", pw(PASSWORD), Some("2001:db8::2".into())).await.unwrap_err();
    assert!(matches!(err, ServiceError::Throttled { .. }), "the same /64 was not throttled: {err}");
    e.service.login("bob", pw(PASSWORD), Some("2001:db8:0:1::2".into())).await.unwrap();
}

#[tokio::test]
async fn with_2fa_a_login_is_pending_until_its_code_and_then_the_id_rotates() {
    let e = env().await;
    let (_, totp, _) = e.alice_with_2fa().await;
    let s = e.login("alice").await;
    assert!(s.info.two_factor_pending);
    assert!(s.info.two_factor_enabled);
    assert!(unauthenticated(e.service.session_actor(&s.token, src()).await), "a pending login acts as the owner");
    assert!(e.service.session(&s.token, src()).await.unwrap().two_factor_pending);
    // A wrong code leaves the session pending and the id unchanged.
    let err = e.service.login_second_factor(&s.token, "000000", src(), None).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "{err}");
    assert!(e.service.session(&s.token, src()).await.unwrap().two_factor_pending);
    let done = e.service.login_second_factor(&s.token, &e.code(&totp), src(), None).await.unwrap();
    assert!(!done.info.two_factor_pending);
    assert_ne!(done.token.expose(), s.token.expose());
    assert_ne!(done.info.csrf_token, s.info.csrf_token, "the CSRF token survived the rotation");
    assert!(unauthenticated(e.service.session(&s.token, src()).await), "the pre-2FA id still works");
    assert!(!s.token.check_csrf(&done.info.csrf_token));
    e.actor(&done.token).await;
    assert!(matches!(
        e.service.login_second_factor(&done.token, "123456", src(), None).await,
        Err(ServiceError::Conflict(_))
    ));
    // A pending login that waits too long ends.
    e.clock.advance_ms(30_000);
    let slow = e.login("alice").await;
    e.clock.advance_ms(5 * MINUTE);
    assert!(unauthenticated(e.service.login_second_factor(&slow.token, &e.code(&totp), src(), None).await));
}

#[tokio::test]
async fn a_totp_code_is_accepted_once_and_a_reused_one_changes_nothing() {
    let e = env().await;
    let (_, totp, _) = e.alice_with_2fa().await;
    let s = e.login("alice").await;
    let code = e.code(&totp);
    let done = e.service.login_second_factor(&s.token, &code, src(), None).await.unwrap();
    let before = e.audit_len().await;
    let err = e.service.step_up(&done.token, &code, src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(ref m) if m.contains("already used")), "{err}");
    // Unchanged: the same id still works, not stepped up; only the failure was audited.
    let Actor::Owner { stepped_up_until, .. } = e.actor(&done.token).await else { panic!() };
    assert_eq!(stepped_up_until, None);
    assert_eq!(e.audit_actions().await[before..], ["totp.failed"]);
    // The next step's code works.
    e.clock.advance_ms(30_000);
    e.service.step_up(&done.token, &e.code(&totp), src()).await.unwrap();
}

#[tokio::test]
async fn step_up_needs_a_fresh_code_opens_five_minutes_and_rotates_the_id() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let before = e.audit_len().await;
    for bad in ["", "12345", "abcdef", "999999"] {
        let err = e.service.step_up(&s.token, bad, src()).await.unwrap_err();
        assert!(matches!(err, ServiceError::InvalidCode(_)), "{bad:?}: {err}");
    }
    let Actor::Owner { stepped_up_until, .. } = e.actor(&s.token).await else { panic!() };
    assert_eq!(stepped_up_until, None, "a wrong code opened the window");
    assert_eq!(e.audit_len().await, before + 4, "every failed code is audited");
    // The owner without a step-up cannot create a trading key; with one they can.
    let plain = e.actor(&s.token).await;
    assert!(matches!(e.service.create_key(&plain, trade_key("alice")).await, Err(ServiceError::StepUpRequired(_))));
    let up = e.service.step_up(&s.token, &e.code(&totp), src()).await.unwrap();
    assert_eq!(up.info.stepped_up_until, Some(e.now().plus_millis(5 * MINUTE)));
    assert!(unauthenticated(e.service.session(&s.token, src()).await), "the id before the step-up still works");
    let elevated = e.actor(&up.token).await;
    assert!(elevated.stepped_up(e.now()));
    e.service.create_key(&elevated, trade_key("alice")).await.unwrap();
    assert!(e.audit_actions().await.contains(&"auth.step_up".to_owned()));
    e.clock.advance_ms(5 * MINUTE);
    let later = e.actor(&up.token).await;
    assert!(!later.stepped_up(e.now()), "the window did not close");
    assert!(matches!(e.service.create_key(&later, trade_key("alice")).await, Err(ServiceError::StepUpRequired(_))));
    // No 2FA, no step-up.
    let b = e.login("bob").await;
    assert!(matches!(e.service.step_up(&b.token, "123456", src()).await, Err(ServiceError::Forbidden(_))));
}

#[tokio::test]
async fn owners_need_2fa_for_trading_keys_operators_do_not() {
    let e = env().await;
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let stepped = match bob.clone() {
        Actor::Owner { account_id, name, source, .. } => Actor::Owner {
            account_id,
            name,
            source,
            stepped_up_until: Some(e.now().plus_millis(MINUTE)),
            fresh_code: None,
        },
        other => other,
    };
    let before = e.audit_len().await;
    let err = e.service.create_key(&stepped, trade_key("bob")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(ref m) if m.contains("2FA")), "{err}");
    let withdraw = NewKey {
        permissions: Permissions::with(&[Permission::Withdraw]),
        restrictions: Restrictions {
            ip_allowlist: IpAllowlist::parse(&["192.0.2.0/24"]).unwrap(),
            withdraw_addresses: vec![ADDR_A.into()],
            ..Restrictions::default()
        },
        ..trade_key("bob")
    };
    assert!(matches!(e.service.create_key(&stepped, withdraw).await, Err(ServiceError::Forbidden(_))));
    // Nor by widening a read-only key.
    let ro =
        e.service.create_key(&bob, NewKey { permissions: Permissions::READ_ONLY, ..trade_key("bob") }).await.unwrap();
    let widen =
        keygate_service::KeyEdit { permissions: Some(Permissions::with(&[Permission::Trade])), ..Default::default() };
    assert!(matches!(
        e.service.edit_key(&stepped, &ro.key.api_key, widen.clone()).await,
        Err(ServiceError::Forbidden(_))
    ));
    assert_eq!(e.service.key(&bob, &ro.key.api_key).await.unwrap().permissions, Permissions::READ_ONLY);
    assert_eq!(e.audit_len().await, before + 1, "only the read-only key was created");
    // Operators are unaffected; the switch turns the rule off.
    e.service.create_key(&Actor::operator_cli(), trade_key("bob")).await.unwrap();
    e.service.edit_key(&Actor::operator_cli(), &ro.key.api_key, widen).await.unwrap();
    let off = env_with(|c| c.require_2fa_for_trading_keys = false).await;
    let s = off.login("bob").await;
    let Actor::Owner { account_id, name, source, .. } = off.actor(&s.token).await else { panic!() };
    let stepped = Actor::Owner {
        account_id,
        name,
        source,
        stepped_up_until: Some(off.now().plus_millis(MINUTE)),
        fresh_code: None,
    };
    off.service.create_key(&stepped, trade_key("bob")).await.unwrap();
}

#[tokio::test]
async fn totp_codes_are_throttled_per_account_for_five_minutes_even_the_right_one() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    for _ in 0..5 {
        assert!(matches!(e.service.step_up(&s.token, "000000", src()).await, Err(ServiceError::InvalidCode(_))));
    }
    let right = e.code(&totp);
    let err = e.service.step_up(&s.token, &right, src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Throttled { .. }), "{err}");
    // Codes finishing a login are counted apart (issue #18: whoever has only the password must
    // not be able to lock the owner's sessions, nor the other way round): a fresh login's
    // second factor is still checked, and a wrong code there adds nothing to this counter.
    let second = e.login("alice").await;
    assert!(matches!(
        e.service.login_second_factor(&second.token, "000000", src(), None).await,
        Err(ServiceError::InvalidCode(_))
    ));
    let Actor::Owner { stepped_up_until, .. } = e.actor(&s.token).await else { panic!() };
    assert_eq!(stepped_up_until, None);
    for _ in 0..3 {
        let _ = e.service.step_up(&s.token, "000000", src()).await.unwrap_err();
    }
    let failed = e.service.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    let throttled = failed.iter().filter(|a| a.action == "totp.failed" && a.details["reason"] == "throttled").count();
    assert_eq!(throttled, 1, "refusals flood the audit log");
    e.clock.advance_ms(5 * MINUTE);
    e.service.step_up(&s.token, &e.code(&totp), src()).await.unwrap();
}

#[tokio::test]
async fn sessions_end_after_thirty_idle_minutes_or_twelve_hours_whatever_the_use() {
    let e = env().await;
    let idle = e.login("alice").await;
    e.clock.advance_ms(29 * MINUTE);
    e.actor(&idle.token).await; // use refreshes the idle timer
    e.clock.advance_ms(29 * MINUTE);
    e.actor(&idle.token).await;
    e.clock.advance_ms(30 * MINUTE);
    let before = e.audit_len().await;
    assert!(unauthenticated(e.service.session_actor(&idle.token, src()).await), "idle session still works");
    assert!(unauthenticated(e.service.session(&idle.token, src()).await));
    assert_eq!(e.audit_len().await, before, "expiry is not an audited action");

    let busy = e.login("alice").await;
    for _ in 0..(12 * 60 / 20 - 1) {
        e.clock.advance_ms(20 * MINUTE);
        e.actor(&busy.token).await;
    }
    e.clock.advance_ms(20 * MINUTE);
    assert!(unauthenticated(e.service.session_actor(&busy.token, src()).await), "a 12 h old session still works");
    // Custom lifetimes.
    let short = env_with(|c| c.sessions.idle_timeout_ms = MINUTE).await;
    let s = short.login("bob").await;
    short.clock.advance_ms(MINUTE);
    assert!(unauthenticated(short.service.session(&s.token, src()).await));
}

#[tokio::test]
async fn logout_ends_the_session_and_is_audited_once() {
    let e = env().await;
    let s = e.login("alice").await;
    let other = e.login("alice").await;
    e.service.logout(&s.token, src()).await.unwrap();
    assert!(unauthenticated(e.service.session(&s.token, src()).await));
    e.actor(&other.token).await;
    e.service.logout(&s.token, src()).await.unwrap();
    assert_eq!(e.audit_actions().await.iter().filter(|a| *a == "auth.logout").count(), 1);
    let garbage = SessionToken::parse("kgsess_0000000000000000000000000000000000000000000").unwrap();
    assert!(unauthenticated(e.service.session(&garbage, src()).await));
}

#[tokio::test]
async fn disabling_2fa_needs_a_code_and_locks_withdrawals_for_24_hours() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let alice = e.actor(&s.token).await;
    let Actor::Owner { account_id, .. } = alice.clone() else { panic!() };
    e.service.check_withdrawals_allowed(account_id, e.now()).await.unwrap();
    let err = e.service.totp_disable(&alice, "000000").await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "{err}");
    assert!(e.service.two_factor_status(&alice, "alice").await.unwrap().enabled, "a wrong code disabled 2FA");
    e.service.check_withdrawals_allowed(account_id, e.now()).await.unwrap();
    e.service.totp_disable(&alice, &e.code(&totp)).await.unwrap();
    let status = e.service.two_factor_status(&alice, "alice").await.unwrap();
    assert!(!status.enabled);
    assert_eq!(status.recovery_codes_left, 0);
    assert_eq!(status.withdrawals_locked_until, Some(e.now().plus_millis(24 * 60 * MINUTE)));
    let err = e.service.check_withdrawals_allowed(account_id, e.now()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(ref m) if m.contains("locked")), "{err}");
    e.clock.advance_ms(24 * 60 * MINUTE - 1);
    assert!(e.service.check_withdrawals_allowed(account_id, e.now()).await.is_err());
    e.clock.advance_ms(1);
    e.service.check_withdrawals_allowed(account_id, e.now()).await.unwrap();
    assert!(e.audit_actions().await.contains(&"totp.disable".to_owned()));
}

#[tokio::test]
async fn a_password_change_needs_the_current_password_ends_other_sessions_and_locks_withdrawals() {
    let e = env().await;
    let s = e.login("alice").await;
    let other = e.login("alice").await;
    let Actor::Owner { account_id, .. } = e.actor(&s.token).await else { panic!() };
    let before = e.audit_len().await;
    let err = e.service.change_password(&s.token, pw("not my password"), pw("a new long password"), None, src()).await;
    assert!(unauthenticated(err));
    let err = e.service.change_password(&s.token, pw(PASSWORD), pw("short"), None, src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(_)), "{err}");
    // Unchanged: both sessions live, old password works, no lock.
    e.actor(&other.token).await;
    e.service.check_withdrawals_allowed(account_id, e.now()).await.unwrap();
    assert_eq!(e.audit_actions().await[before..], ["auth.login_failed"]);
    let fresh =
        e.service.change_password(&s.token, pw(PASSWORD), pw("a new long password"), None, src()).await.unwrap();
    e.actor(&fresh.token).await;
    assert!(unauthenticated(e.service.session(&s.token, src()).await));
    assert!(unauthenticated(e.service.session(&other.token, src()).await), "another session survived");
    assert!(unauthenticated(e.service.login("alice", pw(PASSWORD), src()).await));
    e.service.login("alice", pw("a new long password"), src()).await.unwrap();
    assert!(e.service.check_withdrawals_allowed(account_id, e.now().plus_millis(24 * 60 * MINUTE - 1)).await.is_err());
    e.service.check_withdrawals_allowed(account_id, e.now().plus_millis(24 * 60 * MINUTE)).await.unwrap();
    // The operator's reset locks and ends sessions too.
    e.clock.advance_ms(48 * 60 * MINUTE);
    let live = e.login("bob").await;
    e.service.set_password(&Actor::operator_cli(), "bob", pw("operator chose this")).await.unwrap();
    assert!(unauthenticated(e.service.session(&live.token, src()).await));
    let bob = e.service.account(&Actor::operator_cli(), "bob").await.unwrap();
    assert!(e.service.check_withdrawals_allowed(keygate_auth::AccountId(bob.id), e.now()).await.is_err());
}

#[tokio::test]
async fn recovery_codes_stand_in_for_a_totp_code_once_each() {
    let e = env().await;
    let (_, _, codes) = e.alice_with_2fa().await;
    assert_eq!(codes.codes.len(), 10);
    let s = e.login("alice").await;
    let code = codes.codes[3].to_uppercase().replace('-', " ");
    let done = e.service.login_second_factor(&s.token, &code, src(), None).await.unwrap();
    assert!(e.audit_actions().await.contains(&"auth.recovery_code_used".to_owned()));
    let err = e.service.step_up(&done.token, &codes.codes[3], src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "a recovery code worked twice: {err}");
    let up = e.service.step_up(&done.token, &codes.codes[4], src()).await.unwrap();
    let alice = e.actor(&up.token).await;
    assert_eq!(e.service.two_factor_status(&alice, "alice").await.unwrap().recovery_codes_left, 8);
    // A new set replaces the old one; it takes a code, and a wrong one changes nothing.
    assert!(matches!(e.service.regenerate_recovery_codes(&alice, "000000").await, Err(ServiceError::InvalidCode(_))));
    assert_eq!(e.service.two_factor_status(&alice, "alice").await.unwrap().recovery_codes_left, 8);
    let fresh = e.service.regenerate_recovery_codes(&alice, &codes.codes[5]).await.unwrap();
    assert_eq!(e.service.two_factor_status(&alice, "alice").await.unwrap().recovery_codes_left, 10);
    e.clock.advance_ms(30_000);
    let again = e.login("alice").await;
    let err = e.service.login_second_factor(&again.token, &codes.codes[6], src(), None).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "an old recovery code still works: {err}");
    e.service.login_second_factor(&again.token, &fresh.codes[0], src(), None).await.unwrap();
    assert!(e.audit_actions().await.contains(&"totp.recovery_codes_regenerated".to_owned()));
}

#[tokio::test]
async fn enrollment_gives_uri_qr_and_secret_and_confirmation_needs_a_right_code() {
    let e = env().await;
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let en = e.service.totp_enroll(&bob).await.unwrap();
    assert!(en.otpauth_uri.starts_with("otpauth://totp/keygate:bob?"), "{}", en.otpauth_uri);
    assert!(en.otpauth_uri.contains(&format!("secret={}", en.secret_base32)));
    assert!(en.qr_svg.starts_with("<?xml") && en.qr_svg.contains("<svg"), "{}", &en.qr_svg[..60]);
    assert_eq!(en.secret_base32.len(), 32, "160-bit seed");
    assert_eq!(format!("{en:?}"), "TotpEnrollment(<hidden>)");
    let totp = totp_of(&en);
    let err = e.service.totp_confirm(&bob, "000000").await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "{err}");
    let status = e.service.two_factor_status(&bob, "bob").await.unwrap();
    assert!(!status.enabled && status.pending_enrollment);
    // Re-enrolling replaces the seed: the first app's codes no longer confirm.
    let en2 = e.service.totp_enroll(&bob).await.unwrap();
    assert_ne!(en2.secret_base32, en.secret_base32);
    assert!(matches!(e.service.totp_confirm(&bob, &e.code(&totp)).await, Err(ServiceError::InvalidCode(_))));
    let codes = e.service.totp_confirm(&bob, &e.code(&totp_of(&en2))).await.unwrap();
    assert_eq!(codes.codes.len(), 10);
    assert!(e.service.two_factor_status(&bob, "bob").await.unwrap().enabled);
    assert!(matches!(e.service.totp_enroll(&bob).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(e.service.totp_confirm(&bob, "123456").await, Err(ServiceError::Conflict(_))));
    // Not for operators; an owner sees only their own status.
    assert!(matches!(e.service.totp_enroll(&Actor::operator_cli()).await, Err(ServiceError::Forbidden(_))));
    assert!(matches!(e.service.two_factor_status(&bob, "alice").await, Err(ServiceError::NotFound(_))));
    let actions = e.audit_actions().await;
    for want in ["totp.enroll", "totp.confirm", "totp.failed"] {
        assert!(actions.contains(&want.to_owned()), "{want} not audited: {actions:?}");
    }
}

#[tokio::test]
async fn the_operator_resets_a_lost_device_ending_sessions_owners_cannot() {
    let e = env().await;
    let (s, _, _) = e.alice_with_2fa().await;
    let alice = e.actor(&s.token).await;
    assert!(matches!(e.service.totp_reset(&alice, "alice").await, Err(ServiceError::Forbidden(_))));
    assert!(e.service.two_factor_status(&alice, "alice").await.unwrap().enabled);
    e.service.totp_reset(&Actor::operator_cli(), "alice").await.unwrap();
    assert!(unauthenticated(e.service.session(&s.token, src()).await));
    let again = e.login("alice").await;
    assert!(!again.info.two_factor_pending, "2FA still asked for after the reset");
    assert!(again.info.withdrawals_locked_until.is_some());
    let log = e.service.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    let reset = log.iter().find(|a| a.action == "totp.reset").unwrap();
    assert_eq!(reset.actor, "operator:cli");
}

#[tokio::test]
async fn the_database_holds_no_totp_seed_session_id_or_recovery_code_in_plain_text() {
    let e = env().await;
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let en = e.service.totp_enroll(&bob).await.unwrap();
    let codes = e.service.totp_confirm(&bob, &e.code(&totp_of(&en))).await.unwrap();
    e.clock.advance_ms(30_000);
    let pending = e.login("bob").await;
    let full = e.service.login_second_factor(&pending.token, &codes.codes[0], src(), None).await.unwrap();
    let seed = totp_rs::Secret::try_from_base32(&en.secret_base32).unwrap().as_bytes().to_vec();
    let mut dump = Vec::new();
    for entry in std::fs::read_dir(e.dir.path()).unwrap() {
        dump.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let has = |needle: &[u8]| dump.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"totp.confirm"), "the dump sees nothing");
    assert!(!has(&seed), "raw seed");
    assert!(!has(en.secret_base32.as_bytes()), "base32 seed");
    assert!(!has(hex_lower(&seed).as_bytes()), "hex seed");
    for t in [&s.token, &pending.token, &full.token] {
        assert!(!has(t.expose().as_bytes()), "a session id");
        assert!(!has(t.csrf_token().as_bytes()), "a CSRF token");
    }
    for c in &codes.codes {
        assert!(!has(c.as_bytes()) && !has(c.replace('-', "").as_bytes()), "a recovery code");
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn junk_names_and_huge_passwords_are_refused_cheaply_and_recorded_without_echo() {
    let e = env().await;
    let junk = "X".repeat(100_000);
    assert!(unauthenticated(e.service.login(&junk, pw(PASSWORD), src()).await));
    let huge = "y".repeat(1_000_000);
    assert!(unauthenticated(e.service.login("alice", pw(&huge), src()).await));
    let log = e.service.audit_log(&Actor::operator_cli(), 0, 100).await.unwrap();
    let failed: Vec<_> = log.iter().filter(|a| a.action == "auth.login_failed").collect();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].target, "account:<invalid>");
    assert!(log.iter().all(|a| a.target.len() < 100 && a.actor.len() < 100));
}

#[tokio::test]
async fn flush_deletes_ended_sessions_at_most_once_a_minute() {
    let e = env().await;
    let s = e.login("alice").await;
    let hash = s.token.hash();
    e.service.flush(false).await.unwrap();
    assert!(e.store.session(&hash).await.unwrap().is_some(), "a live session was purged");
    e.clock.advance_ms(31 * MINUTE);
    e.service.flush(false).await.unwrap();
    assert!(e.store.session(&hash).await.unwrap().is_none(), "an idle session stayed in the store");
}

// ---------------------------------------------------------------------------------------------
// Issue #19: withdrawal holds, and a first password that is not a change.
// ---------------------------------------------------------------------------------------------

const DAY: u64 = 24 * 60 * MINUTE;
const ADDR_A: &str = "bc1qaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa00";
const ADDR_B: &str = "bc1qbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb00";

fn withdraw_key(account: &str, addresses: &[&str]) -> NewKey {
    NewKey {
        permissions: Permissions::with(&[Permission::Withdraw]),
        restrictions: Restrictions {
            ip_allowlist: IpAllowlist::parse(&["192.0.2.0/24"]).unwrap(),
            withdraw_addresses: addresses.iter().map(|a| (*a).to_owned()).collect(),
            ..Restrictions::default()
        },
        ..trade_key(account)
    }
}

fn key_id(k: &keygate_service::CreatedKey) -> keygate_auth::ApiKeyId {
    keygate_auth::ApiKeyId::parse(&k.key.api_key).unwrap()
}

impl Env {
    /// A step-up on `s` with a fresh code; returns the elevated actor (the session rotates),
    /// carrying the code as typed with the request that follows.
    async fn stepped_up(&self, s: &NewSession, totp: &totp_rs::Totp) -> (NewSession, Actor) {
        self.clock.advance_ms(30_000);
        let up = self.service.step_up(&s.token, &self.code(totp), src()).await.unwrap();
        let actor = self.actor(&up.token).await.with_fresh_code(up.fresh_code.expect("a step-up's fresh code"));
        (up, actor)
    }

    /// Logs alice in again with a fresh code (sessions end after 30 idle minutes).
    async fn relogin_alice(&self, totp: &totp_rs::Totp) -> NewSession {
        self.clock.advance_ms(30_000);
        let pending = self.login("alice").await;
        self.service.login_second_factor(&pending.token, &self.code(totp), src(), None).await.unwrap()
    }

    async fn block(
        &self,
        account: keygate_auth::AccountId,
        key: &keygate_auth::ApiKeyId,
        address: &str,
    ) -> Option<keygate_service::WithdrawalBlock> {
        self.service.withdrawal_block(account, key, address, self.now()).await.unwrap()
    }
}

#[tokio::test]
async fn the_password_alone_gets_a_thief_2fa_and_a_withdraw_key_but_no_withdrawal_for_24_hours() {
    let e = env().await;
    // bob has no 2FA: the password is all a thief needs to log in.
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let Actor::Owner { account_id, .. } = bob.clone() else { panic!() };
    let enrollment = e.service.totp_enroll(&bob).await.unwrap();
    let totp = totp_of(&enrollment);
    e.service.totp_confirm(&bob, &e.code(&totp)).await.unwrap();
    let confirmed_at = e.now();
    let (_, elevated) = e.stepped_up(&s, &totp).await;
    let key = e.service.create_key(&elevated, withdraw_key("bob", &[ADDR_A])).await.unwrap();
    let created_at = e.now();
    let id = key_id(&key);

    let block = e.block(account_id, &id, ADDR_A).await.expect("a hold");
    assert_eq!(block.until, created_at.plus_millis(DAY), "the later of the account's and the key's hold");
    assert_eq!(block.kind, keygate_service::HoldKind::WithdrawKey);
    let holds = e.service.withdrawal_holds(&bob, "bob").await.unwrap();
    let kinds: Vec<_> = holds.iter().map(|h| (h.kind, h.until)).collect();
    assert_eq!(
        kinds,
        vec![
            (keygate_service::HoldKind::TwoFactorEnabled, confirmed_at.plus_millis(DAY)),
            (keygate_service::HoldKind::WithdrawKey, created_at.plus_millis(DAY)),
        ]
    );
    // Audited with the changes that started them.
    let audit = e.service.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
    let confirm = audit.iter().find(|r| r.action == "totp.confirm").unwrap();
    assert_eq!(confirm.details["withdrawals_held_until"], confirmed_at.plus_millis(DAY).0);
    let create = audit.iter().find(|r| r.action == "key.create").unwrap();
    assert_eq!(create.details["withdrawal_holds"]["started"]["key"]["until"], created_at.plus_millis(DAY).0);

    // Durable: a service started afresh on the same database sees the same holds.
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store = SqliteStore::open(&e.dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
    let again = Service::start(Arc::new(store), e.clock.clone(), ServiceConfig::default()).await.unwrap();
    let reread = again.withdrawal_block(account_id, &id, ADDR_A, e.now()).await.unwrap();
    assert_eq!(reread.map(|b| b.until), Some(created_at.plus_millis(DAY)));

    e.clock.set(UnixMicros(created_at.plus_millis(DAY - 1).as_micros()));
    assert!(e.block(account_id, &id, ADDR_A).await.is_some());
    e.clock.advance_ms(1);
    assert_eq!(e.block(account_id, &id, ADDR_A).await, None);
    assert!(e.service.withdrawal_holds(&bob, "bob").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_new_address_is_held_on_its_key_only_and_removing_it_or_revoking_ends_the_hold() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let (_, alice) = e.stepped_up(&s, &totp).await;
    let Actor::Owner { account_id, .. } = alice.clone() else { panic!() };
    let key = e.service.create_key(&alice, withdraw_key("alice", &[ADDR_A])).await.unwrap();
    let other = e
        .service
        .create_key(&alice, NewKey { label: "other".into(), ..withdraw_key("alice", &[ADDR_A]) })
        .await
        .unwrap();
    let (id, other_id) = (key_id(&key), key_id(&other));
    e.clock.advance_ms(DAY);
    assert_eq!(e.block(account_id, &id, ADDR_A).await, None);

    let s = e.relogin_alice(&totp).await;
    let (s, alice) = e.stepped_up(&s, &totp).await;
    let add =
        keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into(), ADDR_B.into()]), ..Default::default() };
    e.service.edit_key(&alice, &key.key.api_key, add.clone()).await.unwrap();
    e.service.edit_key(&alice, &other.key.api_key, add).await.unwrap();
    let block = e.block(account_id, &id, ADDR_B).await.expect("the new address is held");
    assert_eq!((block.kind, block.until), (keygate_service::HoldKind::NewAddress, e.now().plus_millis(DAY)));
    assert_eq!(e.block(account_id, &id, ADDR_A).await, None, "the old address stopped working");

    // Removing the address ends its hold on that key (narrowing: no step-up needed).
    e.clock.advance_ms(5 * MINUTE);
    let plain = e.actor(&s.token).await;
    assert!(!plain.stepped_up(e.now()));
    let remove = keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into()]), ..Default::default() };
    e.service.edit_key(&plain, &key.key.api_key, remove).await.unwrap();
    assert_eq!(e.service.withdrawal_holds(&plain, "alice").await.unwrap().len(), 1, "the other key's hold stays");
    assert!(e.block(account_id, &other_id, ADDR_B).await.is_some());
    // Revoking the other key ends its hold too; both ends are audited.
    e.service.revoke_key(&plain, &other.key.api_key).await.unwrap();
    assert!(e.service.withdrawal_holds(&plain, "alice").await.unwrap().is_empty());
    let audit = e.service.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
    let last_edit = audit.iter().rev().find(|r| r.action == "key.edit").unwrap();
    assert_eq!(last_edit.details["withdrawal_holds"]["cancelled"]["addresses"][0]["address"], ADDR_B);
    let revoke = audit.iter().find(|r| r.action == "key.revoke").unwrap();
    assert_eq!(revoke.details["withdrawal_holds"]["cancelled"]["addresses"][0]["address"], ADDR_B);

    // Re-adding the address starts a new hold.
    let (_, alice) = e.stepped_up(&s, &totp).await;
    let add =
        keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into(), ADDR_B.into()]), ..Default::default() };
    e.service.edit_key(&alice, &key.key.api_key, add).await.unwrap();
    assert_eq!(e.block(account_id, &id, ADDR_B).await.map(|b| b.until), Some(e.now().plus_millis(DAY)));
}

#[tokio::test]
async fn widening_a_key_to_withdraw_holds_it_and_operators_start_no_holds() {
    let e = env().await;
    let (_, totp, _) = e.alice_with_2fa().await;
    e.clock.advance_ms(DAY);
    let s = e.relogin_alice(&totp).await;
    let (_, alice) = e.stepped_up(&s, &totp).await;
    let Actor::Owner { account_id, .. } = alice.clone() else { panic!() };
    let ro = e
        .service
        .create_key(&alice, NewKey { permissions: Permissions::READ_ONLY, ..withdraw_key("alice", &[ADDR_A]) })
        .await
        .unwrap();
    let widen = keygate_service::KeyEdit {
        permissions: Some(Permissions::with(&[Permission::Withdraw])),
        ..Default::default()
    };
    e.service.edit_key(&alice, &ro.key.api_key, widen).await.unwrap();
    let block = e.block(account_id, &key_id(&ro), ADDR_A).await.expect("held");
    assert_eq!(block.kind, keygate_service::HoldKind::WithdrawKey);

    // The operator (the CLI on the server's machine) starts none.
    let op = e.service.create_key(&Actor::operator_cli(), withdraw_key("alice", &[ADDR_A])).await.unwrap();
    let add =
        keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into(), ADDR_B.into()]), ..Default::default() };
    e.service.edit_key(&Actor::operator_cli(), &op.key.api_key, add).await.unwrap();
    assert_eq!(e.block(account_id, &key_id(&op), ADDR_B).await, None);
}

#[tokio::test]
async fn a_withdrawal_hold_of_zero_starts_no_holds() {
    let e = env_with(|c| c.withdrawal_hold_ms = 0).await;
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let Actor::Owner { account_id, .. } = bob.clone() else { panic!() };
    let totp = totp_of(&e.service.totp_enroll(&bob).await.unwrap());
    e.service.totp_confirm(&bob, &e.code(&totp)).await.unwrap();
    let (_, elevated) = e.stepped_up(&s, &totp).await;
    let key = e.service.create_key(&elevated, withdraw_key("bob", &[ADDR_A])).await.unwrap();
    let add =
        keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into(), ADDR_B.into()]), ..Default::default() };
    e.service.edit_key(&elevated, &key.key.api_key, add).await.unwrap();
    assert_eq!(e.block(account_id, &key_id(&key), ADDR_A).await, None);
    assert_eq!(e.block(account_id, &key_id(&key), ADDR_B).await, None);
    assert!(e.service.withdrawal_holds(&bob, "bob").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_first_password_is_not_a_change_and_locks_nothing_but_the_second_does() {
    let e = env().await;
    let op = Actor::operator_cli();
    let carol = e.service.create_account_without_password(&op, "carol").await.unwrap();
    let carol_id = keygate_auth::AccountId(carol.id);
    // No console password: nothing logs in, whatever is typed.
    assert!(unauthenticated(e.service.login("carol", pw("!no-console-password"), src()).await));
    assert!(e.service.check_password("carol", pw("")).await.unwrap().is_none());
    e.service.set_password(&op, "carol", pw(PASSWORD)).await.unwrap();
    e.service.check_withdrawals_allowed(carol_id, e.now()).await.unwrap();
    e.login("carol").await;
    let audit = e.service.audit_log(&op, 0, 10_000).await.unwrap();
    let set = audit.iter().rev().find(|r| r.action == "account.password").unwrap();
    assert_eq!((set.details["first"].as_bool(), set.details["withdrawals_locked_until"].is_null()), (Some(true), true));
    // The next one is a change.
    e.service.set_password(&op, "carol", pw("another good password")).await.unwrap();
    assert!(e.service.check_withdrawals_allowed(carol_id, e.now()).await.is_err());
    // Owners cannot create accounts this way either.
    let s = e.login("alice").await;
    let alice = e.actor(&s.token).await;
    assert!(matches!(e.service.create_account_without_password(&alice, "dave").await, Err(ServiceError::Forbidden(_))));
}

#[tokio::test]
async fn an_address_named_twice_is_kept_once_on_create_and_on_edit() {
    let e = env().await;
    let op = Actor::operator_cli();
    let k = e.service.create_key(&op, withdraw_key("alice", &[ADDR_A, ADDR_A])).await.unwrap();
    let view = e.service.key(&op, &k.key.api_key).await.unwrap();
    assert_eq!(view.withdraw_addresses, [ADDR_A]);
    let edit = keygate_service::KeyEdit {
        withdraw_addresses: Some(vec![ADDR_B.into(), ADDR_A.into(), ADDR_B.into()]),
        ..Default::default()
    };
    let view = e.service.edit_key(&op, &k.key.api_key, edit).await.unwrap();
    assert_eq!(view.withdraw_addresses, [ADDR_B, ADDR_A]);
}

#[tokio::test]
async fn turning_2fa_off_suspends_trade_and_withdraw_keys_until_2fa_is_back_and_the_owner_re_enables_them() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let (s, alice) = e.stepped_up(&s, &totp).await;
    let op = Actor::operator_cli();
    let trade = e.service.create_key(&alice, trade_key("alice")).await.unwrap();
    let withdraw = e.service.create_key(&alice, withdraw_key("alice", &[ADDR_A])).await.unwrap();
    let read = e
        .service
        .create_key(&alice, NewKey { permissions: Permissions::READ_ONLY, ..trade_key("alice") })
        .await
        .unwrap();
    let status = |k: &keygate_service::CreatedKey| {
        let id = k.key.api_key.clone();
        let (service, op) = (e.service.clone(), op.clone());
        async move { service.key(&op, &id).await.unwrap().status }
    };
    e.clock.advance_ms(30_000);
    e.service.totp_disable(&alice, &e.code(&totp)).await.unwrap();
    assert_eq!(status(&trade).await, KeyStatus::Disabled);
    assert_eq!(status(&withdraw).await, KeyStatus::Disabled);
    assert_eq!(status(&read).await, KeyStatus::Active, "a read-only key moves nothing and stays");
    // The verifier's cache sees it at once.
    let cached = e.service.cache().lookup(&trade.key.api_key).unwrap();
    assert_eq!(cached.status, KeyStatus::Disabled);
    let audit = e.service.audit_log(&op, 0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.action == "key.suspend" && r.details["reason"] == "2fa_disabled").count(), 2);
    // Without 2FA the owner cannot step up, so cannot re-enable them.
    let active = || keygate_service::KeyEdit { status: Some(KeyStatus::Active), ..Default::default() };
    let err = e.service.edit_key(&e.actor(&s.token).await, &trade.key.api_key, active()).await.unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_) | ServiceError::Forbidden(_)), "{err}");
    // With 2FA back and a step-up, the owner re-confirms the key.
    let (s, totp, _) = e.alice_with_2fa().await;
    let (_, alice) = e.stepped_up(&s, &totp).await;
    let view = e.service.edit_key(&alice, &trade.key.api_key, active()).await.unwrap();
    assert_eq!(view.status, KeyStatus::Active);
    // The operator's reset suspends them too.
    e.service.totp_reset(&op, "alice").await.unwrap();
    assert_eq!(status(&trade).await, KeyStatus::Disabled);
}

#[tokio::test]
async fn a_withdraw_key_without_a_withdrawal_address_is_refused_whoever_asks() {
    let e = env().await;
    let err = e.service.create_key(&Actor::operator_cli(), withdraw_key("alice", &[])).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("withdrawal address")), "{err}");
    // Nor by taking the last address off a withdraw key.
    let k = e.service.create_key(&Actor::operator_cli(), withdraw_key("alice", &[ADDR_A])).await.unwrap();
    let none = keygate_service::KeyEdit { withdraw_addresses: Some(vec![]), ..Default::default() };
    let err = e.service.edit_key(&Actor::operator_cli(), &k.key.api_key, none).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("withdrawal address")), "{err}");
}

#[tokio::test]
async fn passwords_need_twelve_characters() {
    let e = env().await;
    let err = e.service.create_account(&Actor::operator_cli(), "short", pw("elevenchars")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("12 characters")), "{err}");
    e.service.create_account(&Actor::operator_cli(), "long", pw("twelve chars")).await.unwrap();
}

#[tokio::test]
async fn withdraw_addresses_and_the_password_need_a_code_in_the_same_request_trade_changes_ride_the_window() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let (up, fresh) = e.stepped_up(&s, &totp).await;
    // The same session later in its five-minute window, without a code of its own.
    let window = e.actor(&up.token).await;
    assert!(window.stepped_up(e.now()) && !window.has_fresh_code(e.now()));
    let trade = e.service.create_key(&window, trade_key("alice")).await.unwrap();
    let before = e.audit_len().await;
    let needs_code = |r: Result<_, ServiceError>| matches!(r, Err(ServiceError::StepUpRequired(ref m)) if m.contains("typed with this change"));
    assert!(needs_code(e.service.create_key(&window, withdraw_key("alice", &[ADDR_A])).await.map(|_| ())));
    let read_with_address = NewKey { permissions: Permissions::READ_ONLY, ..withdraw_key("alice", &[ADDR_A]) };
    assert!(needs_code(e.service.create_key(&window, read_with_address).await.map(|_| ())));
    let to_withdraw = keygate_service::KeyEdit {
        permissions: Some(Permissions::with(&[Permission::Trade, Permission::Withdraw])),
        ip_allowlist: Some(IpAllowlist::parse(&["192.0.2.0/24"]).unwrap()),
        withdraw_addresses: Some(vec![ADDR_A.into()]),
        ..Default::default()
    };
    assert!(needs_code(e.service.edit_key(&window, &trade.key.api_key, to_withdraw.clone()).await.map(|_| ())));
    let address_only = keygate_service::KeyEdit { withdraw_addresses: Some(vec![ADDR_A.into()]), ..Default::default() };
    assert!(needs_code(e.service.edit_key(&window, &trade.key.api_key, address_only).await.map(|_| ())));
    assert_eq!(e.audit_len().await, before, "nothing was written");
    // The window still covers trade-key changes.
    let label = keygate_service::KeyEdit { label: Some("bot 2".into()), ..Default::default() };
    e.service.edit_key(&window, &trade.key.api_key, label).await.unwrap();

    // With the code typed in the same request, they pass.
    let w = e.service.edit_key(&fresh, &trade.key.api_key, to_withdraw).await.unwrap();
    assert!(w.permissions.contains(Permission::Withdraw));
    // A proof kept beyond its request stops counting after a minute.
    e.clock.advance_ms(keygate_service::FRESH_CODE_MS + 1);
    assert!(fresh.stepped_up(e.now()) && !fresh.has_fresh_code(e.now()));
    assert!(needs_code(e.service.create_key(&fresh, withdraw_key("alice", &[ADDR_A])).await.map(|_| ())));

    // A password change asks for the code too, even inside the window.
    let (up, _) = e.stepped_up(&up, &totp).await;
    let new_pw = || pw("a new long password");
    let err = e.service.change_password(&up.token, pw(PASSWORD), new_pw(), None, src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_)), "{err}");
    e.clock.advance_ms(30_000);
    let err = e.service.change_password(&up.token, pw(PASSWORD), new_pw(), Some("000000"), src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "{err}");
    e.service.login("alice", pw(PASSWORD), src()).await.unwrap();
    let changed = e.service.change_password(&up.token, pw(PASSWORD), new_pw(), Some(&e.code(&totp)), src()).await;
    let changed = changed.unwrap();
    e.actor(&changed.token).await;
    // Disabling 2FA takes a code whatever the window says.
    let (up, stepped) = e.stepped_up(&changed, &totp).await;
    assert!(matches!(e.service.totp_disable(&stepped, "").await, Err(ServiceError::InvalidCode(_))));
    assert!(e.service.two_factor_status(&stepped, "alice").await.unwrap().enabled);
    drop(up);
}

#[tokio::test]
async fn wrong_codes_typed_with_a_password_change_count_with_the_step_up_codes() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    for _ in 0..5 {
        let err = e.service.change_password(&s.token, pw(PASSWORD), pw("a new long password"), Some("000000"), src());
        assert!(matches!(err.await, Err(ServiceError::InvalidCode(_))));
    }
    // The account's established-session counter is full: the right code is refused on step-up too.
    let err = e.service.step_up(&s.token, &e.code(&totp), src()).await.unwrap_err();
    assert!(matches!(err, ServiceError::Throttled { .. }), "{err}");
    let audit = e.service.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
    assert_eq!(audit.iter().filter(|r| r.action == "totp.failed" && r.details["purpose"] == "password").count(), 5);
}

#[tokio::test]
async fn wide_ip_ranges_on_an_owners_trade_or_withdraw_key_need_a_confirmation() {
    let e = env().await;
    let (s, totp, _) = e.alice_with_2fa().await;
    let (_, alice) = e.stepped_up(&s, &totp).await;
    let with_ips = |list: &[&str], confirm: bool| NewKey {
        restrictions: Restrictions { ip_allowlist: IpAllowlist::parse(list).unwrap(), ..Restrictions::default() },
        confirm_wide_ip: confirm,
        ..trade_key("alice")
    };
    for wide in [&["10.0.0.0/15"][..], &["192.0.2.7", "2001:db8::/47"]] {
        let err = e.service.create_key(&alice, with_ips(wide, false)).await.unwrap_err();
        assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("confirm")), "{wide:?}: {err}");
    }
    // /16 and /48 are not wide; a read-only key may be wide without a confirmation.
    e.service.create_key(&alice, with_ips(&["10.0.0.0/16", "2001:db8::/48"], false)).await.unwrap();
    let ro = NewKey { permissions: Permissions::READ_ONLY, ..with_ips(&["10.0.0.0/8"], false) };
    let ro = e.service.create_key(&alice, ro).await.unwrap();
    let k = e.service.create_key(&alice, with_ips(&["10.0.0.0/8"], true)).await.unwrap();
    assert_eq!(
        keygate_service::keys::wide_ip_ranges(&IpAllowlist::parse(&["10.0.0.0/8", "10.1.0.0/16"]).unwrap()).len(),
        1
    );
    // Edits: a confirmed range stays without asking again; adding another, or giving a key with
    // one trade, needs the confirmation.
    let label = keygate_service::KeyEdit { label: Some("again".into()), ..Default::default() };
    e.service.edit_key(&alice, &k.key.api_key, label).await.unwrap();
    let more = keygate_service::KeyEdit {
        ip_allowlist: Some(IpAllowlist::parse(&["10.0.0.0/8", "172.16.0.0/12"]).unwrap()),
        ..Default::default()
    };
    let err = e.service.edit_key(&alice, &k.key.api_key, more.clone()).await.unwrap_err();
    assert!(
        matches!(err, ServiceError::Invalid(ref m) if m.contains("172.16.0.0/12") && !m.contains("10.0.0.0/8")),
        "{err}"
    );
    e.service
        .edit_key(&alice, &k.key.api_key, keygate_service::KeyEdit { confirm_wide_ip: true, ..more })
        .await
        .unwrap();
    let widen =
        keygate_service::KeyEdit { permissions: Some(Permissions::with(&[Permission::Trade])), ..Default::default() };
    assert!(matches!(e.service.edit_key(&alice, &ro.key.api_key, widen.clone()).await, Err(ServiceError::Invalid(_))));
    let widen = keygate_service::KeyEdit { confirm_wide_ip: true, ..widen };
    e.service.edit_key(&alice, &ro.key.api_key, widen).await.unwrap();
    // The operator is not asked.
    e.service.create_key(&Actor::operator_cli(), with_ips(&["10.0.0.0/8"], false)).await.unwrap();
}

#[tokio::test]
async fn a_wrong_enrollment_code_keeps_the_pending_secret_for_ten_minutes() {
    let e = env().await;
    let s = e.login("alice").await;
    let alice = e.actor(&s.token).await;
    let started = e.service.totp_enroll(&alice).await.unwrap();
    let err = e.service.totp_confirm(&alice, "000000").await.unwrap_err();
    assert!(matches!(err, ServiceError::InvalidCode(_)), "{err}");
    // The same secret is still pending, read back from the store (sealed there), until ten
    // minutes after the start.
    e.clock.advance_ms(30_000);
    let (again, lapses) = e.service.totp_pending(&alice).await.unwrap().expect("still pending");
    assert_eq!(again.secret_base32, started.secret_base32);
    assert_eq!(lapses, NOW.plus_millis(keygate_service::totp::ENROLLMENT_TTL_MS));
    let codes = e.service.totp_confirm(&alice, &e.code(&totp_of(&started))).await.unwrap();
    assert!(e.service.totp_pending(&alice).await.unwrap().is_none(), "nothing pending once 2FA is on");
    // Recovery codes hold no letter that reads like a digit.
    for c in &codes.codes {
        assert!(!c.contains(['i', 'l', 'o', 'u']), "{c}");
    }

    // Past ten minutes the setup lapses: no secret to show, and its code is refused.
    let s = e.login("bob").await;
    let bob = e.actor(&s.token).await;
    let started = e.service.totp_enroll(&bob).await.unwrap();
    e.clock.advance_ms(keygate_service::totp::ENROLLMENT_TTL_MS);
    assert!(e.service.totp_pending(&bob).await.unwrap().is_none());
    let err = e.service.totp_confirm(&bob, &e.code(&totp_of(&started))).await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(ref m) if m.contains("10 minutes")), "{err}");
}

/// `serve --signup invite` (issue #18): a sign-up needs an unused, unrevoked, unexpired invite
/// code; the code is spent with the account it creates (audited), and a sign-up that fails for
/// another reason leaves it usable. Only the operator makes, lists and revokes invites, and a
/// listing never shows a code.
#[tokio::test]
async fn sign_up_by_invitation_needs_a_live_code_and_spends_it_with_the_account() {
    let e = env_with(|c| c.sign_up = keygate_service::SignUpMode::Invite).await;
    let op = Actor::operator_cli();
    // Each attempt from its own address, so the per-address sign-up throttle stays out of it.
    let mut n = 0;
    let mut from = || {
        n += 1;
        Some(format!("198.51.100.{n}"))
    };
    let forbidden = |r: Result<keygate_service::AccountView, ServiceError>, says: &str| match r {
        Err(ServiceError::Forbidden(m)) => assert!(m.contains(says), "{m:?} does not say {says:?}"),
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    };
    forbidden(e.service.sign_up("carol", pw(PASSWORD), from()).await, "by invitation only");
    forbidden(e.service.sign_up_with_invite("carol", pw(PASSWORD), Some("  "), from()).await, "by invitation only");
    forbidden(e.service.sign_up_with_invite("carol", pw(PASSWORD), Some("abc"), from()).await, "not an invite code");
    let owner = e.actor(&e.login("alice").await.token).await;
    assert!(matches!(e.service.create_invite(&owner, "", 60 * MINUTE).await, Err(ServiceError::Forbidden(_))));
    assert!(matches!(e.service.list_invites(&owner).await, Err(ServiceError::Forbidden(_))));
    assert!(matches!(e.service.create_invite(&op, "", 0).await, Err(ServiceError::Invalid(_))));
    assert!(matches!(e.service.create_invite(&op, "a\nb", MINUTE).await, Err(ServiceError::Invalid(_))));

    let invite = e.service.create_invite(&op, "for carol", 60 * MINUTE).await.unwrap();
    let code = invite.code().to_owned();
    assert!(code.starts_with("kginv_") && code.len() == 33, "{code}");
    assert!(!format!("{invite:?}").contains(&code), "Debug shows the code");
    let unknown = format!("kginv_{}", "A".repeat(27));
    forbidden(e.service.sign_up_with_invite("carol", pw(PASSWORD), Some(&unknown), from()).await, "not valid");
    // Refusals that are not about the code leave it usable.
    let weak = e.service.sign_up_with_invite("carol", pw("short"), Some(&code), from()).await;
    assert!(matches!(weak, Err(ServiceError::Invalid(_))), "{weak:?}");
    let taken = e.service.sign_up_with_invite("alice", pw(PASSWORD), Some(&code), from()).await;
    assert!(matches!(taken, Err(ServiceError::Conflict(_))), "{taken:?}");
    let listed = e.service.list_invites(&op).await.unwrap();
    assert_eq!((listed.len(), listed[0].status, listed[0].note.as_str()), (1, "unused", "for carol"));
    assert!(!serde_json::to_string(&listed).unwrap().contains(&code), "a listing shows the code");

    let carol = e.service.sign_up_with_invite("carol", pw(PASSWORD), Some(&format!(" {code} ")), from()).await;
    assert_eq!(carol.unwrap().name, "carol");
    e.service.login("carol", pw(PASSWORD), src()).await.unwrap();
    forbidden(e.service.sign_up_with_invite("dave", pw(PASSWORD), Some(&code), from()).await, "already been used");
    let listed = e.service.list_invites(&op).await.unwrap();
    assert_eq!((listed[0].status, listed[0].used_by.as_deref()), ("used", Some("carol")));
    assert_eq!(listed[0].used_at, Some(e.now().0));
    let log = e.service.audit_log(&op, 0, 100).await.unwrap();
    let invite_events: Vec<_> = log
        .iter()
        .filter(|a| a.action.starts_with("invite.") || a.target == "account:carol")
        .map(|a| (a.action.as_str(), a.target.clone()))
        .collect();
    let target = format!("invite:{}", invite.invite.id);
    assert_eq!(
        invite_events,
        [
            ("invite.create", target.clone()),
            ("account.sign_up", "account:carol".into()),
            ("invite.redeem", target.clone()),
            ("auth.login", "account:carol".into())
        ]
    );
    assert!(!serde_json::to_string(&log).unwrap().contains(&code), "the audit log holds the code");
    assert!(matches!(e.service.revoke_invite(&op, invite.invite.id).await, Err(ServiceError::Conflict(_))));

    // Expired and revoked codes.
    let short = e.service.create_invite(&op, "", MINUTE).await.unwrap();
    let revoked = e.service.create_invite(&op, "", 60 * MINUTE).await.unwrap();
    assert_eq!(e.service.revoke_invite(&op, revoked.invite.id).await.unwrap().status, "revoked");
    assert!(matches!(e.service.revoke_invite(&op, revoked.invite.id).await, Err(ServiceError::Conflict(_))));
    assert!(matches!(e.service.revoke_invite(&op, 999).await, Err(ServiceError::NotFound(_))));
    forbidden(e.service.sign_up_with_invite("dave", pw(PASSWORD), Some(revoked.code()), from()).await, "withdrawn");
    e.clock.advance_ms(MINUTE);
    forbidden(e.service.sign_up_with_invite("dave", pw(PASSWORD), Some(short.code()), from()).await, "expired");
    let statuses: Vec<_> = e.service.list_invites(&op).await.unwrap().iter().map(|i| i.status).collect();
    assert_eq!(statuses, ["used", "expired", "revoked"]);
    assert!(matches!(e.service.account(&op, "dave").await, Err(ServiceError::NotFound(_))));
}
