//! DESIGN.md section 3's rules, through the service, on a real SQLite store.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_auth::{AccountId, IpAllowlist, KeyStatus, Permission, Permissions, Restrictions};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::{
    Actor, KeyEdit, ManualClock, NewKey, NewKeyMaterial, PasswordParams, Service, ServiceConfig, ServiceError,
};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);

struct Env {
    service: Service,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store = SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(NOW.as_micros())));
    let service = Service::start(
        Arc::new(store),
        clock,
        ServiceConfig {
            password: PasswordParams::insecure_for_tests(),
            // These tests are about step-up; the 2FA requirement for trading keys has its own
            // tests in tests/accounts.rs.
            require_2fa_for_trading_keys: false,
            ..ServiceConfig::default()
        },
    )
    .await
    .unwrap();
    for name in ["alice", "bob"] {
        service
            .create_account(&Actor::operator_cli(), name, Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
    }
    Env { service, _dir: dir }
}

fn owner(id: i64, name: &str, stepped_up: bool) -> Actor {
    Actor::Owner {
        account_id: AccountId(id),
        name: name.into(),
        stepped_up_until: stepped_up.then_some(NOW.plus_millis(300_000)),
        source: Some("192.0.2.1".into()),
        fresh_code: None,
    }
}

fn new_key(account: &str, permissions: Permissions, restrictions: Restrictions) -> NewKey {
    NewKey {
        account: account.into(),
        label: "k".into(),
        material: NewKeyMaterial::Hmac,
        permissions,
        restrictions,
        confirm_wide_ip: false,
    }
}

fn ips(list: &[&str]) -> Restrictions {
    Restrictions { ip_allowlist: IpAllowlist::parse(list).unwrap(), ..Restrictions::default() }
}

#[tokio::test]
async fn owner_needs_a_step_up_to_create_a_trading_key_but_not_a_read_only_one() {
    let e = env().await;
    let trade = Permissions::with(&[Permission::Trade]);
    let err = e
        .service
        .create_key(&owner(1, "alice", false), new_key("alice", trade, Restrictions::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_)), "{err}");
    assert!(e.service.list_keys(&Actor::operator_cli(), None).await.unwrap().is_empty(), "nothing half-created");
    let ro = e
        .service
        .create_key(&owner(1, "alice", false), new_key("alice", Permissions::READ_ONLY, Restrictions::default()))
        .await
        .unwrap();
    assert_eq!(ro.key.created_by, "owner");
    let t =
        e.service.create_key(&owner(1, "alice", true), new_key("alice", trade, Restrictions::default())).await.unwrap();
    assert!(t.key.permissions.contains(Permission::Trade));
}

#[tokio::test]
async fn withdraw_without_an_ip_allowlist_is_refused_for_every_actor() {
    let e = env().await;
    let w = Permissions::with(&[Permission::Withdraw]);
    for actor in [Actor::operator_cli(), Actor::System { policy: "demo".into() }, owner(1, "alice", true)] {
        let err = e.service.create_key(&actor, new_key("alice", w, Restrictions::default())).await.unwrap_err();
        assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("IP allowlist")), "{actor:?}: {err}");
    }
    let with_address = Restrictions { withdraw_addresses: vec!["TXpolicyAddr01".into()], ..ips(&["203.0.113.0/24"]) };
    let ok = e.service.create_key(&Actor::operator_cli(), new_key("alice", w, with_address)).await.unwrap();
    // Removing the allowlist later is refused too.
    let edit = KeyEdit { ip_allowlist: Some(IpAllowlist::default()), ..KeyEdit::default() };
    assert!(matches!(
        e.service.edit_key(&Actor::operator_cli(), &ok.key.api_key, edit).await,
        Err(ServiceError::Invalid(_))
    ));
}

#[tokio::test]
async fn owners_cannot_see_or_touch_another_accounts_keys() {
    let e = env().await;
    let bobs = e
        .service
        .create_key(&Actor::operator_cli(), new_key("bob", Permissions::READ_ONLY, Restrictions::default()))
        .await
        .unwrap();
    let alice = owner(1, "alice", true);
    assert!(matches!(e.service.key(&alice, &bobs.key.api_key).await, Err(ServiceError::NotFound(_))));
    assert!(matches!(e.service.revoke_key(&alice, &bobs.key.api_key).await, Err(ServiceError::NotFound(_))));
    assert!(matches!(e.service.list_keys(&alice, Some("bob")).await, Err(ServiceError::NotFound(_))));
    assert!(e.service.list_keys(&alice, None).await.unwrap().is_empty());
    assert_eq!(e.service.key(&Actor::operator_cli(), &bobs.key.api_key).await.unwrap().status, KeyStatus::Active);
}

#[tokio::test]
async fn narrowing_never_needs_a_step_up_and_widening_always_does() {
    let e = env().await;
    let k = e
        .service
        .create_key(&owner(1, "alice", false), new_key("alice", Permissions::READ_ONLY, ips(&["10.0.0.0/8"])))
        .await
        .unwrap();
    let id = k.key.api_key;
    let plain = owner(1, "alice", false);
    let narrow = KeyEdit { ip_allowlist: Some(IpAllowlist::parse(&["10.1.0.0/16"]).unwrap()), ..KeyEdit::default() };
    e.service.edit_key(&plain, &id, narrow).await.unwrap();
    for widen in [
        KeyEdit {
            ip_allowlist: Some(IpAllowlist::parse(&["10.1.0.0/16", "192.0.2.0/24"]).unwrap()),
            ..KeyEdit::default()
        },
        KeyEdit { ip_allowlist: Some(IpAllowlist::default()), ..KeyEdit::default() },
        KeyEdit { permissions: Some(Permissions::with(&[Permission::Trade])), ..KeyEdit::default() },
    ] {
        let err = e.service.edit_key(&plain, &id, widen.clone()).await.unwrap_err();
        assert!(matches!(err, ServiceError::StepUpRequired(_)), "{widen:?}: {err}");
        e.service.edit_key(&owner(1, "alice", true), &id, widen).await.unwrap();
    }
    // An address needs more than the window: a code typed with the change (tests/accounts.rs).
    let address = KeyEdit { withdraw_addresses: Some(vec!["addr1".into()]), ..KeyEdit::default() };
    for actor in [&plain, &owner(1, "alice", true)] {
        let err = e.service.edit_key(actor, &id, address.clone()).await.unwrap_err();
        assert!(matches!(err, ServiceError::StepUpRequired(_)), "{actor:?}: {err}");
    }
    let disabled = e
        .service
        .edit_key(&plain, &id, KeyEdit { status: Some(KeyStatus::Disabled), ..KeyEdit::default() })
        .await
        .unwrap();
    assert_eq!(disabled.status, KeyStatus::Disabled);
    let err = e
        .service
        .edit_key(&plain, &id, KeyEdit { status: Some(KeyStatus::Active), ..KeyEdit::default() })
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_)), "re-enabling widens: {err}");
}

#[tokio::test]
async fn a_revoked_key_never_changes_again_and_revoke_all_needs_a_step_up() {
    let e = env().await;
    let a = e
        .service
        .create_key(&Actor::operator_cli(), new_key("alice", Permissions::READ_ONLY, Restrictions::default()))
        .await
        .unwrap();
    e.service
        .create_key(&Actor::operator_cli(), new_key("alice", Permissions::READ_ONLY, Restrictions::default()))
        .await
        .unwrap();
    let revoked = e.service.revoke_key(&owner(1, "alice", false), &a.key.api_key).await.unwrap();
    assert_eq!(revoked.status, KeyStatus::Revoked);
    let edit = KeyEdit { label: Some("again".into()), ..KeyEdit::default() };
    assert!(matches!(
        e.service.edit_key(&Actor::operator_cli(), &a.key.api_key, edit).await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        e.service.revoke_all_keys(&owner(1, "alice", false), "alice").await,
        Err(ServiceError::StepUpRequired(_))
    ));
    assert_eq!(e.service.revoke_all_keys(&owner(1, "alice", true), "alice").await.unwrap(), 1);
}

#[tokio::test]
async fn every_change_is_audited_with_its_actor_and_the_chain_verifies() {
    let e = env().await;
    let k = e
        .service
        .create_key(&Actor::operator_cli(), new_key("alice", Permissions::READ_ONLY, Restrictions::default()))
        .await
        .unwrap();
    e.service
        .edit_key(
            &owner(1, "alice", false),
            &k.key.api_key,
            KeyEdit { label: Some("renamed".into()), ..KeyEdit::default() },
        )
        .await
        .unwrap();
    e.service.revoke_key(&owner(1, "alice", false), &k.key.api_key).await.unwrap();
    let log = e.service.audit_log(&Actor::operator_cli(), 0, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = log.iter().map(|r| (r.actor.as_str(), r.action.as_str())).collect();
    assert_eq!(
        actions,
        [
            ("operator:cli", "account.create"),
            ("operator:cli", "account.create"),
            ("operator:cli", "key.create"),
            ("owner:alice", "key.edit"),
            ("owner:alice", "key.revoke"),
        ]
    );
    assert_eq!(log[3].source.as_deref(), Some("192.0.2.1"));
    assert_eq!(e.service.verify_audit_chain(&Actor::operator_cli()).await.unwrap(), 5);
    let serialized = serde_json::to_string(&log).unwrap();
    assert!(!serialized.contains("kgs_"), "no secret in the audit log");
    // Owners see only their own account's records.
    let mine = e.service.audit_log(&owner(1, "alice", false), 0, 100).await.unwrap();
    assert_eq!(mine.len(), 4, "its creation and its key's three events");
}

#[tokio::test]
async fn bad_account_names_weak_passwords_and_wrong_logins_are_refused() {
    let e = env().await;
    let op = Actor::operator_cli();
    for bad in ["A", "Alice", "-x", "a b", "x".repeat(33).as_str()] {
        assert!(
            matches!(
                e.service.create_account(&op, bad, Zeroizing::new("long enough pw".into())).await,
                Err(ServiceError::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        e.service.create_account(&op, "carol", Zeroizing::new("short".into())).await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        e.service.create_account(&op, "alice", Zeroizing::new("long enough pw".into())).await,
        Err(ServiceError::Conflict(_))
    ));
    assert!(e.service.check_password("alice", Zeroizing::new("correct horse battery".into())).await.unwrap().is_some());
    assert!(e.service.check_password("alice", Zeroizing::new("wrong horse battery".into())).await.unwrap().is_none());
    assert!(
        e.service.check_password("nobody", Zeroizing::new("correct horse battery".into())).await.unwrap().is_none()
    );
}

#[tokio::test]
async fn unreadable_public_keys_and_past_expiry_are_invalid() {
    let e = env().await;
    let op = Actor::operator_cli();
    let mut k = new_key("alice", Permissions::READ_ONLY, Restrictions::default());
    k.material = NewKeyMaterial::Ed25519("not a key".into());
    assert!(matches!(e.service.create_key(&op, k.clone()).await, Err(ServiceError::Invalid(_))));
    k.material = NewKeyMaterial::Rsa("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----".into());
    assert!(matches!(e.service.create_key(&op, k.clone()).await, Err(ServiceError::Invalid(_))));
    k.material = NewKeyMaterial::Hmac;
    k.restrictions.expires_at = Some(NOW);
    assert!(matches!(e.service.create_key(&op, k).await, Err(ServiceError::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_edit_never_undoes_a_revocation() {
    let e = env().await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let k = e
            .service
            .create_key(&Actor::operator_cli(), new_key("alice", Permissions::READ_ONLY, Restrictions::default()))
            .await
            .unwrap();
        ids.push(k.key.api_key);
    }
    let mut tasks = Vec::new();
    for id in &ids {
        let (s1, s2, id1, id2) = (e.service.clone(), e.service.clone(), id.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let edit = KeyEdit { label: Some("renamed".into()), ..KeyEdit::default() };
            // Either order is fine; what matters is that the key ends revoked.
            let _ = s1.edit_key(&Actor::operator_cli(), &id1, edit).await;
        }));
        tasks.push(tokio::spawn(async move {
            s2.revoke_key(&Actor::operator_cli(), &id2).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for id in &ids {
        assert_eq!(e.service.key(&Actor::operator_cli(), id).await.unwrap().status, KeyStatus::Revoked);
        let cached = keygate_auth::KeyLookup::lookup(e.service.cache().as_ref(), id).unwrap();
        assert_eq!(cached.status, KeyStatus::Revoked, "the cache agrees with the store");
    }
}
