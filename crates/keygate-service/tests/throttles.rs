//! Throttles under concurrency (outside review findings 1, 2 and 6): attempts are reserved
//! before the code or password is checked, sign-up attempts all count, and guesses from one
//! address cannot lock the owner out from another.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::{Clock as _, ManualClock, PasswordParams, Service, ServiceConfig, ServiceError};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);
const PASSWORD: &str = "correct horse battery";

async fn service() -> (Service, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store = SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(NOW.as_micros())));
    let mut config = ServiceConfig { password: PasswordParams::insecure_for_tests(), ..ServiceConfig::default() };
    // Generous, so these tests see the throttles, not the argon2 cap (tested in sessions.rs).
    config.throttle.password_hashing_wait_ms = 60_000;
    let service = Service::start(Arc::new(store), clock.clone(), config).await.unwrap();
    for name in ["alice", "bob"] {
        service
            .sign_up(name, Zeroizing::new(PASSWORD.into()), Some(format!("198.51.100.{}", name.len())))
            .await
            .unwrap();
    }
    (service, clock, dir)
}

fn pw(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.into())
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    checked: usize,
    throttled: usize,
}

async fn tally<T: std::fmt::Debug + Send + 'static>(
    mut set: tokio::task::JoinSet<Result<T, ServiceError>>,
    checked: fn(&ServiceError) -> bool,
) -> Tally {
    let mut t = Tally::default();
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Err(e) if checked(&e) => t.checked += 1,
            Err(ServiceError::Throttled { .. }) => t.throttled += 1,
            x => panic!("unexpected {x:?}"),
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_totp_codes_get_at_most_the_limit_of_checks() {
    let (svc, clock, _dir) = service().await;
    let s = svc.login("alice", pw(PASSWORD), None).await.unwrap();
    let actor = svc.session_actor(&s.token, None).await.unwrap();
    let e = svc.totp_enroll(&actor).await.unwrap();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now_s = |c: &ManualClock| c.now().as_millis().0 / 1000;
    let recovery = svc.totp_confirm(&actor, &totp.generate(now_s(&clock)).to_string()).await.unwrap();
    clock.advance_ms(30_000);
    let pending = svc.login("alice", pw(PASSWORD), None).await.unwrap();
    assert!(pending.info.two_factor_pending);
    let t = now_s(&clock);
    let valid: Vec<String> = [t - 30, t, t + 30].iter().map(|s| totp.generate(*s).to_string()).collect();
    let wrong: Vec<String> =
        (0..200u32).map(|i| format!("{:06}", 100_000 + i)).filter(|c| !valid.contains(c)).take(100).collect();

    // A good recovery code is not counted as a failure: four wrong codes, a good recovery code
    // (as step-up on a full session), then the fifth wrong code is still checked.
    let full = svc.login_second_factor(&pending.token, &recovery.codes[0], None, None).await.unwrap();
    for code in &wrong[..4] {
        assert!(matches!(svc.step_up(&full.token, code, None).await, Err(ServiceError::InvalidCode(_))));
    }
    let full = svc.step_up(&full.token, &recovery.codes[1], None).await.unwrap();
    assert!(matches!(svc.step_up(&full.token, &wrong[4], None).await, Err(ServiceError::InvalidCode(_))));
    assert!(matches!(svc.step_up(&full.token, &wrong[5], None).await, Err(ServiceError::Throttled { .. })));

    // A fresh window; 100 concurrent wrong codes on a pending login: at most 5 are checked.
    clock.advance_ms(5 * 60 * 1000);
    let pending = svc.login("alice", pw(PASSWORD), None).await.unwrap();
    let mut set = tokio::task::JoinSet::new();
    for code in wrong {
        let svc = svc.clone();
        let tok = pending.token.clone();
        set.spawn(async move { svc.login_second_factor(&tok, &code, None, None).await.map(|_| ()) });
    }
    let got = tally(set, |e| matches!(e, ServiceError::InvalidCode(_))).await;
    assert_eq!(got, Tally { checked: 5, throttled: 95 });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_passwords_get_at_most_the_limit_of_checks() {
    let (svc, _clock, _dir) = service().await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let svc = svc.clone();
        set.spawn(async move {
            svc.login("bob", pw(&format!("wrong password {i}")), Some("192.0.2.9".into())).await.map(|_| ())
        });
    }
    let got = tally(set, |e| matches!(e, ServiceError::Unauthenticated(_))).await;
    assert_eq!(got, Tally { checked: 5, throttled: 95 });

    // Per address too: 100 concurrent guesses at many names from one address get 20 checks.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..100 {
        let svc = svc.clone();
        set.spawn(async move {
            svc.login(&format!("user{i}"), pw("wrong password"), Some("192.0.2.10".into())).await.map(|_| ())
        });
    }
    let got = tally(set, |e| matches!(e, ServiceError::Unauthenticated(_))).await;
    assert_eq!(got, Tally { checked: 20, throttled: 80 });
}

#[tokio::test]
async fn sign_ups_of_a_taken_name_are_counted() {
    let (svc, clock, _dir) = service().await;
    let mut conflicts = 0;
    let throttled = loop {
        match svc.sign_up("alice", pw(PASSWORD), Some("192.0.2.77".into())).await {
            Err(ServiceError::Conflict(_)) => conflicts += 1,
            Err(ServiceError::Throttled { retry_after_ms, .. }) => break retry_after_ms,
            x => panic!("{x:?}"),
        }
        assert!(conflicts <= 10, "sign-up conflicts are never throttled");
    };
    assert_eq!((conflicts, throttled), (10, 60 * 60 * 1000));
    // The address is throttled for new names too; another address is not.
    assert!(matches!(
        svc.sign_up("carol", pw(PASSWORD), Some("192.0.2.77".into())).await,
        Err(ServiceError::Throttled { .. })
    ));
    svc.sign_up("carol", pw(PASSWORD), Some("192.0.2.78".into())).await.unwrap();
    clock.advance_ms(60 * 60 * 1000);
    svc.sign_up("dave", pw(PASSWORD), Some("192.0.2.77".into())).await.unwrap();
}

#[tokio::test]
async fn guesses_from_elsewhere_do_not_lock_the_owner_out() {
    let (svc, _clock, _dir) = service().await;
    let guess = |ip: String| {
        let svc = svc.clone();
        async move { svc.login("alice", pw("wrong password"), Some(ip)).await.map(|_| ()) }
    };
    for _ in 0..5 {
        assert!(matches!(guess("203.0.113.1".into()).await, Err(ServiceError::Unauthenticated(_))));
    }
    // The guessing address is locked, even with the right password ...
    assert!(matches!(
        svc.login("alice", pw(PASSWORD), Some("203.0.113.1".into())).await,
        Err(ServiceError::Throttled { .. })
    ));
    // ... the owner's address is not.
    svc.login("alice", pw(PASSWORD), Some("192.0.2.1".into())).await.unwrap();

    // A spread-out attack: 45 more failures from 9 addresses reach the global limit (50) ...
    for a in 2..11 {
        for _ in 0..5 {
            assert!(matches!(guess(format!("203.0.113.{a}")).await, Err(ServiceError::Unauthenticated(_))));
        }
    }
    // ... after which an address gets one guess, not five ...
    assert!(matches!(guess("203.0.113.50".into()).await, Err(ServiceError::Unauthenticated(_))));
    assert!(matches!(guess("203.0.113.50".into()).await, Err(ServiceError::Throttled { .. })));
    // ... and the owner, with no failure from their address, still logs in, repeatedly.
    for _ in 0..3 {
        svc.login("alice", pw(PASSWORD), Some("192.0.2.1".into())).await.unwrap();
    }
    // A successful login does not count against the owner's address either.
    for _ in 0..30 {
        svc.login("bob", pw(PASSWORD), Some("192.0.2.200".into())).await.unwrap();
    }
}

/// Issue #18, finding 1: an attacker with only the password typed wrong codes from another
/// client and locked the owner's own logged-in session out of step-up for 5 minutes, again and
/// again. Codes finishing a password login now count per login session, per client address and
/// against an account-wide login ceiling, none of which the owner's established session uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_from_someone_with_the_password_do_not_lock_the_owners_session() {
    let (svc, clock, _dir) = service().await;
    let owner_ip = Some("192.0.2.1".to_owned());
    let s = svc.login("alice", pw(PASSWORD), owner_ip.clone()).await.unwrap();
    let actor = svc.session_actor(&s.token, owner_ip.clone()).await.unwrap();
    let e = svc.totp_enroll(&actor).await.unwrap();
    let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
    let now_s = |c: &ManualClock| c.now().as_millis().0 / 1000;
    svc.totp_confirm(&actor, &totp.generate(now_s(&clock)).to_string()).await.unwrap();
    clock.advance_ms(30_000);
    let pending = svc.login("alice", pw(PASSWORD), owner_ip.clone()).await.unwrap();
    let owner = svc
        .login_second_factor(&pending.token, &totp.generate(now_s(&clock)).to_string(), owner_ip.clone(), None)
        .await
        .unwrap();
    let device = owner.device_token.clone().expect("a finished login gives its browser a device token");
    let t = now_s(&clock);
    let valid: Vec<String> = [t - 30, t, t + 30, t + 60].iter().map(|s| totp.generate(*s).to_string()).collect();
    let mut wrong = (0..1000u32).map(|i| format!("{:06}", 300_000 + i)).filter(|c| !valid.contains(c));

    // The attacker logs in with the password from one address and types wrong codes: five per
    // login session, then that session is throttled; ten per address, then the address is.
    let attacker = Some("203.0.113.7".to_owned());
    let mut checked = 0;
    for _ in 0..3 {
        let p = svc.login("alice", pw(PASSWORD), attacker.clone()).await.unwrap();
        for _ in 0..6 {
            match svc.login_second_factor(&p.token, &wrong.next().unwrap(), attacker.clone(), None).await {
                Err(ServiceError::InvalidCode(_)) => checked += 1,
                Err(ServiceError::Throttled { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(checked, 10, "5 per session, 10 per address");

    // The owner's established session still steps up at once, with the next code.
    clock.advance_ms(30_000);
    let stepped = svc.step_up(&owner.token, &totp.generate(now_s(&clock)).to_string(), owner_ip.clone()).await;
    assert!(stepped.is_ok(), "the owner was locked out: {stepped:?}");
    // A step-up rotates the session id.
    let owner = stepped.unwrap();

    // Spread over many addresses, the attack meets the account's login ceiling (50) ...
    let mut spread = 0;
    for a in 10..40 {
        let ip = Some(format!("203.0.113.{a}"));
        let Ok(p) = svc.login("alice", pw(PASSWORD), ip.clone()).await else { continue };
        for _ in 0..5 {
            if let Err(ServiceError::InvalidCode(_)) =
                svc.login_second_factor(&p.token, &wrong.next().unwrap(), ip.clone(), None).await
            {
                spread += 1;
            }
        }
    }
    assert_eq!(checked + spread, 50, "the account-wide login ceiling holds");
    // ... and still the owner's session steps up, and the owner's wrong codes there count on
    // their own counter (five, as before).
    clock.advance_ms(30_000);
    let stepped = svc.step_up(&owner.token, &totp.generate(now_s(&clock)).to_string(), owner_ip.clone()).await;
    assert!(stepped.is_ok(), "the owner was locked out by the spread attack: {stepped:?}");
    let owner = stepped.unwrap();
    for _ in 0..5 {
        let r = svc.step_up(&owner.token, &wrong.next().unwrap(), owner_ip.clone()).await;
        assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    }
    assert!(matches!(
        svc.step_up(&owner.token, &wrong.next().unwrap(), owner_ip.clone()).await,
        Err(ServiceError::Throttled { .. })
    ));

    // The ceiling is spent: a login from a browser the account has never seen is refused even
    // with the right code until the window passes, and so is one with a forged device token ...
    clock.advance_ms(30_000);
    let elsewhere = Some("198.51.100.5".to_owned());
    let right = |c: &ManualClock| totp.generate(now_s(c)).to_string();
    let p = svc.login("alice", pw(PASSWORD), elsewhere.clone()).await.unwrap();
    let r = svc.login_second_factor(&p.token, &right(&clock), elsewhere.clone(), None).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    let mut forged = device.clone();
    forged.replace_range(10..12, if &device[10..12] == "00" { "11" } else { "00" });
    let r = svc.login_second_factor(&p.token, &right(&clock), elsewhere.clone(), Some(&forged)).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    // ... but the owner's own browser, which finished a login before, logs in at once from any
    // address, and gets a fresh token.
    let p = svc.login("alice", pw(PASSWORD), elsewhere.clone()).await.unwrap();
    let back = svc.login_second_factor(&p.token, &right(&clock), elsewhere.clone(), Some(&device)).await;
    let back = back.expect("the owner's known browser was locked out");
    let device = back.device_token.expect("a fresh device token");
    // Wrong codes on the known device count on its own counter (five), not on the spent one,
    // across its login sessions.
    let mut on_device = 0;
    for _ in 0..2 {
        let p = svc.login("alice", pw(PASSWORD), owner_ip.clone()).await.unwrap();
        for _ in 0..3 {
            match svc.login_second_factor(&p.token, &wrong.next().unwrap(), owner_ip.clone(), Some(&device)).await {
                Err(ServiceError::InvalidCode(_)) => on_device += 1,
                Err(ServiceError::Throttled { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(on_device, 5, "the device's own counter holds five");
}

/// Outside review of issue #18's fix: the per-address counter was checked before the known
/// device, so someone behind the owner's address (a shared NAT) could fill it with wrong codes
/// for an account of their own and hold the owner's known browser out. A known device now counts
/// on its own counter only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_codes_for_another_account_from_the_same_address_do_not_hold_the_owners_known_browser() {
    let (svc, clock, _dir) = service().await;
    let shared = Some("198.51.100.77".to_owned());
    let now_s = |c: &ManualClock| c.now().as_millis().0 / 1000;
    let mut totps = Vec::new();
    for name in ["alice", "bob"] {
        let s = svc.login(name, pw(PASSWORD), shared.clone()).await.unwrap();
        let actor = svc.session_actor(&s.token, shared.clone()).await.unwrap();
        let e = svc.totp_enroll(&actor).await.unwrap();
        let totp = totp_rs::Totp::from_url(&e.otpauth_uri).unwrap();
        svc.totp_confirm(&actor, &totp.generate(now_s(&clock)).to_string()).await.unwrap();
        totps.push(totp);
    }
    clock.advance_ms(30_000);
    let p = svc.login("alice", pw(PASSWORD), shared.clone()).await.unwrap();
    let code = totps[0].generate(now_s(&clock)).to_string();
    let device = svc.login_second_factor(&p.token, &code, shared.clone(), None).await.unwrap().device_token.unwrap();
    // Bob, behind the same address, fills its counter with wrong codes for his own account.
    let mut refused = 0;
    for _ in 0..3 {
        let p = svc.login("bob", pw(PASSWORD), shared.clone()).await.unwrap();
        for i in 0..5u32 {
            let r = svc.login_second_factor(&p.token, &format!("{:06}", 900_000 + i), shared.clone(), None).await;
            if matches!(r, Err(ServiceError::Throttled { .. })) {
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "the address's counter filled");
    clock.advance_ms(30_000);
    let code = totps[0].generate(now_s(&clock)).to_string();
    // Alice in a browser the account has not seen, from that address: held by the address ...
    let p = svc.login("alice", pw(PASSWORD), shared.clone()).await.unwrap();
    let r = svc.login_second_factor(&p.token, &code, shared.clone(), None).await;
    assert!(matches!(r, Err(ServiceError::Throttled { .. })), "{r:?}");
    // ... but her known browser gets in.
    let p = svc.login("alice", pw(PASSWORD), shared.clone()).await.unwrap();
    let r = svc.login_second_factor(&p.token, &code, shared.clone(), Some(&device)).await;
    assert!(r.is_ok(), "the owner's known browser was held by someone else's wrong codes: {r:?}");
}
