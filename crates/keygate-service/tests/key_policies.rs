//! Issue #17, item 1: key policies that run by themselves, tested by moving the injected clock.
//! Idle keys are disabled (trade keys without an IP allowlist sooner), owners are warned 7 days
//! and 1 day ahead exactly once, expired keys are marked, a password change asks for a
//! re-confirmation that lapses into a suspension, accounts tighten but never loosen, and every
//! change is audited with the policy that caused it.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_auth::{AccountId, IpAllowlist, KeyStatus, Permission, Permissions, Restrictions};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::policy::{AccountKeyPolicy, DAY_MS, SweepReport};
use keygate_service::{
    Actor, Clock as _, KeyEdit, ManualClock, NewKey, NewKeyMaterial, PasswordParams, Service, ServiceConfig,
    ServiceError,
};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);

async fn env() -> (Service, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store = SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(NOW.as_micros())));
    let config = ServiceConfig {
        password: PasswordParams::insecure_for_tests(),
        require_2fa_for_trading_keys: false,
        ..ServiceConfig::default()
    };
    let service = Service::start(Arc::new(store), clock.clone(), config).await.unwrap();
    for name in ["alice", "bob"] {
        service
            .create_account(&Actor::operator_cli(), name, Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
    }
    (service, clock, dir)
}

fn owner(id: i64, name: &str, clock: &ManualClock) -> Actor {
    Actor::Owner {
        account_id: AccountId(id),
        name: name.into(),
        stepped_up_until: Some(clock.now().as_millis().plus_millis(300_000)),
        source: Some("192.0.2.1".into()),
        fresh_code: None,
    }
}

async fn key(s: &Service, account: &str, label: &str, perms: &[Permission], ip: bool) -> String {
    let mut restrictions = Restrictions::default();
    if ip {
        restrictions.ip_allowlist = IpAllowlist::parse(&["203.0.113.0/24"]).unwrap();
    }
    if perms.contains(&Permission::Withdraw) {
        restrictions.withdraw_addresses = vec!["bc1qpolicypolicypolicypolicypolicy00".into()];
    }
    let new = NewKey {
        account: account.into(),
        label: label.into(),
        material: NewKeyMaterial::Hmac,
        permissions: Permissions::with(perms),
        restrictions,
        confirm_wide_ip: false,
    };
    s.create_key(&Actor::operator_cli(), new).await.unwrap().key.api_key
}

async fn status(s: &Service, id: &str) -> (KeyStatus, Option<String>) {
    let k = s.key(&Actor::operator_cli(), id).await.unwrap();
    (k.status, k.status_reason)
}

/// The audit records of `action` about `target`, oldest first.
async fn audited(s: &Service, action: &str, target: &str) -> Vec<serde_json::Value> {
    let records = s.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
    records
        .into_iter()
        .filter(|r| r.action == action && r.target == target)
        .map(|r| serde_json::json!({ "actor": r.actor, "details": r.details }))
        .collect()
}

#[tokio::test]
async fn idle_keys_are_warned_twice_then_disabled_with_the_policy_named() {
    let (s, clock, _dir) = env().await;
    let read = key(&s, "alice", "tracker", &[], false).await;
    let bot = key(&s, "alice", "bot", &[Permission::Trade], false).await;
    let fenced = key(&s, "alice", "fenced", &[Permission::Trade], true).await;
    let used = key(&s, "alice", "used", &[], false).await;

    // 22 days on: the unrestricted trade key (30 idle days) gets its 7-day warning, once.
    clock.advance_ms(23 * DAY_MS);
    let r = s.sweep_key_policies().await.unwrap();
    assert_eq!(r, SweepReport { warned: 1, ..SweepReport::default() });
    assert_eq!(s.sweep_key_policies().await.unwrap(), SweepReport::default(), "a warning is sent once");
    let w = audited(&s, "key.expiring", &bot).await;
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["details"]["policy"], "unrestricted_idle");
    assert_eq!(w[0]["details"]["days_left"], 7);
    assert_eq!(w[0]["actor"], "system:key-policy:unrestricted_idle");
    // The deadline is on the key for the owner and the CLI to read.
    let view = s.key(&Actor::operator_cli(), &bot).await.unwrap();
    let deadline = view.policy_deadline.unwrap();
    assert_eq!((deadline.action.as_str(), deadline.policy.as_str()), ("disable", "unrestricted_idle"));
    assert_eq!(deadline.at, NOW.plus_millis(30 * DAY_MS));

    // Use resets the idle clock: a key used now is far from its deadline.
    s.record_use(&keygate_auth::ApiKeyId::parse(&used).unwrap(), "192.0.2.9".parse().unwrap(), clock.now().as_millis());

    // One day left: the 1-day warning; then past the deadline: disabled, named on the key.
    clock.advance_ms(6 * DAY_MS);
    assert_eq!(s.sweep_key_policies().await.unwrap().warned, 1);
    clock.advance_ms(DAY_MS);
    let r = s.sweep_key_policies().await.unwrap();
    assert_eq!(r.disabled, 1, "{r:?}");
    assert_eq!(status(&s, &bot).await, (KeyStatus::Disabled, Some("policy:unrestricted_idle".into())));
    let d = audited(&s, "key.policy_disable", &bot).await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["details"]["policy"], "unrestricted_idle");
    assert_eq!(status(&s, &fenced).await.0, KeyStatus::Active, "an IP allowlist keeps the 90-day rule");
    assert_eq!(status(&s, &read).await.0, KeyStatus::Active);

    // 90 days: the never-used keys go, each warned 7 days and 1 day ahead; the one used on
    // day 23 stays until day 113.
    clock.advance_ms(54 * DAY_MS);
    assert_eq!(s.sweep_key_policies().await.unwrap().warned, 2);
    clock.advance_ms(5 * DAY_MS + DAY_MS / 2);
    assert_eq!(s.sweep_key_policies().await.unwrap().warned, 2);
    clock.advance_ms(DAY_MS / 2);
    let r = s.sweep_key_policies().await.unwrap();
    assert_eq!(r.disabled, 2, "{r:?}");
    assert_eq!(status(&s, &read).await, (KeyStatus::Disabled, Some("policy:unused".into())));
    assert_eq!(status(&s, &fenced).await, (KeyStatus::Disabled, Some("policy:unused".into())));
    assert_eq!(status(&s, &used).await.0, KeyStatus::Active);
    let warned: Vec<_> =
        audited(&s, "key.expiring", &read).await.iter().map(|w| w["details"]["days_left"].clone()).collect();
    assert_eq!(warned, [7, 1]);

    // The owner re-enables a disabled key (a step-up): its reason goes, its idle clock restarts.
    let edit = KeyEdit { status: Some(KeyStatus::Active), ..KeyEdit::default() };
    s.edit_key(&owner(1, "alice", &clock), &read, edit).await.unwrap();
    assert_eq!(status(&s, &read).await, (KeyStatus::Active, None));
    assert_eq!(s.sweep_key_policies().await.unwrap().disabled, 0);
}

#[tokio::test]
async fn expired_keys_are_marked_and_withdraw_keys_must_expire() {
    let (s, clock, _dir) = env().await;
    // A withdraw key created without an expiry gets the longest the policy allows (365 days).
    let w = key(&s, "alice", "payout", &[Permission::Withdraw], true).await;
    let view = s.key(&Actor::operator_cli(), &w).await.unwrap();
    assert_eq!(view.expires_at, Some(NOW.plus_millis(365 * DAY_MS)));
    // A later one is refused, with the reason.
    let later = KeyEdit { expires_at: Some(Some(NOW.plus_millis(400 * DAY_MS))), ..KeyEdit::default() };
    let err = s.edit_key(&Actor::operator_cli(), &w, later).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("within 365 days")), "{err}");
    // A key with an expiry of its own: warned, then marked expired.
    let short = key(&s, "alice", "short", &[], true).await;
    let soon = KeyEdit { expires_at: Some(Some(NOW.plus_millis(3 * DAY_MS))), ..KeyEdit::default() };
    s.edit_key(&Actor::operator_cli(), &short, soon).await.unwrap();
    assert_eq!(s.sweep_key_policies().await.unwrap().warned, 1);
    clock.advance_ms(3 * DAY_MS);
    assert_eq!(s.sweep_key_policies().await.unwrap().expired, 1);
    assert_eq!(status(&s, &short).await, (KeyStatus::Expired, Some("expired".into())));
    assert_eq!(audited(&s, "key.expire", &short).await.len(), 1);
}

#[tokio::test]
async fn a_password_change_asks_for_reconfirmation_and_unconfirmed_keys_are_suspended() {
    let (s, clock, _dir) = env().await;
    let a_bot = key(&s, "alice", "bot", &[Permission::Trade], true).await;
    let a_read = key(&s, "alice", "tracker", &[], true).await;
    let b_bot = key(&s, "bob", "bot", &[Permission::Trade], true).await;
    let b_bot2 = key(&s, "bob", "bot2", &[Permission::Trade], true).await;
    clock.advance_ms(60_000);
    for name in ["alice", "bob"] {
        s.set_password(&Actor::operator_cli(), name, Zeroizing::new("another horse battery".into())).await.unwrap();
    }
    let pending = s.key_policy(&Actor::operator_cli(), "alice").await.unwrap().reconfirm.unwrap();
    assert_eq!(pending.due, clock.now().as_millis().plus_millis(24 * 3_600_000));
    assert_eq!(pending.reason, "password_changed");
    // Re-confirming needs a step-up; alice does it, bob re-enables... nothing.
    let no_step_up = Actor::Owner {
        account_id: AccountId(1),
        name: "alice".into(),
        stepped_up_until: None,
        source: None,
        fresh_code: None,
    };
    assert!(matches!(s.reconfirm_keys(&no_step_up, "alice").await, Err(ServiceError::StepUpRequired(_))));
    clock.advance_ms(3_600_000);
    assert_eq!(s.reconfirm_keys(&owner(1, "alice", &clock), "alice").await.unwrap(), 1);
    assert!(s.key_policy(&Actor::operator_cli(), "alice").await.unwrap().reconfirm.is_none());
    // Bob only renames one of his keys meanwhile (no step-up needed): that is not a
    // re-confirmation (outside review). Both keys say when they will be suspended.
    let edit = KeyEdit { label: Some("bot2 (checked)".into()), ..KeyEdit::default() };
    s.edit_key(&owner(2, "bob", &clock), &b_bot2, edit).await.unwrap();
    let d = s.key(&Actor::operator_cli(), &b_bot2).await.unwrap().policy_deadline.unwrap();
    assert_eq!((d.action.as_str(), d.policy.as_str()), ("suspend", "reconfirm"));
    assert_eq!(d.at, s.key_policy(&Actor::operator_cli(), "bob").await.unwrap().reconfirm.unwrap().due);
    // A key created after the change needs no re-confirmation.
    let b_new = key(&s, "bob", "new bot", &[Permission::Trade], true).await;
    assert_eq!(s.key(&Actor::operator_cli(), &b_new).await.unwrap().policy_deadline.unwrap().policy, "unused");
    // Alice's re-confirmed key is back to its idle deadline.
    assert_eq!(s.key(&Actor::operator_cli(), &a_bot).await.unwrap().policy_deadline.unwrap().policy, "unused");

    clock.advance_ms(23 * 3_600_000);
    let r = s.sweep_key_policies().await.unwrap();
    assert_eq!(r.suspended, 2, "{r:?}");
    assert_eq!(status(&s, &b_bot).await, (KeyStatus::Disabled, Some("password_changed".into())));
    assert_eq!(status(&s, &b_bot2).await, (KeyStatus::Disabled, Some("password_changed".into())));
    assert_eq!(status(&s, &b_new).await.0, KeyStatus::Active);
    assert_eq!(status(&s, &a_bot).await.0, KeyStatus::Active);
    assert_eq!(status(&s, &a_read).await.0, KeyStatus::Active, "read-only keys are not asked about");
    assert!(s.key_policy(&Actor::operator_cli(), "bob").await.unwrap().reconfirm.is_none(), "lapsed once");
    assert_eq!(s.sweep_key_policies().await.unwrap(), SweepReport::default());
    let suspended = audited(&s, "key.suspend", &b_bot).await;
    assert_eq!(suspended[0]["actor"], "system:key-policy:reconfirm");
}

#[tokio::test]
async fn accounts_tighten_their_policy_and_never_loosen_it() {
    let (s, clock, _dir) = env().await;
    let alice = owner(1, "alice", &clock);
    let tighter = AccountKeyPolicy { unused_days: Some(10), max_keys: Some(2), ..AccountKeyPolicy::default() };
    let view = s.set_key_policy(&alice, "alice", tighter).await.unwrap();
    assert_eq!(view.effective.unused_days, Some(10));
    assert_eq!(view.deployment.unused_days, Some(90));
    let looser = AccountKeyPolicy { unused_days: Some(120), ..AccountKeyPolicy::default() };
    let err = s.set_key_policy(&alice, "alice", looser).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("loosen")), "{err}");
    // At most 2 keys now, for alice only.
    key(&s, "alice", "one", &[], false).await;
    key(&s, "alice", "two", &[], false).await;
    let new = NewKey {
        account: "alice".into(),
        label: "three".into(),
        material: NewKeyMaterial::Hmac,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        confirm_wide_ip: false,
    };
    let err = s.create_key(&Actor::operator_cli(), new).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("most its key policy allows")), "{err}");
    for n in 0..3 {
        key(&s, "bob", &format!("b{n}"), &[], false).await;
    }
    // Relaxing her own tightening back needs a step-up; tightening never does.
    let plain = Actor::Owner {
        account_id: AccountId(1),
        name: "alice".into(),
        stepped_up_until: None,
        source: None,
        fresh_code: None,
    };
    let err = s.set_key_policy(&plain, "alice", AccountKeyPolicy::default()).await.unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_)), "{err}");
    let even_tighter = AccountKeyPolicy { unused_days: Some(5), max_keys: Some(2), ..AccountKeyPolicy::default() };
    s.set_key_policy(&plain, "alice", even_tighter).await.unwrap();
    // Bob cannot touch alice's policy.
    let bob = owner(2, "bob", &clock);
    assert!(matches!(s.key_policy(&bob, "alice").await, Err(ServiceError::NotFound(_))));
    // The 10-day rule acts on alice's keys, not bob's.
    clock.advance_ms(6 * DAY_MS);
    let r = s.sweep_key_policies().await.unwrap();
    assert_eq!(r.disabled, 2, "{r:?}");
    assert_eq!(audited(&s, "account.key_policy", "account:alice").await.len(), 2);
}
